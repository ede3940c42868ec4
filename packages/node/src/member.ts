import { AuthFailures, clusterNode, putSetting, queueTakers, type ClusterNode, type MemberInfo } from '@mailgrid/cluster';
import { totals, withHealth, type Config, type Logger, type Service } from '@mailgrid/core';
import { ClusterSnapshots, dashboardRoutes } from '@mailgrid/dashboard';
import { GrpcHost } from '@mailgrid/protocol';
import { QueueKeeper, QueueOwner } from '@mailgrid/queue';
import { resolve } from 'node:path';
import type { NodeBase, NodePart } from './compose.js';

/**
 * What a cluster member stands on, whatever its role: etcd (the directory cache, its
 * settings, its membership entry, the hosting groups, the queue takers), its queue
 * partnership, and one gRPC host with every service its parts offer, advertised with its
 * entry. A frontend shares its failed logins with the others through etcd. Every member
 * serves the dashboard from its own watches. Stop runs in reverse: the lease goes first
 * (nobody routes here any more), then the roles drain, then the stores close.
 */
export class ClusterMember implements NodeBase {
  readonly cluster: ClusterNode;
  /** This node's queue as its partner copies it. */
  readonly protection: QueueOwner;
  /** The copies this node keeps of its partners' queues. */
  private readonly keeper: QueueKeeper;
  readonly ledger: AuthFailures | undefined;
  private readonly grpc: GrpcHost;
  private parts: NodePart[] = [];
  private current: Config;

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    role: 'frontend' | 'backend',
  ) {
    this.current = config;
    this.grpc = new GrpcHost({ host: config.grpc.host, port: config.grpc.port, log: log.child({ component: 'grpc' }) });
    const grpc = this.grpc;
    this.cluster = clusterNode(config, log, { role, ...(role === 'backend' ? { group: config.backend.group } : {}) }, {
      // The counters ride along for the dashboards' throughput (not urgent: every 10 s).
      describe: () => ({ grpc: this.address(), services: grpc.services, ...this.describe(), accepted: totals.accepted, delivered: totals.delivered, countedAt: Date.now() }),
      urgent: () => {
        const d = this.describe();
        return `${d.submitMode}/${d.takes}/${d.groupRole}/${d.queueStore}/${d.partner}/${d.copies}`;
      },
    });
    const { client, keys, membership } = this.cluster;
    const partnerLog = log.child({ component: 'queue-partnership' });
    this.protection = new QueueOwner({
      client,
      keys,
      membership,
      node: config.nodeId,
      site: config.site,
      partnerCopy: () => this.current.queue.partnerCopy,
      takeoverAfterMs: () => this.current.queue.takeoverAfterMs,
      leaseTtlMs: config.cluster.leaseTtlSec * 1000,
      maxLagMs: () => this.current.queue.partnerMaxLagMs,
      logRetain: () => this.current.queue.logRetain,
      log: partnerLog,
    });
    this.keeper = new QueueKeeper({
      client,
      keys,
      membership,
      node: config.nodeId,
      dataDir: resolve(config.dataDir),
      takeoverAfterMs: () => this.current.queue.takeoverAfterMs,
      adopt: (copy) => this.protection.adopt(copy),
      log: partnerLog,
    });
    // Failed logins count on every frontend: an attacker gains nothing by spreading over them.
    this.ledger = role === 'frontend' ? new AuthFailures(client, keys, config.nodeId, log.child({ component: 'auth' })) : undefined;
  }

  get directory() {
    return this.cluster.directory;
  }

  get groups() {
    return this.cluster.groups;
  }

  get takers() {
    return this.cluster.takers;
  }

  address(): string | undefined {
    return this.config.grpc.advertise || this.grpc.address;
  }

  private describe(): Partial<MemberInfo> {
    return Object.assign({}, ...this.parts.map((p) => p.describe?.() ?? {}), this.protection.describe());
  }

  assemble(parts: NodePart[]): Service[] {
    const { config, log, cluster: node, protection } = this;
    this.parts = parts;
    this.grpc.add(...parts.flatMap((p) => p.grpc), protection.service());
    node.settings.on('change', (next: Config) => {
      this.current = next;
      for (const p of parts) p.apply?.(next);
    });
    const snapshots = new ClusterSnapshots({
      node: config.nodeId,
      membership: node.membership,
      groups: node.groups,
      takers: (members) => queueTakers(members as MemberInfo[]).map((m) => m.id),
      counters: () => ({ accepted: totals.accepted, delivered: totals.delivered }),
      describe: () => this.describe(),
    });
    const routes = dashboardRoutes({
      snapshot: () => snapshots.view(),
      adminToken: () => config.http.adminToken,
      setSetting: (id, key, raw) => putSetting(node.client, node.keys, { node: id, key, raw }, config, (m) => node.membership.members().some((x) => x.id === m)),
      log: log.child({ component: 'dashboard' }),
    });
    // The partnership (both ways) starts once the gRPC host is bound and stops before it drains, like a backend's replication.
    return withHealth(
      config.http,
      log,
      [
        node.etcd,
        node.directory,
        node.settings,
        node.groups,
        ...(this.ledger ? [this.ledger] : []),
        ...parts.flatMap((p) => p.services),
        this.grpc,
        ...parts.flatMap((p) => p.after ?? []),
        protection,
        this.keeper,
        node.membership,
        snapshots,
      ],
      {
        notReady: () => parts.map((p) => p.notReady?.()).find((why) => why !== undefined),
        routes,
        listeners: () => Object.assign({}, ...parts.map((p) => p.listeners?.() ?? {})),
      },
    );
  }
}
