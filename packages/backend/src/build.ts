import { closer, type Config, type Logger } from '@mailgrid/core';
import type { Directory, DirectoryAdmin } from '@mailgrid/directory';
import { Router } from '@mailgrid/mailflow';
import type { RoleParts } from '@mailgrid/protocol';
import { LmdbMailStore } from '@mailgrid/store';
import { join, resolve } from 'node:path';
import { adminService } from './admin-service.js';
import { deliveryService } from './delivery-service.js';
import { mailboxService } from './mailbox-service.js';

export interface BackendDeps {
  config: Config;
  log: Logger;
  directory: Directory;
  /** Served as the Admin service when this node owns its directory (the single node). */
  directoryAdmin?: DirectoryAdmin;
  /** This member's current epoch, which every Deliver must carry (a cluster member); absent: not fenced. */
  epoch?: () => number | undefined;
}

/**
 * The backend role, the same in the single node's worker thread and in a cluster: the
 * accounts of one hosting group in the LMDB store, served as Delivery, Mailbox (and Admin
 * with an own directory) on the node's gRPC host.
 */
export function buildBackend(deps: BackendDeps): RoleParts {
  const { config } = deps;
  const group = config.backend.group;
  const log = deps.log.child({ component: 'backend', group });
  const store = new LmdbMailStore(join(resolve(config.dataDir), 'store'));
  const router = new Router(deps.directory);
  return {
    services: [closer('store', () => store.close())],
    grpc: [
      deliveryService({ group, router, store, maxMessageBytes: config.smtp.maxMessageBytes, epoch: deps.epoch, log: deps.log.child({ component: 'delivery', group }) }),
      mailboxService({ group, router, store, chunkBytes: config.delivery.chunkBytes, log }),
      ...(deps.directoryAdmin ? [adminService(deps.directoryAdmin, group)] : []),
    ],
  };
}
