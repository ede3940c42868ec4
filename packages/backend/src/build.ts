import { searchFolder } from './imap-search.js';
import { closer, DiskGuard, metrics, Replies, upkeep, type Config, type Logger, type Service } from '@mailgrid/core';
import type { Directory, DirectoryAdmin } from '@mailgrid/directory';
import { Router, type Accepted, type Submission } from '@mailgrid/mailflow';
import type { DeliveryHandler, RoleParts } from '@mailgrid/protocol';
import { LmdbMailStore, logTrimmer, pruneDedupe, type MailStore } from '@mailgrid/store';
import { join, resolve } from 'node:path';
import { AccountRules } from './account-rules.js';
import { adminService } from './admin-service.js';
import { backupService } from './backup-service.js';
import { deliveryHandler, deliveryService } from './delivery-service.js';
import { MailboxHolds, mailboxService } from './mailbox-service.js';
import { rulesService } from './rules-service.js';

export interface BackendDeps {
  config: Config;
  log: Logger;
  directory: Directory;
  /** Served as the Admin service when this node owns its directory (the single node), and copied with the store by a backup. */
  directoryAdmin?: DirectoryAdmin & { backup(dir: string, compact: boolean): Promise<void> };
  /**
   * The epoch while this member is its group's primary and may take writes (a cluster
   * member): every Deliver and Mailbox or Rules write must carry it, and nothing is served
   * without it. Absent: not fenced (the single node).
   */
  epoch?: () => number | undefined;
  /** How mail the accounts' rules make enters the mail flow: the node's submit channel. */
  submit: (s: Submission) => Promise<Accepted>;
  /** Awaited after each store write is flushed, before it is answered: the in-sync replicas' acks. */
  durable?: (seq: number) => Promise<void>;
  /** Up to where the store's log may be trimmed (what every replica has); default: all but `backend.logRetain` entries. */
  trimPoint?: () => number;
}

/**
 * The backend role, the same in the single node's worker thread and in a cluster: the
 * accounts of one hosting group in the LMDB store, their rules applied at delivery, served
 * as Delivery, Mailbox, Rules, Backup (and Admin with an own directory) on the node's gRPC host; `deliver` is the Delivery service's
 * handler, for the single node's in-process transport.
 */
export function buildBackend(deps: BackendDeps): RoleParts & { apply(config: Config): void; deliver: DeliveryHandler; store: LmdbMailStore; after: Service[] } {
  const { config } = deps;
  let current = config;
  const group = config.backend.group;
  const log = deps.log.child({ component: 'backend', group });
  const path = join(resolve(config.dataDir), 'store');
  // An account marked as moving away, or moved, takes no writes here (checked again inside each write).
  const home = deps.directory.home?.bind(deps.directory);
  const accepts = home && ((account: string) => {
    const h = home(account);
    return !h || (h.group === group && !h.movingTo);
  });
  // A fenced member writes only while primary: a replica's own entry would fork its log.
  const epoch = deps.epoch;
  const primary = () => !epoch || epoch() !== undefined;
  const writable = () => {
    if (!primary()) throw Replies.notPrimary(group);
  };
  const store = new LmdbMailStore(path, { durable: deps.durable, accepts, writable });
  const trimPoint = deps.trimPoint ?? (() => store.position().seq - current.backend.logRetain);
  const disk = new DiskGuard({ path, floor: () => current.backend.minFreeBytes, log });
  const unobserve = metrics.observe.diskGuard('store', () => disk.refusing);
  const router = new Router(deps.directory);
  const maxMessageBytes = () => current.smtp.maxMessageBytes;
  const deliveryLog = deps.log.child({ component: 'delivery', group });
  const rules = new AccountRules({ store, submit: deps.submit, hostname: config.smtp.hostname, log: deps.log.child({ component: 'rules', group }) });
  // Ended before the gRPC host drains (each is an open stream), and whenever this member stops being the primary.
  const holds = new MailboxHolds(deps.epoch, log, (account) => !home || home(account)?.group === group);
  const deliver = deliveryHandler({ group, router, store, disk, maxMessageBytes, epoch: deps.epoch, accepts, rules, log: deliveryLog });
  return {
    apply: (next: Config) => (current = next),
    deliver,
    store,
    after: [holds],
    services: [closer('store', () => (unobserve(), store.close())), dedupePruner(store, () => config.queue.lifetimeMs + DEDUPE_MARGIN_MS, primary, log), logTrimmer(store, trimPoint, log)],
    grpc: [
      deliveryService(deliver, { maxMessageBytes, log: deliveryLog }),
      mailboxService({
        group,
        router,
        store,
        chunkBytes: config.delivery.chunkBytes,
        maxMessageBytes,
        search: (account, folder, req) => searchFolder(store, account, folder, req),
        epoch: deps.epoch,
        cacheMs: () => current.auth.cacheMs,
        holds,
        disk,
        log,
      }),
      rulesService({ group, router, store, epoch: deps.epoch }),
      ...(deps.directoryAdmin ? [adminService(deps.directoryAdmin, group)] : []),
      backupService({ store, directory: deps.directoryAdmin, node: config.nodeId, group, log }),
    ],
  };
}

/** Idempotency keys are kept this much longer than a sender's queue may retry a message. */
const DEDUPE_MARGIN_MS = 24 * 3_600_000;

/**
 * Forgets idempotency keys once no sender can retry their messages any more (the queue
 * lifetime and a day after they arrived): a pass over the table every hour, in batches, so
 * it stays the size of the last few days' deliveries instead of growing for ever.
 */
function dedupePruner(store: MailStore, retentionMs: () => number, primary: () => boolean, log: Logger): Service {
  return upkeep(
    'dedupe-pruner',
    3_600_000,
    async (running) => {
      // A replica's keys go when the primary's pass removes them.
      if (!primary()) return;
      // Between batches deliveries go first; a stopping node ends the pass.
      const between = () => new Promise<boolean>((resolve) => setImmediate(() => resolve(running() && primary())));
      const total = await pruneDedupe(store, Date.now() - retentionMs(), between);
      if (total) log.info({ event: 'store.dedupe-pruned', keys: total }, 'old idempotency keys forgotten');
    },
    log,
  );
}
