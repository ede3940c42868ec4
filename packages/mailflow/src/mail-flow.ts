import { closer, type Config, type Logger, type Service } from '@mailgrid/core';
import type { Directory, HostingGroups } from '@mailgrid/directory';
import type { DeliveryTransport, GrpcService } from '@mailgrid/protocol';
import { MailQueue, QueueStore, queueService, Relay } from '@mailgrid/queue';
import { join, resolve } from 'node:path';
import { Bounces } from './bounces.js';
import { DeliveryChannel } from './delivery-channel.js';
import { Dispatcher } from './dispatcher.js';
import { Intake } from './intake.js';
import { Router } from './router.js';
import { QueueRunner } from './runner.js';

export interface MailFlow {
  router: Router;
  intake: Intake;
  queue: MailQueue;
  runner: QueueRunner;
  /** In start order: the queue store (closed last), the runner. */
  services: Service[];
  /** The node's Queue service, for its gRPC host. */
  grpc: GrpcService[];
}

/** Where a node keeps its queue. */
export const queuePath = (config: Config) => join(resolve(config.dataDir), 'queue');

/**
 * The mail flow of one node, the same for every role: Router, Intake, the durable queue
 * with its runner, the delivery channel to hosting groups, relay and bounces. `current`
 * gives the live settings (limits and retry policy follow them).
 */
export function createMailFlow(deps: { config: Config; current: () => Config; log: Logger; directory: Directory; groups: HostingGroups; transport?: DeliveryTransport }): MailFlow {
  const { config, current } = deps;
  const log = deps.log.child({ component: 'queue' });
  const path = queuePath(config);
  const store = new QueueStore(path);
  const router = new Router(deps.directory, { postmaster: () => current().postmaster });
  const channel = new DeliveryChannel({ groups: deps.groups, timeoutMs: config.delivery.timeoutMs, chunkBytes: config.delivery.chunkBytes, node: config.nodeId, transport: deps.transport });
  let runner: QueueRunner | undefined;
  const queue = new MailQueue(store, { limits: () => current().queue, path, log, onDue: () => runner?.wake() });
  let intake: Intake | undefined;
  const bounces = new Bounces({ prepare: (s) => intake!.prepare(s), hostname: config.smtp.hostname, log });
  const dispatcher = new Dispatcher({
    queue,
    router,
    channel,
    relay: new Relay({ ...config.relay, heloName: config.smtp.hostname, log }),
    policy: () => current().queue,
    bounce: bounces.bounce,
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
  runner = new QueueRunner(queue, dispatcher, { concurrency: config.queue.concurrency, inlineGraceMs, log });
  const wake = () => runner!.wake();
  return {
    router,
    intake,
    queue,
    runner,
    services: [
      closer('queue-store', async () => {
        channel.close();
        await store.close();
      }),
      runner,
      postmasterCheck(deps.directory, () => current().postmaster, log),
    ],
    grpc: [queueService(store, config.nodeId, wake)],
  };
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
