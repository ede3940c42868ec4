import { closer, HealthServer, type Config, type Logger, type Service } from '@mailgrid/core';
import { routeGrpcLogs } from '@mailgrid/protocol';
import { EmbeddedDirectory } from '@mailgrid/directory';
import { frontendParts } from '@mailgrid/frontend';
import { join, resolve } from 'node:path';
import { BackendWorker } from './backend-worker.js';

/**
 * A whole mail system on one machine: a backend (in a worker thread) and a frontend that
 * talk gRPC over loopback, as they would across a cluster, with the embedded directory.
 * Returned in start order; stop runs in reverse, so SMTP drains before the backend.
 */
export function singleNode(config: Config, log: Logger): Service[] {
  routeGrpcLogs(log);
  const backend = new BackendWorker(config, log);
  const directory = new EmbeddedDirectory(join(resolve(config.dataDir), 'directory'));
  // One group, served by the local backend (its port is known once it has started).
  const frontend = frontendParts(config, log, directory, { primary: async (group) => (group === config.backend.group ? backend.address : undefined) });
  const services: Service[] = [closer('directory', () => directory.close()), backend, ...frontend.services];
  const health = new HealthServer({ ...config.http, log, services: () => services });
  return [health, ...services];
}
