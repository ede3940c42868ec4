import type { Config, Logger } from '@mailgrid/core';
import type { Directory, HostingGroups } from '@mailgrid/directory';
import { createMailFlow, type MailFlow, type QueueProtection, type QueueStatus, type QueueTakers } from '@mailgrid/mailflow';
import type { DeliveryTransport, RoleParts } from '@mailgrid/protocol';
import { SmtpFrontend } from './smtp-frontend.js';

export interface FrontendDeps {
  config: Config;
  log: Logger;
  directory: Directory;
  groups: HostingGroups;
  /** How deliveries reach the hosting groups; gRPC unless given (the single node's is in-process). */
  transport?: DeliveryTransport;
  /** The cluster's queue takers; absent on a single node (its submit mode is local). */
  takers?: QueueTakers;
  /** A cluster member's queue partnership (absent on a single node). */
  protection?: QueueProtection;
}

export interface FrontendParts extends RoleParts {
  flow: MailFlow;
  /** Applies changed live settings. */
  apply(config: Config): void;
  /** What the node publishes about its queue and submit mode in its membership entry. */
  describe(): QueueStatus;
}

/**
 * The frontend role, the same in the single node and in a cluster: SMTP in, the node's mail
 * flow (Intake, queue and runner, delivery channel to the hosting groups, relay, the submit
 * channel), and the Queue and Submit services for the node's gRPC host.
 */
export function buildFrontend(deps: FrontendDeps): FrontendParts {
  let current = deps.config;
  const flow = createMailFlow({ ...deps, current: () => current, place: deps.takers ? 'frontend' : 'single' });
  const smtp = new SmtpFrontend({ config: deps.config, log: deps.log, intake: flow.intake });
  return {
    services: [...flow.services, smtp],
    grpc: flow.grpc,
    flow,
    apply(next: Config) {
      current = next;
      smtp.applySettings(next);
    },
    describe: () => flow.describe(),
  };
}
