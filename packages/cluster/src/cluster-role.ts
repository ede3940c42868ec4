import { resolve } from 'node:path';
import { metrics, totals, withHealth, type Config, type Logger, type Service } from '@mailgrid/core';
import { dashboardRoutes } from '@mailgrid/dashboard';
import { GrpcHost, routeGrpcLogs, type RoleParts } from '@mailgrid/protocol';
import { clusterNode } from './cluster-node.js';
import { ClusterSnapshots } from './cluster-snapshot.js';
import type { MemberInfo } from './membership.js';
import { QueuePartnership } from './queue-partnership.js';
import { putSetting } from './settings.js';

/** What a role's build gets: the cluster node's parts, and the partnership its queue is protected by. */
export type ClusterNode = ReturnType<typeof clusterNode> & { queue: QueuePartnership };

/** A role's parts as a cluster member runs them: live settings applied, fields published with its membership. */
export interface ClusterRoleParts extends RoleParts {
  apply?(config: Config): void;
  describe?(): Partial<MemberInfo>;
  /** Started once the gRPC host is bound, stopped before it drains (a backend's election and replication). */
  after?: Service[];
  /** Why /readyz should say 503 while every service runs (a replica not in its group's in-sync set). */
  notReady?(): string | undefined;
}

/**
 * The one composition of a cluster member, whatever its role: etcd (directory, settings,
 * membership), the role's parts, and one gRPC host with every service the role offers,
 * advertised with the member's entry. Start order; stop runs in reverse, so the lease goes
 * first (nobody routes here any more), then the role drains, then the stores close.
 */
export function clusterRole(
  config: Config,
  log: Logger,
  self: Pick<MemberInfo, 'role'> & Partial<MemberInfo>,
  build: (node: ClusterNode, address: () => string | undefined) => ClusterRoleParts,
): Service[] {
  routeGrpcLogs(log);
  metrics.describeNode(config.nodeId, self.role, config.site);
  const grpc = new GrpcHost({ host: config.grpc.host, port: config.grpc.port, log: log.child({ component: 'grpc' }) });
  let parts: ClusterRoleParts | undefined;
  const address = () => config.grpc.advertise || grpc.address;
  let current = config;
  const describe = (): Partial<MemberInfo> => ({ ...parts?.describe?.(), ...queue.describe() });
  const cluster = clusterNode(config, log, self, {
    // The counters ride along for the dashboards' throughput (not urgent: every 10 s).
    describe: () => ({ grpc: address(), services: grpc.services, ...describe(), accepted: totals.accepted, delivered: totals.delivered, countedAt: Date.now() }),
    urgent: () => {
      const d = describe();
      return `${d.submitMode}/${d.takes}/${d.groupRole}/${d.queueStore}/${d.partner}/${d.copies}`;
    },
  });
  const queue = new QueuePartnership({
    client: cluster.client,
    keys: cluster.keys,
    membership: cluster.membership,
    node: config.nodeId,
    site: config.site,
    dataDir: resolve(config.dataDir),
    partnerCopy: () => current.queue.partnerCopy,
    takeoverAfterMs: () => current.queue.takeoverAfterMs,
    leaseTtlMs: config.cluster.leaseTtlSec * 1000,
    maxLagMs: () => current.queue.partnerMaxLagMs,
    logRetain: () => current.queue.logRetain,
    log: log.child({ component: 'queue-partnership' }),
  });
  const node: ClusterNode = { ...cluster, queue };
  parts = build(node, address);
  grpc.add(...parts.grpc, queue.service());
  node.settings.on('change', (next: Config) => {
    current = next;
    parts!.apply?.(next);
  });
  // Every member serves the dashboard, from its own watches of etcd.
  const snapshots = new ClusterSnapshots({
    node: config.nodeId,
    membership: node.membership,
    groups: node.groups,
    counters: () => ({ accepted: totals.accepted, delivered: totals.delivered }),
    describe,
  });
  const routes = dashboardRoutes({
    snapshot: () => snapshots.view(),
    adminToken: () => config.http.adminToken,
    setSetting: (id, key, raw) => putSetting(node.client, node.keys, { node: id, key, raw }, config, (m) => node.membership.members().some((x) => x.id === m)),
    log: log.child({ component: 'dashboard' }),
  });
  // The partnership starts once the gRPC host is bound and stops before it drains, like a backend's replication.
  return withHealth(
    config.http,
    log,
    [node.etcd, node.directory, node.settings, node.groups, ...parts.services, grpc, ...(parts.after ?? []), queue, node.membership, snapshots],
    { notReady: () => parts!.notReady?.(), routes },
  );
}
