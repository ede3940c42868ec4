import { Replies } from '@mailgrid/core';
import { LoggedLmdb, type LoggedOptions, type LogPosition } from '@mailgrid/store';
import type { Database } from 'lmdb';

export type Route = 'local' | 'relay';
export type RecipientState = 'queued' | 'held';
/** RFC 3461 NOTIFY: when the sender wants a report about a recipient. */
export type Notify = 'NEVER' | 'SUCCESS' | 'FAILURE' | 'DELAY';

export interface QueuedMessage {
  id: string;
  mailFrom: string;
  receivedAt: number;
  size: number;
  /** Node and SMTP session that accepted it, for logs. */
  origin: string;
  session?: string;
  /** DSN envelope id (ENVID) and what to return in a bounce (RET). */
  envid?: string;
  ret?: 'FULL' | 'HDRS';
  /** A bounce or delay notice we generated: it is never itself bounced. */
  isDsn?: boolean;
  /** The body has 8-bit bytes (or was declared BODY=8BITMIME): relayed only with 8BITMIME. */
  eightBit?: boolean;
}

export interface Reply {
  code: number;
  enhanced: string;
  text: string;
}

export interface QueuedRecipient {
  messageId: string;
  idx: number;
  address: string;
  route: Route;
  /** Resolved account and group for local recipients (looked up again at each attempt). */
  account?: string;
  state: RecipientState;
  attempts: number;
  queuedAt: number;
  nextAttemptAt: number;
  lastError?: Reply;
  lastAttemptAt?: number;
  /** A delay notice was sent for it. */
  warned?: boolean;
  /** RFC 3461 NOTIFY and ORCPT as the sender gave them; no NOTIFY means FAILURE,DELAY. */
  notify?: Notify[];
  orcpt?: string;
  /**
   * Being handed to a remote MX since this time: written (and copied to the partner) before
   * the SMTP transaction, cleared by the settle right after it. One found after a takeover
   * may have been sent already.
   */
  handingAt?: number;
}

/** A recipient as it enters the queue (the store numbers it and starts its count). */
export type NewRecipient = Omit<QueuedRecipient, 'messageId' | 'idx' | 'state' | 'attempts'>;

/** A message as it enters the queue. */
export interface QueueEntry {
  message: QueuedMessage;
  body: Buffer;
  recipients: NewRecipient[];
}

export interface QueueLimits {
  maxMessages: number;
  maxBytes: number;
}

type RcptKey = [messageId: string, idx: number];
type DueKey = [at: number, messageId: string, idx: number];

/**
 * The durable queue of a node, on LMDB:
 * - `messages` id → envelope; `bodies` id → bytes (stored once for every recipient)
 * - `recipients` [id, idx] → state, attempts, next attempt, last error
 * - `due` [time, id, idx] → an index of queued recipients by next attempt, so the runner
 *   reads only what is due, whatever the size of the queue
 * - `meta` message and byte counts, kept in the same transactions
 * Every change is also an entry of the store's log (LoggedLmdb), which the node's queue
 * partner follows into its copy. Every change resolves once committed; `flushed()` resolves
 * once everything committed so far is on disk here and at the partner, so a caller that
 * acknowledges a message waits for it and one that only tidies up (an idempotent
 * redelivery would repair a lost write) does not.
 */
export class QueueStore extends LoggedLmdb {
  private readonly messages: Database<QueuedMessage, string>;
  private readonly bodies: Database<Buffer, string>;
  private readonly recipients: Database<QueuedRecipient, RcptKey>;
  private readonly due: Database<1, DueKey>;
  private readonly meta: Database<number, string>;

  constructor(path: string, options: LoggedOptions = {}) {
    super(
      path,
      [{ name: 'messages' }, { name: 'bodies', binary: true, byReference: true }, { name: 'recipients' }, { name: 'due' }, { name: 'meta' }],
      options,
    );
    this.messages = this.table('messages');
    this.bodies = this.table('bodies');
    this.recipients = this.table('recipients');
    this.due = this.table('due');
    this.meta = this.table('meta');
    if (!options.readOnly && !options.endOnly) this.epoch = this.openEpoch();
  }

  get messageCount(): number {
    return this.meta.get('messages') ?? 0;
  }

  get byteCount(): number {
    return this.meta.get('bytes') ?? 0;
  }

  /** Arrival time of the oldest message still queued, or undefined. */
  oldest(): number | undefined {
    for (const { value } of this.messages.getRange({ limit: 1 })) return value.receivedAt;
    return undefined;
  }

  /**
   * Stores a message and its recipients; resolves once committed (see `flushed`), with the
   * records written. An id already queued is refused (nothing is overwritten, no count drifts).
   */
  async enqueue(entry: QueueEntry): Promise<QueuedRecipient[]> {
    const [records] = await this.commitLogged(() => this.put(entry));
    return records;
  }

  /** Queued recipients whose next attempt is at or before `now`, oldest first. */
  dueRecipients(now: number, limit: number, skip: (messageId: string, idx: number) => boolean = () => false): QueuedRecipient[] {
    const out: QueuedRecipient[] = [];
    for (const key of this.due.getKeys({ end: [now, '\uffff', Number.MAX_SAFE_INTEGER] })) {
      const [, id, idx] = key;
      if (skip(id, idx)) continue;
      const r = this.recipients.get([id, idx]);
      if (r && r.state === 'queued') out.push(r);
      if (out.length >= limit) break;
    }
    return out;
  }

  /**
   * Makes due now every recipient scheduled before `until` that was never attempted: at
   * start, those are inline attempts a previous process did not live to finish (see Intake).
   * Returns how many.
   */
  async resumeUnattempted(until: number): Promise<number> {
    const now = Date.now();
    const found: QueuedRecipient[] = [];
    for (const [, id, idx] of this.due.getKeys({ start: [now, '', 0], end: [until, '\uffff', Number.MAX_SAFE_INTEGER] })) {
      const r = this.recipients.get([id, idx]);
      if (r && r.state === 'queued' && r.attempts === 0) found.push(r);
    }
    await this.settle(found.map((r) => ({ recipient: { ...r, nextAttemptAt: now }, done: false })));
    return found.length;
  }

  /** When the next queued recipient becomes due, or undefined for an idle queue. */
  nextDueAt(): number | undefined {
    for (const [at] of this.due.getKeys({ limit: 1 })) return at;
    return undefined;
  }

  message(id: string): QueuedMessage | undefined {
    return this.messages.get(id);
  }

  body(id: string): Buffer | undefined {
    return this.bodies.get(id);
  }

  recipientsOf(id: string): QueuedRecipient[] {
    return [...this.recipients.getRange({ start: [id, 0], end: [id, Number.MAX_SAFE_INTEGER] })].map((e) => e.value);
  }

  /** Every queued message, oldest first (for the admin listing). */
  *list(limit = Infinity): Generator<{ message: QueuedMessage; recipients: QueuedRecipient[] }> {
    let n = 0;
    for (const { value } of this.messages.getRange()) {
      if (n++ >= limit) return;
      yield { message: value, recipients: this.recipientsOf(value.id) };
    }
  }

  /**
   * Records attempts: a recipient that is done (delivered, bounced or deleted) leaves the
   * queue, and its message with it once no recipient is left; any other is rescheduled.
   * `add` enters in the same transaction (the DSN about these recipients), so the report
   * and the change it reports are written together or not at all.
   */
  async settle(changes: { recipient: QueuedRecipient; done: boolean }[], add: QueueEntry[] = []): Promise<void> {
    if (!changes.length && !add.length) return;
    await this.commitLogged(() => {
      for (const entry of add) this.put(entry);
      const touched = new Set<string>();
      for (const { recipient: r, done } of changes) {
        const key: RcptKey = [r.messageId, r.idx];
        const before = this.recipients.get(key);
        if (!before) continue;
        if (before.state === 'queued') this.unset('due', [before.nextAttemptAt, r.messageId, r.idx]);
        if (done) {
          this.unset('recipients', key);
          touched.add(r.messageId);
        } else {
          // An operator's hold made while an attempt was under way wins over its reschedule.
          const next = before.state === 'held' && r.state === 'queued' && r.attempts > before.attempts ? { ...r, state: 'held' as const } : r;
          this.set('recipients', key, next);
          if (next.state === 'queued') this.set('due', [next.nextAttemptAt, r.messageId, r.idx], 1);
        }
      }
      for (const id of touched) this.dropIfEmpty(id);
    });
  }

  /**
   * A partner's takeover: the messages of a dead node's queue, as its copy has them, enter
   * this queue with their recipients as they were (attempts, next try, holds; one never
   * tried, which an inline attempt of the dead node had, is due now). One already here (a
   * takeover resumed after a crash) is left as it is.
   */
  async adopt(from: QueueStore): Promise<{ messages: number; handing: number }> {
    let messages = 0;
    let handing = 0;
    const batch: { message: QueuedMessage; body: Buffer; recipients: QueuedRecipient[] }[] = [];
    const flush = async () => {
      await this.write(() => {
        for (const { message, body, recipients } of batch) {
          if (this.messages.get(message.id)) continue;
          this.putMessage(message, body, recipients);
          messages++;
          handing += recipients.filter((r) => r.handingAt).length;
        }
      });
      batch.length = 0;
    };
    const now = Date.now();
    for (const { message, recipients: all } of from.list()) {
      const body = from.body(message.id);
      // Never tried: left to an inline attempt that died with its node.
      const recipients = all.map((r) => (r.state === 'queued' && r.attempts === 0 && r.nextAttemptAt > now ? { ...r, nextAttemptAt: now } : r));
      if (body && recipients.length) batch.push({ message, body, recipients });
      if (batch.length >= 100) await flush();
    }
    await flush();
    return { messages, handing };
  }

  /**
   * The owner's side of a takeover: its partner claimed this queue as its copy was at
   * `claimed`, so every message that copy held is the partner's now and leaves here,
   * undelivered; what came after it (written while the partner no longer followed) stays.
   * When this log no longer reaches back to `claimed`, nothing can be told apart and
   * everything stays (delivered twice rather than lost). Returns how many left, or undefined.
   */
  async dropTakenOver(claimed: LogPosition): Promise<number | undefined> {
    if (!this.holds(claimed)) return undefined;
    const after = this.putsSince(claimed.seq + 1, 'messages');
    const gone = [...this.messages.getKeys()].filter((id) => !after.has(id));
    await this.write(() => {
      for (const id of gone) {
        for (const r of this.recipientsOf(id)) {
          if (r.state === 'queued') this.unset('due', [r.nextAttemptAt, id, r.idx]);
          this.unset('recipients', [id, r.idx]);
        }
        this.dropIfEmpty(id);
      }
    });
    return gone.length;
  }

  /** Inside a write transaction: one new message, counted once. */
  /** Inside a write transaction: one new message, counted once. */
  private put({ message, body, recipients }: QueueEntry): QueuedRecipient[] {
    if (this.messages.get(message.id)) throw Replies.duplicateQueueId(message.id);
    const records = recipients.map((r, idx): QueuedRecipient => ({ ...r, messageId: message.id, idx, state: 'queued', attempts: 0 }));
    this.putMessage(message, body, records);
    return records;
  }

  private putMessage(message: QueuedMessage, body: Buffer, records: QueuedRecipient[]): void {
    this.set('messages', message.id, message);
    this.set('bodies', message.id, body);
    for (const r of records) {
      this.set('recipients', [message.id, r.idx], r);
      if (r.state === 'queued') this.set('due', [r.nextAttemptAt, message.id, r.idx], 1);
    }
    this.set('meta', 'messages', this.messageCount + 1);
    this.set('meta', 'bytes', this.byteCount + body.length);
  }

  private dropIfEmpty(id: string): void {
    for (const _ of this.recipients.getKeys({ start: [id, 0], end: [id, Number.MAX_SAFE_INTEGER], limit: 1 })) return;
    // The size is in the envelope: reading the body back only to measure it cost a copy per message.
    const size = this.messages.get(id)?.size ?? 0;
    this.unset('messages', id);
    this.unset('bodies', id);
    this.set('meta', 'messages', Math.max(0, this.messageCount - 1));
    this.set('meta', 'bytes', Math.max(0, this.byteCount - size));
  }
}
