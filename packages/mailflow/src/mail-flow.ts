import { closer, metrics, type Config, type Logger, type Service } from '@mailgrid/core';
import type { Directory, HostingGroups } from '@mailgrid/directory';
import type { DeliveryTransport, GrpcService } from '@mailgrid/protocol';
import { MailQueue, QueueStore, queueService, Relay, type QueuedRecipient, type QueueProtection } from '@mailgrid/queue';
import { logTrimmer } from '@mailgrid/store';
import { join, resolve } from 'node:path';
import { Bounces } from './bounces.js';
import { DeliveryChannel } from './delivery-channel.js';
import { Dispatcher } from './dispatcher.js';
import { Intake } from './intake.js';
import { Router } from './router.js';
import { QueueRunner } from './runner.js';
import { GrpcSubmitter, SubmitChannel, submitModeOf, submitService, type Arrival, type QueueTakers, type SubmitMode } from './submit.js';
import type { Accepted, Submission } from './intake.js';

export interface MailFlow {
  router: Router;
  intake: Intake;
  queue: MailQueue;
  runner: QueueRunner;
  /** How mail made on this node enters (its submit mode), and what the Submit service receives. */
  submit: SubmitChannel;
  /** What the node publishes about its queue and submit mode in its membership entry. */
  describe(): QueueStatus;
  /** The queue's store (the node's gRPC host serves it as the Queue service, see `flowServices`). */
  store: QueueStore;
  /** In start order: the queue store (closed last), the runner. */
  services: Service[];
}

export interface QueueStatus {
  submitMode: SubmitMode;
  /** In local-for-others mode with room in its queue: listed as a queue taker. */
  takes: boolean;
  queueDepth: number;
  queueOldestAt?: number;
  /** Bytes the queue may still take (the least of its byte limit and its disk above the floor). */
  queueFreeBytes?: number;
}

/** Where a node keeps its queue. */
export const queuePath = (config: Config) => join(resolve(config.dataDir), 'queue');

/**
 * The mail flow of one node, the same for every role: Router, Intake, the durable queue
 * with its runner, the delivery channel to hosting groups, relay and bounces. `current`
 * gives the live settings (limits and retry policy follow them).
 */
export function createMailFlow(deps: {
  config: Config;
  current: () => Config;
  log: Logger;
  directory: Directory;
  groups: HostingGroups;
  /** Which `auto` submit mode applies. */
  place: 'single' | 'frontend' | 'backend';
  /** The controller's lists of queue takers and frontends (a cluster member). */
  takers?: QueueTakers;
  transport?: DeliveryTransport;
  /** A cluster member's queue partnership (the partner copy, takeover fencing). */
  protection?: QueueProtection;
}): MailFlow {
  const { config, current } = deps;
  const log = deps.log.child({ component: 'queue' });
  const path = queuePath(config);
  const protection = deps.protection;
  const store = new QueueStore(path, protection && { durable: (seq) => protection.durable(seq) });
  const router = new Router(deps.directory, { postmaster: () => current().postmaster });
  const channel = new DeliveryChannel({ groups: deps.groups, timeoutMs: config.delivery.timeoutMs, chunkBytes: config.delivery.chunkBytes, node: config.nodeId, transport: deps.transport });
  let runner: QueueRunner | undefined;
  const queue = new MailQueue(store, { limits: () => current().queue, path, log, onDue: () => runner?.wake(), copied: Boolean(protection) });
  let intake: Intake | undefined;
  let submit: SubmitChannel | undefined;
  const bounces = new Bounces({ prepare: (s) => intake!.prepare(s), hostname: config.smtp.hostname, log });
  const dispatcher = new Dispatcher({
    queue,
    router,
    channel,
    relay: new Relay({ ...config.relay, heloName: config.smtp.hostname, log }),
    policy: () => current().queue,
    bounce: bounces.bounce,
    handOver: { offer: (...a) => submit!.offer(...a), relay: (...a) => submit!.relay(...a) },
    log,
  });
  // Longer than an inline call may take, so the runner never races the attempt after DATA.
  const inlineGraceMs = () => current().delivery.timeoutMs + 5_000;
  intake = new Intake({
    router,
    queue,
    dispatcher,
    node: config.nodeId,
    inline: () => current().delivery.inline,
    inlineGraceMs,
    log: deps.log.child({ component: 'intake' }),
  });
  const submitLog = deps.log.child({ component: 'submit' });
  submit = new SubmitChannel({
    intake,
    router,
    node: config.nodeId,
    mode: () => submitModeOf(current(), deps.place),
    logLevel: () => current().submit.log,
    // A backend's setting: a frontend handing relay mail to frontends would pass it round.
    viaFrontends: () => deps.place === 'backend' && current().relay.viaFrontends,
    takers: deps.takers,
    // A quarter of a delivery's deadline: a delivery whose rules made mail waits for its hand-over.
    submitter: new GrpcSubmitter({ timeoutMs: Math.ceil(config.delivery.timeoutMs / 4), chunkBytes: config.delivery.chunkBytes, node: config.nodeId }),
    log: submitLog,
  });
  runner = new QueueRunner(queue, dispatcher, { concurrency: config.queue.concurrency, inlineGraceMs, mayDeliver: protection && (() => protection.mayDeliver()), log });
  /** Makes waiting recipients (`which`) due now, when a way out has come back. */
  const retryWaiting = (which: (r: QueuedRecipient) => boolean, event: string, fields: object, msg: string) => {
    if (!store.messageCount) return;
    queue
      .retryNow(which)
      .then((n) => n && log.info({ event, ...fields, recipients: n }, msg))
      .catch((err) => log.warn({ event: 'queue.retry-failed', err }, 'could not make waiting mail due'));
  };
  // A node in remote mode whose takers were all gone offers what waits here as soon as one is back.
  let takersBefore = deps.takers?.takers().length ?? 0;
  deps.takers?.subscribe(() => {
    const now = deps.takers!.takers().length;
    const back = takersBefore === 0 && now > 0;
    takersBefore = now;
    if (back && submitModeOf(current(), deps.place) === 'remote') retryWaiting(() => true, 'submit.takers-back', {}, 'a queue taker is back; offering what waits here');
  });
  // Mail that waits for a group (its primary died under a delivery) goes to the new one at
  // once; mail for other domains keeps its backoff.
  deps.groups.onNewPrimary?.((group) =>
    retryWaiting((r) => r.route === 'local', 'queue.new-primary', { group }, 'a hosting group elected a primary; retrying what waits for a group'),
  );
  const wake = () => runner!.wake();
  protection?.attach(store, wake);
  const unobserve = [
    metrics.observe.queue(() => ({ messages: store.messageCount, bytes: store.byteCount, oldestAt: store.oldest() })),
    metrics.observe.diskGuard('queue', () => queue.diskFull),
  ];
  return {
    router,
    intake,
    queue,
    runner,
    submit,
    describe() {
      const mode = submitModeOf(current(), deps.place);
      // Keeps the disk's count fresh for the next look (statfs at most every 2 s).
      void queue.refusal().catch(() => undefined);
      const room = queue.headroom();
      const free = Math.min(room.bytes, room.disk);
      return {
        submitMode: mode,
        takes: mode === 'local-for-others' && room.messages > 0 && free > 0,
        queueDepth: store.messageCount,
        queueOldestAt: store.oldest(),
        queueFreeBytes: Number.isFinite(free) ? Math.max(0, free) : undefined,
      };
    },
    store,
    services: [
      closer('queue-store', async () => {
        for (const f of unobserve) f();
        channel.close();
        submit!.close();
        await store.close();
      }),
      runner,
      // Nobody follows a single node's queue log: it is trimmed to its end.
      logTrimmer(store, () => protection?.trimPoint() ?? store.position().seq, log),
      postmasterCheck(deps.directory, () => current().postmaster, log),
    ],
  };
}

/**
 * A node's mail flow as its gRPC host serves it: the Queue service over the queue's store
 * and the Submit service into the submit channel. Hosted where the node's one gRPC host is:
 * beside the flow in a cluster member, in the backend thread of a single node (its own handle
 * of the queue's LMDB environment; `wake` and `receive` then cross to the flow's thread).
 */
export function flowServices(deps: {
  store: QueueStore;
  node: string;
  wake: () => void;
  receive: (s: Submission, arrival: Arrival) => Promise<Accepted>;
  /** The partner copies that have every message (a cluster member). */
  copies?: () => string[];
  maxMessageBytes: () => number;
  log: Logger;
}): GrpcService[] {
  return [queueService(deps.store, deps.node, deps.wake, deps.copies), submitService(deps.receive, { maxMessageBytes: deps.maxMessageBytes, log: deps.log.child({ component: 'submit' }) })];
}

/**
 * At start, with no `postmaster` setting, a warning for every hosted domain without an
 * account or alias `postmaster@`: its postmaster mail falls back to the domain's first
 * account. One lookup per domain; which account that is, is found only when such mail comes.
 */
function postmasterCheck(directory: Directory, setting: () => string, log: Logger): Service {
  let state: Service['state'] = 'new';
  return {
    name: 'postmaster-check',
    get state() {
      return state;
    },
    async start() {
      state = 'running';
      if (setting()) return;
      try {
        for (const domain of await directory.hostedDomains()) {
          if ((await directory.resolve({ local: 'postmaster', domain, key: `postmaster@${domain}` })).kind === 'account') continue;
          log.warn(
            { event: 'postmaster.first-account', domain },
            `postmaster@${domain} goes to the domain's first account (451 4.3.0 while it has none): set postmaster or add an alias postmaster@${domain}`,
          );
        }
      } catch (err) {
        log.debug({ event: 'postmaster.check-failed', err }, 'postmaster check skipped');
      }
    },
    async stop() {
      state = 'stopped';
    },
  };
}
