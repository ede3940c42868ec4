import { AccessListener, Authenticator, MailboxAccess, MemoryLedger, TlsSource, type FailureLedger, type ProtocolHandler } from '@mailgrid/access';
import { closer, type AccessProtocolName, type Config, type Logger } from '@mailgrid/core';
import type { Directory, HostingGroups } from '@mailgrid/directory';
import { createMailFlow, type MailFlow, type QueueProtection, type QueueStatus, type QueueTakers } from '@mailgrid/mailflow';
import type { DeliveryTransport, RoleParts } from '@mailgrid/protocol';
import { imapProtocol } from './imap/session.js';
import { pop3Protocol } from './pop3/session.js';
import { SmtpProtocol } from './smtp/protocol.js';

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
  access: AccessListener;
  /** Applies changed live settings. */
  apply(config: Config): void;
  /** What the node publishes about its queue and submit mode in its membership entry. */
  describe(): QueueStatus;
}

/**
 * The frontend role, the same in the single node and in a cluster: the node's mail flow
 * (Intake, queue and runner, delivery channel to the hosting groups, relay, the submit
 * channel) with the Queue and Submit services for the node's gRPC host, and every access
 * protocol of the registry on the access layer: SMTP in (MX and authenticated submission),
 * POP3 and IMAP out. Logins are checked by the accounts' groups.
 */
export function buildFrontend(deps: FrontendDeps): FrontendParts {
  let current = deps.config;
  const config = () => current;
  const flow = createMailFlow({ ...deps, current: config, place: deps.takers ? 'frontend' : 'single' });
  const tls = new TlsSource(deps.config, deps.log);
  const mailboxes = new MailboxAccess({ router: flow.router, groups: deps.groups, timeoutMs: () => current.delivery.timeoutMs, node: deps.config.nodeId, log: deps.log.child({ component: 'mailboxes' }) });
  const auth = new Authenticator({ router: flow.router, mailboxes, ledger: deps.ledger ?? new MemoryLedger(), current: config, log: deps.log.child({ component: 'auth' }) });
  const smtp = new SmtpProtocol({ config: deps.config, router: flow.router, intake: flow.intake, tls, auth, log: deps.log });
  // Every protocol of the registry has its session here; a new one is an entry in core and a line in this table.
  const handlers: Record<AccessProtocolName, ProtocolHandler> = {
    smtp: smtp.handler(),
    submission: smtp.handler(),
    pop3: pop3Protocol({ config, tls, auth, mailboxes }),
    imap: imapProtocol({ config, tls, auth, mailboxes }),
  };
  const access = new AccessListener({ config: deps.config, tls, log: deps.log, handlers });
  return {
    services: [...flow.services, tls, closer('mailboxes', () => mailboxes.close()), access],
    // The flow's Queue and Submit services are hosted where the node's gRPC host is (`flowServices`).
    grpc: [],
    flow,
    access,
    apply(next: Config) {
      current = next;
      access.applySettings(next);
    },
    describe: () => flow.describe(),
  };
}
