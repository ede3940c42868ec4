import type { Config, Logger, Service, ServiceState } from '@mailgrid/core';
import { Backend } from '@mailgrid/backend';
import { EmbeddedDirectory } from '@mailgrid/directory';
import { DeliveryChannel, Router, SmtpFrontend } from '@mailgrid/frontend';
import { LmdbMailStore } from '@mailgrid/store';
import { join, resolve } from 'node:path';

/**
 * A whole mail system on one machine: a backend and a frontend that talk gRPC over
 * loopback (as they would across a cluster), with the embedded directory. Returned in
 * start order; stop runs in reverse, so SMTP drains before the backend and the stores close.
 */
export function singleNode(config: Config, log: Logger): Service[] {
  const dataDir = resolve(config.dataDir);
  const directory = new EmbeddedDirectory(join(dataDir, 'directory'));
  const store = new LmdbMailStore(join(dataDir, 'store'));
  const backend = new Backend({ config, log, directory, store, directoryAdmin: directory });
  const frontend = new SmtpFrontend({
    config,
    log,
    directory,
    // One group, served by the local backend (its port is known once it has started).
    router: new Router({ primary: async (group) => (group === config.backend.group ? backend.address : undefined) }),
    channel: new DeliveryChannel(config.delivery),
  });
  const storage = onStop('storage', async () => {
    await store.close();
    await directory.close();
  });
  return [storage, backend, frontend];
}

/** A service whose only job is to release resources when the node stops. */
function onStop(name: string, close: () => Promise<void>): Service {
  let state: ServiceState = 'new';
  return {
    name,
    get state() {
      return state;
    },
    async start() {
      state = 'running';
    },
    async stop() {
      if (state !== 'running') return;
      state = 'stopping';
      await close();
      state = 'stopped';
    },
  };
}
