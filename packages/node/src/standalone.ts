import { closer, metrics, totals, withHealth, type Config, type Logger, type Service } from '@mailgrid/core';
import { ClusterSnapshots, dashboardRoutes, type MemberEntry } from '@mailgrid/dashboard';
import { EmbeddedDirectory, type HostingGroups } from '@mailgrid/directory';
import type { MailFlow } from '@mailgrid/mailflow';
import type { DeliveryTransport } from '@mailgrid/protocol';
import { join, resolve } from 'node:path';
import { BackendWorker } from './backend-thread.js';
import type { NodeBase, NodePart } from './compose.js';

/**
 * What a single node (`mailgrid start`) stands on: the embedded directory, and the backend
 * in a thread of its own (its own event loop on the second core) with the node's one gRPC
 * host. Its one hosting group is served by that thread, not fenced (epoch 0). Its dashboard
 * shows one member, itself, the primary of its group; nothing can be set from it (no etcd).
 */
export class Standalone implements NodeBase {
  readonly directory: EmbeddedDirectory;
  readonly groups: HostingGroups;
  readonly transport: DeliveryTransport;
  private readonly backend: BackendWorker;
  private flow: MailFlow | undefined;

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
  ) {
    this.directory = new EmbeddedDirectory(join(resolve(config.dataDir), 'directory'));
    this.backend = new BackendWorker(config, log, {
      wake: () => this.flow?.runner.wake(),
      receive: (s, arrival) => this.flow!.submit.receive(s, arrival),
    });
    this.transport = this.backend.transport;
    // One group, served by the backend thread (its address is known once it has started).
    this.groups = { primary: async (group) => (group === config.backend.group && this.backend.address ? { address: this.backend.address, epoch: 0 } : undefined) };
  }

  /** The mail flow that takes what the backend thread makes (rules, Submit) and whose runner it wakes. */
  serve(flow: MailFlow): void {
    this.flow = flow;
  }

  address(): string | undefined {
    return this.backend.address || undefined;
  }

  assemble(parts: NodePart[]): Service[] {
    const { config, log } = this;
    const startedAt = new Date().toISOString();
    const self = (): MemberEntry => ({
      id: config.nodeId,
      role: 'single',
      site: config.site,
      group: config.backend.group,
      groupRole: 'primary',
      state: 'up',
      http: `${config.http.host}:${config.http.port}`,
      startedAt,
    });
    // Both counted on this thread: accepted by the intake, delivered by the dispatcher when the backend thread stored it.
    const snapshots = new ClusterSnapshots({
      node: config.nodeId,
      membership: { members: () => [self()], on: () => undefined, off: () => undefined },
      groups: { list: () => [{ name: config.backend.group, leader: { id: config.nodeId, epoch: 0 }, inSync: [config.nodeId] }] },
      takers: () => [],
      counters: () => ({ accepted: totals.accepted, delivered: totals.delivered }),
      describe: () => Object.assign({}, ...parts.map((p) => p.describe?.() ?? {})),
    });
    const routes = dashboardRoutes({ snapshot: () => snapshots.view(), adminToken: () => config.http.adminToken, log: log.child({ component: 'dashboard' }) });
    return withHealth(
      config.http,
      log,
      [closer('directory', () => this.directory.close()), this.backend, ...parts.flatMap((p) => p.services), ...parts.flatMap((p) => p.after ?? []), snapshots],
      {
        // /metrics adds the backend thread's registry (deliveries' store, its disk guard) to this one's.
        metrics: async () => metrics.merged(await this.backend.metrics()),
        routes,
        listeners: () => Object.assign({}, ...parts.map((p) => p.listeners?.() ?? {})),
      },
    );
  }
}
