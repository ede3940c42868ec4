import type { Logger } from '@mailgrid/core';
import { buildDsn, type DsnRecipient, type QueueEntry, type QueuedMessage } from '@mailgrid/queue';
import type { Prepared, Submission } from './intake.js';
import { newMessageId } from './message-id.js';

/**
 * Delivery status notifications to senders (RFC 3464, honouring RFC 3461's ENVID, RET and
 * ORCPT). A DSN is mail made on this node, so it is routed through Intake like any other
 * message (to a local sender's mailbox, or relayed to a remote one), and handed back as a
 * queue entry for the Dispatcher to write in the same transaction as the change it reports.
 * Never to the null sender, and never about a DSN: that is how bounce loops start.
 */
export class Bounces {
  constructor(private readonly options: { prepare: (s: Submission) => Promise<Prepared>; hostname: string; log: Logger }) {}

  readonly bounce = async (original: QueuedMessage, body: Buffer, recipients: DsnRecipient[]): Promise<QueueEntry | undefined> => {
    const log = this.options.log;
    if (!original.mailFrom || original.isDsn) {
      log.info({ event: 'queue.dsn-suppressed', messageId: original.id, rcpts: recipients.map((r) => r.address) }, 'no DSN for a null sender');
      return undefined;
    }
    const { hostname } = this.options;
    const dsn = buildDsn({
      reportingMta: hostname,
      from: `MAILER-DAEMON@${hostname}`,
      to: original.mailFrom,
      queueId: original.id,
      arrivalDate: original.receivedAt,
      envid: original.envid,
      ret: original.ret,
      original: body,
      recipients,
    });
    const prepared = await this.options.prepare({ id: newMessageId(), mailFrom: '', recipients: [original.mailFrom], body: dsn, isDsn: true, mayRelay: true });
    if (!prepared.kept.length) {
      const reason = prepared.routes[0]?.kind === 'unknown' ? prepared.routes[0].reason.reply : undefined;
      log.warn({ event: 'queue.dsn-undeliverable', messageId: original.id, to: original.mailFrom, reply: reason }, 'the sender cannot be reached; DSN dropped');
      return undefined;
    }
    return prepared.entry;
  };
}
