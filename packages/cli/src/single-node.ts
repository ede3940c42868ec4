import { closer, metrics, totals, withHealth, type Config, type Logger, type Service } from '@mailgrid/core';
import { dashboardRoutes, ThroughputSampler, type ClusterView } from '@mailgrid/dashboard';
import { EmbeddedDirectory } from '@mailgrid/directory';
import { buildFrontend } from '@mailgrid/frontend';
import { routeGrpcLogs } from '@mailgrid/protocol';
import { join, resolve } from 'node:path';
import { BackendWorker } from './backend-worker.js';

/**
 * A whole mail system on one machine: the frontend role and the backend role with the
 * embedded directory. The backend runs in a worker thread (its own event loop on the second
 * core) together with the node's one gRPC host; the frontend's delivery channel reaches it
 * over a MessagePort (the same channel, answers and timeouts as gRPC across a cluster).
 * Start order; stop runs in reverse, so SMTP drains before the backend.
 */
export function singleNode(config: Config, log: Logger): Service[] {
  routeGrpcLogs(log);
  metrics.describeNode(config.nodeId, 'single', config.site);
  const directory = new EmbeddedDirectory(join(resolve(config.dataDir), 'directory'));
  let frontend: ReturnType<typeof buildFrontend> | undefined;
  const backend = new BackendWorker(
    config,
    log,
    () => frontend?.flow.runner.wake(),
    (s, arrival) => frontend!.flow.submit.receive(s, arrival),
  );
  // One group, served by the local backend (its address is known once it has started); no epoch to fence.
  const groups = { primary: async (group: string) => (group === config.backend.group && backend.address ? { address: backend.address, epoch: 0 } : undefined) };
  frontend = buildFrontend({ config, log, directory, groups, transport: backend.transport });
  // The dashboard of one member: itself, primary of its one group; no settings to set (no etcd).
  // Both are counted on this thread: accepted by the intake, delivered by the dispatcher when the backend thread stored it.
  const counters = () => ({ accepted: totals.accepted, delivered: totals.delivered });
  const throughput = new ThroughputSampler((now) => [{ id: config.nodeId, ...counters(), at: now }]);
  const startedAt = new Date().toISOString();
  const view = (): ClusterView => {
    const queue = frontend!.flow.describe();
    const group = config.backend.group;
    return {
      node: config.nodeId,
      at: Date.now(),
      members: [
        {
          id: config.nodeId,
          role: 'single',
          site: config.site,
          group,
          place: 'primary',
          state: 'up',
          submitMode: queue.submitMode,
          queueDepth: queue.queueDepth,
          queueOldestAt: queue.queueOldestAt,
          ...counters(),
          http: `${config.http.host}:${config.http.port}`,
          startedAt,
          health: 'ok',
          notes: [],
        },
      ],
      groups: [{ name: group, primary: config.nodeId, inSync: [config.nodeId], lag: {}, members: [config.nodeId] }],
      takers: [],
      throughput: throughput.list(),
      failovers: [],
    };
  };
  const routes = dashboardRoutes({ snapshot: view, adminToken: () => config.http.adminToken, log: log.child({ component: 'dashboard' }) });
  // /metrics adds the backend thread's registry (deliveries' store, its disk guard) to this one's.
  const text = async () => metrics.merged(await backend.metrics());
  return withHealth(config.http, log, [closer('directory', () => directory.close()), backend, ...frontend.services, throughput], { metrics: text, routes });
}
