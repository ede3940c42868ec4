import { closer, type Config, type Logger, type Service } from '@mailgrid/core';
import type { Directory, HostingGroups } from '@mailgrid/directory';
import { MailQueue, QueueRunner, QueueServer, QueueStore, Relay } from '@mailgrid/queue';
import { join, resolve } from 'node:path';
import { DeliveryChannel } from './delivery-channel.js';
import { GroupDelivery } from './group-delivery.js';
import { SmtpFrontend } from './smtp-frontend.js';

export interface FrontendParts {
  /** In start order: queue store, runner, admin service, SMTP. */
  services: Service[];
  smtp: SmtpFrontend;
  queue: MailQueue;
  queueServer: QueueServer;
  /** Applies changed live settings. */
  apply(config: Config): void;
}

/**
 * A frontend's working parts, the same in a single node and in a cluster: SMTP in, local
 * delivery by hosting group, and the durable queue with its runner and admin service.
 */
export function frontendParts(config: Config, log: Logger, directory: Directory, groups: HostingGroups): FrontendParts {
  let current = config;
  const queuePath = join(resolve(config.dataDir), 'queue');
  const store = new QueueStore(queuePath);
  const channel = new DeliveryChannel(config.delivery);
  const delivery = new GroupDelivery(groups, channel, config.nodeId);
  const queueLog = log.child({ component: 'queue' });
  let runner: QueueRunner | undefined;
  const queue = new MailQueue(store, {
    directory,
    policy: config.queue,
    limits: () => current.queue,
    path: queuePath,
    hostname: config.smtp.hostname,
    log: queueLog,
    onEnqueue: () => runner?.wake(),
  });
  runner = new QueueRunner(queue, {
    directory,
    local: delivery,
    relay: new Relay({ ...config.relay, heloName: config.smtp.hostname, log: queueLog }),
    policy: () => current.queue,
    concurrency: config.queue.concurrency,
    log: queueLog,
  });
  const queueServer = new QueueServer({ host: config.grpc.host, port: config.queue.grpcPort, store, node: config.nodeId, wake: () => runner!.wake(), log: queueLog });
  const smtp = new SmtpFrontend({ config, log, directory, delivery, queue });
  return {
    services: [
      closer('queue-store', async () => {
        channel.close();
        await store.close();
      }),
      runner,
      queueServer,
      smtp,
    ],
    smtp,
    queue,
    queueServer,
    apply(next: Config) {
      current = next;
      smtp.applySettings(next);
    },
  };
}
