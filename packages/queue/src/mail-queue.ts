import { Replies, type Logger, type MailError } from '@mailgrid/core';
import { statfs } from 'node:fs/promises';
import type { QueuedMessage, QueuedRecipient, QueueLimits, QueueStore, Route } from './queue-store.js';

export interface Enqueue {
  id: string;
  mailFrom: string;
  body: Buffer;
  receivedAt: number;
  origin: string;
  session?: string;
  isDsn?: boolean;
  recipients: {
    address: string;
    route: Route;
    account?: string;
    /** Not tried before this time (a recipient an inline attempt is about to deliver); default now. */
    notBefore?: number;
  }[];
}

/**
 * The durable queue as the mail flow uses it: room (backpressure), enqueue, and when that
 * is on disk. The queue runner takes messages out.
 */
export class MailQueue {
  private freeBytes = Infinity;
  private lastStat = 0;

  constructor(
    readonly store: QueueStore,
    private readonly options: {
      limits: () => QueueLimits & { minFreeBytes: number };
      path: string;
      log: Logger;
      /** Called when something was queued that is due now, so the runner looks at once. */
      onDue?: () => void;
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
      return Replies.queueFull();
    }
    return undefined;
  }

  /**
   * Queues a message for its recipients; resolves once committed (await `flushed` before
   * acknowledging it) with the message and recipient records as written.
   */
  async enqueue(m: Enqueue): Promise<{ message: QueuedMessage; recipients: QueuedRecipient[] }> {
    const now = Date.now();
    const message: QueuedMessage = { id: m.id, mailFrom: m.mailFrom, receivedAt: m.receivedAt, size: m.body.length, origin: m.origin, session: m.session, isDsn: m.isDsn };
    const recipients = await this.store.enqueue(
      message,
      m.body,
      m.recipients.map((r) => ({ address: r.address, route: r.route, account: r.account, queuedAt: now, nextAttemptAt: r.notBefore ?? now })),
    );
    if (m.recipients.some((r) => (r.notBefore ?? now) <= now)) this.options.onDue?.();
    return { message, recipients };
  }

  flushed(): Promise<void> {
    return this.store.flushed();
  }
}
