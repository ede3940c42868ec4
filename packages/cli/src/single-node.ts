import { closer, metrics, withHealth, type Config, type Logger, type Service } from '@mailgrid/core';
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
  // /metrics adds the backend thread's registry (deliveries' store, its disk guard) to this one's.
  const text = async () => metrics.merged(await backend.metrics());
  return withHealth(config.http, log, [closer('directory', () => directory.close()), backend, ...frontend.services], { metrics: text });
}
