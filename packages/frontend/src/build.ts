import { closer, type Config, type Logger } from '@mailgrid/core';
import type { Directory, HostingGroups } from '@mailgrid/directory';
import { createMailFlow, type MailFlow, type QueueProtection, type QueueStatus, type QueueTakers } from '@mailgrid/mailflow';
import type { DeliveryTransport, RoleParts } from '@mailgrid/protocol';
import { Authenticator, MemoryLedger, type FailureLedger } from './access.js';
import { Pop3Frontend } from './pop3-server.js';
import { SmtpFrontend } from './smtp-frontend.js';
import { TlsSource } from './tls-source.js';

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
  /** Failed logins per client address, shared by the frontends of a cluster; in memory unless given. */
  ledger?: FailureLedger;
}

export interface FrontendParts extends RoleParts {
  flow: MailFlow;
  /** Applies changed live settings. */
  apply(config: Config): void;
  /** What the node publishes about its queue and submit mode in its membership entry. */
  describe(): QueueStatus;
}

/**
 * The frontend role, the same in the single node and in a cluster: SMTP in (MX and
 * authenticated submission), POP3 out, the node's mail flow (Intake, queue and runner,
 * delivery channel to the hosting groups, relay, the submit channel), and the Queue and
 * Submit services for the node's gRPC host. Logins are checked by the accounts' groups.
 */
export function buildFrontend(deps: FrontendDeps): FrontendParts {
  let current = deps.config;
  const flow = createMailFlow({ ...deps, current: () => current, place: deps.takers ? 'frontend' : 'single' });
  const tls = new TlsSource(deps.config, deps.log);
  const auth = new Authenticator({
    router: flow.router,
    groups: deps.groups,
    ledger: deps.ledger ?? new MemoryLedger(),
    current: () => current,
    node: deps.config.nodeId,
    log: deps.log.child({ component: 'auth' }),
  });
  const access = { config: deps.config, log: deps.log, router: flow.router, tls, auth };
  const smtp = new SmtpFrontend({ ...access, intake: flow.intake });
  const pop3 = new Pop3Frontend(access);
  return {
    services: [...flow.services, tls, closer('auth', () => auth.close()), smtp, pop3],
    grpc: flow.grpc,
    flow,
    apply(next: Config) {
      current = next;
      smtp.applySettings(next);
      pop3.applySettings(next);
    },
    describe: () => flow.describe(),
  };
}
