import type { Logger, Service, ServiceState } from '@mailgrid/core';
import type { MailQueue, QueuedRecipient } from '@mailgrid/queue';
import type { Dispatcher } from './dispatcher.js';

/**
 * Takes due recipients out of the queue and hands each message's to the Dispatcher, up to
 * `concurrency` messages at once. Reads only what is due, so its cost follows the number of
 * messages due, not the size of the queue.
 */
export class QueueRunner implements Service {
  readonly name = 'queue-runner';
  private _state: ServiceState = 'new';
  private readonly inflight = new Set<string>();
  private running = 0;
  private wakeUp: (() => void) | undefined;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly queue: MailQueue,
    private readonly dispatcher: Dispatcher,
    private readonly options: {
      concurrency: number;
      /** How far ahead an inline attempt schedules its recipients (Intake's grace). */
      inlineGraceMs: () => number;
      /** Whether it may deliver now (a cluster member: not while its queue may have been taken over); default always. */
      mayDeliver?: () => boolean;
      log: Logger;
    },
  ) {}

  get state(): ServiceState {
    return this._state;
  }

  async start(): Promise<void> {
    // What a previous process left to inline attempts it did not finish is due now.
    const resumed = await this.queue.store.resumeUnattempted(Date.now() + this.options.inlineGraceMs());
    if (resumed) this.options.log.info({ event: 'queue.resumed', recipients: resumed }, 'resuming interrupted inline deliveries');
    this._state = 'running';
    this.loop = this.run();
  }

  /** Stops taking new work and waits for attempts under way (they settle in the queue). */
  async stop(drainMs = 30_000): Promise<void> {
    if (this._state !== 'running') return;
    this._state = 'stopping';
    this.wake();
    const deadline = Date.now() + drainMs;
    await this.loop;
    while (this.running > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    this._state = 'stopped';
  }

  /** Look at the queue now (something became due: queued, released, retried). */
  wake(): void {
    this.wakeUp?.();
  }

  private async run(): Promise<void> {
    const store = this.queue.store;
    while (this._state === 'running') {
      if (this.options.mayDeliver && !this.options.mayDeliver()) {
        await this.sleep(500);
        continue;
      }
      const free = this.options.concurrency - this.running;
      const due = free > 0 ? store.dueRecipients(Date.now(), free * 4, (id) => this.inflight.has(id)) : [];
      if (!due.length) {
        const next = store.nextDueAt();
        await this.sleep(next === undefined ? 5_000 : Math.min(5_000, Math.max(10, next - Date.now())));
        continue;
      }
      for (const [id, batch] of byMessage(due)) {
        if (this.running >= this.options.concurrency) break;
        this.inflight.add(id);
        this.running++;
        this.attempt(id, batch)
          .catch((err) => this.options.log.error({ event: 'queue.attempt-crashed', messageId: id, err }, 'attempt failed'))
          .finally(() => {
            this.inflight.delete(id);
            this.running--;
            this.wake();
          });
      }
      if (this.running >= this.options.concurrency) await this.sleep(1_000);
    }
  }

  private async attempt(id: string, batch: QueuedRecipient[]): Promise<void> {
    const store = this.queue.store;
    const message = store.message(id);
    const body = store.body(id);
    if (!message || !body) {
      await store.settle(batch.map((recipient) => ({ recipient, done: true })));
      return;
    }
    const outcomes = await this.dispatcher.attempt(message, body, batch);
    await this.dispatcher.record(message, body, outcomes);
    // A relayed recipient's settle is what stops it from being sent again after a crash.
    await this.queue.flushed();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = () => {
        this.wakeUp = undefined;
        done();
      };
    });
  }
}

/** A message's due recipients travel together; the Dispatcher splits them by destination. */
function byMessage(due: QueuedRecipient[]): Map<string, QueuedRecipient[]> {
  const by = new Map<string, QueuedRecipient[]>();
  for (const r of due) by.set(r.messageId, [...(by.get(r.messageId) ?? []), r]);
  return by;
}
