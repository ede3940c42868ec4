import { DiskGuard, Replies, type Logger, type MailError } from '@mailgrid/core';
import type { Notify, QueueEntry, QueuedMessage, QueuedRecipient, QueueLimits, QueueStore, Route } from './queue-store.js';

export interface Enqueue {
  id: string;
  mailFrom: string;
  body: Buffer;
  receivedAt: number;
  origin: string;
  session?: string;
  isDsn?: boolean;
  /** RFC 3461 ENVID and RET. */
  envid?: string;
  ret?: 'FULL' | 'HDRS';
  eightBit?: boolean;
  recipients: {
    address: string;
    route: Route;
    account?: string;
    /** Not tried before this time (a recipient an inline attempt is about to deliver); default now. */
    notBefore?: number;
    notify?: Notify[];
    orcpt?: string;
  }[];
}

/**
 * What a cluster member's queue partnership gives its queue: the durable hook (a write is
 * answered once the partner copy has it), whether the runner may deliver (not while this
 * queue may have been taken over), and it gets the store and the runner's wake-up.
 */
export interface QueueProtection {
  durable(seq: number): Promise<void>;
  mayDeliver(): boolean;
  attach(store: QueueStore, wake: () => void): void;
  /** The nodes whose copy has every answered write. */
  copies(): string[];
  /** Up to where the queue's log may be trimmed (what the partner has, less what is kept for one that was away). */
  trimPoint(): number;
}

/**
 * The durable queue as the mail flow uses it: room (backpressure), enqueue, settle, and when
 * that is on disk. The queue runner takes messages out.
 */
export class MailQueue {
  private readonly disk: DiskGuard;

  constructor(
    readonly store: QueueStore,
    private readonly options: {
      limits: () => QueueLimits & { minFreeBytes: number };
      path: string;
      log: Logger;
      /** Called when something was queued that is due now, so the runner looks at once. */
      onDue?: () => void;
      /** A partner may take this queue over: relayed recipients are marked before they are handed on (`handing`). */
      copied?: boolean;
    },
  ) {
    this.disk = new DiskGuard({ path: options.path, floor: () => options.limits().minFreeBytes, log: options.log });
  }

  /** Backpressure: undefined while there is room, else the 452 to answer. */
  async refusal(): Promise<MailError | undefined> {
    const limits = this.options.limits();
    if (this.store.messageCount >= limits.maxMessages || this.store.byteCount >= limits.maxBytes) return Replies.queueFull();
    return this.disk.reserve(0);
  }

  /** Whether the disk guard refuses mail now (the queue's disk below its free-space floor). */
  get diskFull(): boolean {
    return this.disk.refusing;
  }

  /** Room left before backpressure, as last counted: messages, bytes, and bytes of disk above its floor. */
  headroom(): { messages: number; bytes: number; disk: number } {
    const limits = this.options.limits();
    return { messages: limits.maxMessages - this.store.messageCount, bytes: limits.maxBytes - this.store.byteCount, disk: this.disk.headroom };
  }

  /** A message as the queue keeps it, not yet written (`enqueue` writes it; so may `settle`, with a change). */
  entry(m: Enqueue): QueueEntry {
    const now = Date.now();
    const { id, mailFrom, body, receivedAt, origin, session, isDsn, envid, ret, eightBit } = m;
    const message: QueuedMessage = { id, mailFrom, receivedAt, size: body.length, origin, session, isDsn, envid, ret, eightBit };
    return {
      message,
      body,
      recipients: m.recipients.map((r) => ({
        address: r.address,
        route: r.route,
        account: r.account,
        queuedAt: now,
        nextAttemptAt: r.notBefore ?? now,
        notify: r.notify,
        orcpt: r.orcpt,
      })),
    };
  }

  /**
   * Queues a message for its recipients; resolves once committed (await `flushed` before
   * acknowledging it) with the message and recipient records as written.
   */
  async enqueue(m: Enqueue): Promise<{ message: QueuedMessage; recipients: QueuedRecipient[] }> {
    const entry = this.entry(m);
    return { message: entry.message, recipients: await this.add(entry) };
  }

  /**
   * Writes an entry made with `entry()`; resolves at commit with its recipient records. Its
   * bytes are counted against the disk's floor first, so a burst cannot fill the disk.
   */
  async add(entry: QueueEntry): Promise<QueuedRecipient[]> {
    const full = await this.disk.reserve(entry.body.length);
    if (full) throw full;
    const recipients = await this.store.enqueue(entry);
    this.woken([entry]);
    return recipients;
  }

  /**
   * Relayed recipients about to be handed to a remote MX: marked, and the mark on disk here
   * and at the partner, before the SMTP transaction (see QueuedRecipient.handingAt).
   */
  async handing(recipients: QueuedRecipient[]): Promise<void> {
    // A queue nobody takes over needs no mark: it would cost a write and a flush per relay.
    if (!this.options.copied) return;
    const now = Date.now();
    await this.store.settle(recipients.map((r) => ({ recipient: { ...r, handingAt: now }, done: false })));
    await this.store.flushed();
  }

  /** Records attempts and, in the same transaction, queues `add` (see QueueStore.settle). */
  async settle(changes: { recipient: QueuedRecipient; done: boolean }[], add: QueueEntry[] = []): Promise<void> {
    await this.store.settle(changes, add);
    this.woken(add);
  }

  flushed(): Promise<void> {
    return this.store.flushed();
  }

  /** Makes every queued recipient (`which` of them) due now (a way out has come back); returns how many waited. */
  async retryNow(which: (r: QueuedRecipient) => boolean = () => true): Promise<number> {
    const now = Date.now();
    const changes = [...this.store.list()]
      .flatMap((e) => e.recipients)
      // Never tried: an inline attempt has it (Intake's grace), leave it to that.
      .filter((r) => r.state === 'queued' && r.attempts > 0 && r.nextAttemptAt > now && which(r))
      .map((r) => ({ recipient: { ...r, nextAttemptAt: now }, done: false }));
    await this.store.settle(changes);
    if (changes.length) this.options.onDue?.();
    return changes.length;
  }

  private woken(entries: QueueEntry[]): void {
    const now = Date.now();
    if (entries.some((e) => e.recipients.some((r) => r.nextAttemptAt <= now))) this.options.onDue?.();
  }
}
