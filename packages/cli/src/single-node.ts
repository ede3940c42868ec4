import { closer, HealthServer, type Config, type Logger, type Service } from '@mailgrid/core';
import { EmbeddedDirectory } from '@mailgrid/directory';
import { DeliveryChannel, Router, SmtpFrontend } from '@mailgrid/frontend';
import { join, resolve } from 'node:path';
import { BackendWorker } from './backend-worker.js';

/**
 * A whole mail system on one machine: a backend (in a worker thread) and a frontend that
 * talk gRPC over loopback, as they would across a cluster, with the embedded directory.
 * Returned in start order; stop runs in reverse, so SMTP drains before the backend.
 */
export function singleNode(config: Config, log: Logger): Service[] {
  const backend = new BackendWorker(config, log);
  const directory = new EmbeddedDirectory(join(resolve(config.dataDir), 'directory'));
  const frontend = new SmtpFrontend({
    config,
    log,
    directory,
    // One group, served by the local backend (its port is known once it has started).
    router: new Router({ primary: async (group) => (group === config.backend.group ? backend.address : undefined) }),
    channel: new DeliveryChannel(config.delivery),
  });
  const services: Service[] = [closer('directory', () => directory.close()), backend, frontend];
  const health = new HealthServer({ ...config.http, log, services: () => services });
  return [health, ...services];
}
