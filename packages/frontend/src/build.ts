import type { Config, Logger } from '@mailgrid/core';
import type { Directory, HostingGroups } from '@mailgrid/directory';
import { createMailFlow, type MailFlow } from '@mailgrid/mailflow';
import type { DeliveryTransport, RoleParts } from '@mailgrid/protocol';
import { SmtpFrontend } from './smtp-frontend.js';

export interface FrontendDeps {
  config: Config;
  log: Logger;
  directory: Directory;
  groups: HostingGroups;
  /** How deliveries reach the hosting groups; gRPC unless given (the single node's is in-process). */
  transport?: DeliveryTransport;
}

export interface FrontendParts extends RoleParts {
  flow: MailFlow;
  /** Applies changed live settings. */
  apply(config: Config): void;
  /** What the node publishes about its queue in its membership entry. */
  describe(): { queueDepth: number; queueOldestAt?: number };
}

/**
 * The frontend role, the same in the single node and in a cluster: SMTP in, the node's mail
 * flow (Intake, queue and runner, delivery channel to the hosting groups, relay), and the
 * Queue service for the node's gRPC host.
 */
export function buildFrontend(deps: FrontendDeps): FrontendParts {
  let current = deps.config;
  const flow = createMailFlow({ ...deps, current: () => current });
  const smtp = new SmtpFrontend({ config: deps.config, log: deps.log, intake: flow.intake });
  return {
    services: [...flow.services, smtp],
    grpc: flow.grpc,
    flow,
    apply(next: Config) {
      current = next;
      smtp.applySettings(next);
    },
    describe: () => ({ queueDepth: flow.queue.store.messageCount, queueOldestAt: flow.queue.store.oldest() }),
  };
}
