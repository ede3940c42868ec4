import type { Logger } from '@mailgrid/core';
import { buildDsn, type DsnRecipient, type QueuedMessage } from '@mailgrid/queue';
import type { Accepted, Submission } from './intake.js';

/**
 * Delivery status notifications to senders. A DSN is mail made on this node, so it enters
 * through Intake like any other message: routed, queued, delivered to a local sender's
 * mailbox or relayed to a remote one. Never to the null sender, and never about a DSN:
 * that is how bounce loops start.
 */
export class Bounces {
  constructor(private readonly options: { accept: (s: Submission) => Promise<Accepted>; hostname: string; log: Logger }) {}

  /** Resolves once the DSN is stored or durably queued (or needs none); throws if it cannot be queued now. */
  readonly notify = async (original: QueuedMessage, body: Buffer, recipients: DsnRecipient[]): Promise<void> => {
    if (!recipients.length) return;
    const log = this.options.log;
    if (!original.mailFrom || original.isDsn) {
      log.info({ event: 'queue.dsn-suppressed', messageId: original.id, rcpts: recipients.map((r) => r.address) }, 'no DSN for a null sender');
      return;
    }
    const { hostname } = this.options;
    const dsn = buildDsn({
      reportingMta: hostname,
      from: `MAILER-DAEMON@${hostname}`,
      to: original.mailFrom,
      queueId: original.id,
      arrivalDate: original.receivedAt,
      originalHeaders: body,
      recipients,
    });
    const result = await this.options.accept({
      id: `${original.id}.${recipients[0].action === 'failed' ? 'B' : 'D'}${Date.now().toString(36)}`,
      mailFrom: '',
      recipients: [original.mailFrom],
      body: dsn,
      isDsn: true,
      mayRelay: true,
    });
    if (result.accepted) return;
    if (result.reply.code >= 500) {
      log.warn({ event: 'queue.dsn-undeliverable', messageId: original.id, to: original.mailFrom, reply: result.reply }, 'the sender cannot be reached; DSN dropped');
      return;
    }
    throw new Error(`DSN not queued: ${result.reply.code} ${result.reply.enhanced} ${result.reply.text}`);
  };
}
