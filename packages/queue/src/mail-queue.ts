import { parseAddress, temporary, type Logger, type MailError } from '@mailgrid/core';
import type { Directory } from '@mailgrid/directory';
import { statfs } from 'node:fs/promises';
import { buildDsn, type DsnRecipient } from './dsn.js';
import type { QueuedMessage, QueueLimits, QueueStore, Reply, Route } from './queue-store.js';
import type { RetryPolicy } from './schedule.js';

export interface Enqueue {
  id: string;
  mailFrom: string;
  body: Buffer;
  receivedAt: number;
  origin: string;
  session?: string;
  isDsn?: boolean;
  recipients: { address: string; route: Route; account?: string; lastError?: Reply }[];
}

/**
 * What the rest of a node does with its queue: put messages in (durably), bounce, and ask
 * whether there is room. The queue runner takes them out.
 */
export class MailQueue {
  private freeBytes = Infinity;
  private lastStat = 0;

  constructor(
    readonly store: QueueStore,
    private readonly options: {
      directory: Directory;
      policy: RetryPolicy;
      limits: () => QueueLimits & { minFreeBytes: number };
      path: string;
      hostname: string;
      log: Logger;
      /** Called after anything is queued so the runner looks at once. */
      onEnqueue?: () => void;
    },
  ) {}

  /** Backpressure: undefined while there is room, else the 452 to answer. */
  async refusal(): Promise<MailError | undefined> {
    const limits = this.options.limits();
    if (Date.now() - this.lastStat > 2_000) {
      this.lastStat = Date.now();
      try {
        const s = await statfs(this.options.path);
        this.freeBytes = s.bavail * s.bsize;
      } catch (err) {
        this.options.log.warn({ event: 'queue.statfs-failed', err }, 'cannot read free disk space');
      }
    }
    if (this.store.messageCount >= limits.maxMessages || this.store.byteCount >= limits.maxBytes || this.freeBytes < limits.minFreeBytes) {
      return temporary('QUEUE_FULL', 452, '4.3.1', 'Insufficient system storage, try again later');
    }
    return undefined;
  }

  /** Queues a message for its recipients; resolves once it is on disk. */
  async enqueue(m: Enqueue): Promise<void> {
    const now = Date.now();
    const message: QueuedMessage = { id: m.id, mailFrom: m.mailFrom, receivedAt: m.receivedAt, size: m.body.length, origin: m.origin, session: m.session, isDsn: m.isDsn };
    await this.store.enqueue(
      message,
      m.body,
      m.recipients.map((r) => ({
        address: r.address,
        route: r.route,
        account: r.account,
        queuedAt: now,
        // A recipient that already failed once (inline) waits for the first retry; others go now.
        nextAttemptAt: r.lastError ? now + this.options.policy.minRetryMs : now,
        lastError: r.lastError,
        lastAttemptAt: r.lastError ? now : undefined,
      })),
    );
    this.options.log.info(
      { event: 'queue.enqueued', messageId: m.id, from: m.mailFrom, size: m.body.length, rcpts: m.recipients.map((r) => `${r.address} (${r.route})`) },
      'queued',
    );
    this.options.onEnqueue?.();
  }

  /**
   * Sends the sender a DSN for failed (or delayed) recipients. Never to the null sender,
   * and never about a DSN: that is how bounce loops start.
   */
  async notify(original: { id: string; mailFrom: string; receivedAt: number; isDsn?: boolean }, body: Buffer, recipients: DsnRecipient[]): Promise<void> {
    if (!recipients.length) return;
    if (!original.mailFrom || original.isDsn) {
      this.options.log.info({ event: 'queue.dsn-suppressed', messageId: original.id, rcpts: recipients.map((r) => r.address) }, 'no DSN for a null sender');
      return;
    }
    const sender = parseAddress(original.mailFrom);
    const dsn = buildDsn({
      reportingMta: this.options.hostname,
      from: `MAILER-DAEMON@${this.options.hostname}`,
      to: original.mailFrom,
      queueId: original.id,
      arrivalDate: original.receivedAt,
      originalHeaders: body,
      recipients,
    });
    let route: Route = 'relay';
    let account: string | undefined;
    if (sender) {
      try {
        const res = await this.options.directory.resolve(sender);
        if (res.kind === 'account') [route, account] = ['local', res.account];
        else if (res.kind === 'unknown-user') {
          this.options.log.warn({ event: 'queue.dsn-undeliverable', messageId: original.id, to: original.mailFrom }, 'local sender does not exist; DSN dropped');
          return;
        }
      } catch {
        // Directory unreachable: queue it as local-or-relay decided at delivery time.
        route = 'local';
      }
    }
    await this.enqueue({
      id: `${original.id}.${recipients[0].action === 'failed' ? 'B' : 'D'}${Date.now().toString(36)}`,
      mailFrom: '',
      body: dsn,
      receivedAt: Date.now(),
      origin: this.options.hostname,
      isDsn: true,
      recipients: [{ address: original.mailFrom, route, account }],
    });
  }
}
