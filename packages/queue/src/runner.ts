import { parseAddress, type Logger, type Service, type ServiceState } from '@mailgrid/core';
import type { Directory } from '@mailgrid/directory';
import type { DsnRecipient } from './dsn.js';
import type { MailQueue } from './mail-queue.js';
import type { QueuedMessage, QueuedRecipient, Reply } from './queue-store.js';
import type { Relay } from './relay.js';
import { nextAttempt, type RetryPolicy } from './schedule.js';

/** How the runner hands local recipients to their backends (the frontend's DeliveryChannel). */
export interface LocalDelivery {
  deliver(
    group: string,
    delivery: { messageId: string; mailFrom: string; body: Buffer; receivedAt: number; recipients: { address: string; account: string; idempotencyKey: string }[] },
  ): Promise<{ address: string; outcome: string; reply?: Reply | null }[]>;
}

export interface Outcome {
  recipient: QueuedRecipient;
  delivered: boolean;
  /** 5xx: final. */
  permanent: boolean;
  reply: Reply;
  remoteMta?: string;
}

/**
 * Takes due recipients out of the queue and tries them: local ones over the delivery
 * channel to their group's primary (looked up again each time, the account may have
 * moved), others to the destination's MX. Delivered or permanently failed recipients leave
 * the queue (failures with a DSN to the sender); the rest wait for their next try, and past
 * the queue lifetime they bounce. Reads only what is due, so its cost follows the number of
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
    private readonly options: {
      directory: Directory;
      local: LocalDelivery;
      relay: Relay;
      policy: () => RetryPolicy;
      concurrency: number;
      log: Logger;
    },
  ) {}

  get state(): ServiceState {
    return this._state;
  }

  async start(): Promise<void> {
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

  /** Look at the queue now (something was queued or released). */
  wake(): void {
    this.wakeUp?.();
  }

  private async run(): Promise<void> {
    const store = this.queue.store;
    while (this._state === 'running') {
      const free = this.options.concurrency - this.running;
      const due = free > 0 ? store.dueRecipients(Date.now(), free * 4, (id, idx) => this.inflight.has(`${id}:${idx}`)) : [];
      if (!due.length) {
        const next = store.nextDueAt();
        await this.sleep(next === undefined ? 5_000 : Math.min(5_000, Math.max(10, next - Date.now())));
        continue;
      }
      for (const batch of this.batches(due)) {
        if (this.running >= this.options.concurrency) break;
        for (const r of batch) this.inflight.add(`${r.messageId}:${r.idx}`);
        this.running++;
        this.attempt(batch)
          .catch((err) => this.options.log.error({ event: 'queue.attempt-crashed', messageId: batch[0].messageId, err }, 'attempt failed'))
          .finally(() => {
            for (const r of batch) this.inflight.delete(`${r.messageId}:${r.idx}`);
            this.running--;
            this.wake();
          });
      }
      if (this.running >= this.options.concurrency) await this.sleep(1_000);
    }
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

  /** Recipients of one message to one destination travel together. */
  private batches(due: QueuedRecipient[]): QueuedRecipient[][] {
    const by = new Map<string, QueuedRecipient[]>();
    for (const r of due) {
      const dest = r.route === 'relay' ? `relay:${r.address.split('@').pop()!.toLowerCase()}` : 'local';
      const key = `${r.messageId} ${dest}`;
      by.set(key, [...(by.get(key) ?? []), r]);
    }
    return [...by.values()];
  }

  private async attempt(batch: QueuedRecipient[]): Promise<void> {
    const store = this.queue.store;
    const message = store.message(batch[0].messageId);
    const body = store.body(batch[0].messageId);
    if (!message || !body) {
      await store.settle(batch.map((recipient) => ({ recipient, done: true })));
      return;
    }
    const outcomes = batch[0].route === 'relay' ? await this.relay(message, body, batch) : await this.local(message, body, batch);
    await this.record(message, body, outcomes);
  }

  private async local(message: QueuedMessage, body: Buffer, batch: QueuedRecipient[]): Promise<Outcome[]> {
    const out: Outcome[] = [];
    const byGroup = new Map<string, { r: QueuedRecipient; account: string }[]>();
    for (const r of batch) {
      const a = parseAddress(r.address);
      try {
        const res = a ? await this.options.directory.resolve(a) : { kind: 'unknown-user' as const };
        if (res.kind === 'account') byGroup.set(res.group, [...(byGroup.get(res.group) ?? []), { r, account: res.account }]);
        else if (res.kind === 'foreign') {
          // The domain is no longer hosted here: the mail goes out like any other.
          const moved = { ...r, route: 'relay' as const };
          out.push(...(await this.relay(message, body, [moved])));
        } else out.push({ recipient: r, delivered: false, permanent: true, reply: { code: 550, enhanced: '5.1.1', text: 'No such user' } });
      } catch {
        out.push({ recipient: r, delivered: false, permanent: false, reply: { code: 451, enhanced: '4.4.3', text: 'Directory lookup failed' } });
      }
    }
    for (const [group, list] of byGroup) {
      const results = await this.options.local.deliver(group, {
        messageId: message.id,
        mailFrom: message.mailFrom,
        body,
        receivedAt: message.receivedAt,
        // The same key as the first, inline attempt: a delivery that did land is not stored twice.
        recipients: list.map(({ r, account }) => ({ address: r.address, account, idempotencyKey: `${message.id}:${account}` })),
      });
      results.forEach((res, i) => {
        const reply = res.reply ?? { code: 451, enhanced: '4.3.0', text: 'No answer' };
        out.push({ recipient: list[i].r, delivered: res.outcome === 'STORED', permanent: res.outcome === 'PERMANENT_FAILURE', reply });
      });
    }
    return out;
  }

  private async relay(message: QueuedMessage, body: Buffer, batch: QueuedRecipient[]): Promise<Outcome[]> {
    const domain = batch[0].address.split('@').pop()!.toLowerCase();
    const results = await this.options.relay.send(domain, message.mailFrom, batch.map((r) => r.address), body);
    return results.map((res, i) => ({
      recipient: batch[i],
      delivered: res.delivered,
      permanent: !res.delivered && res.reply.code >= 500,
      reply: res.reply,
      remoteMta: res.remoteMta,
    }));
  }

  /** Writes the outcome of one attempt: done, failed (DSN), or again later. */
  private async record(message: QueuedMessage, body: Buffer, outcomes: Outcome[]): Promise<void> {
    const now = Date.now();
    const policy = this.options.policy();
    const failed: DsnRecipient[] = [];
    const delayed: DsnRecipient[] = [];
    const changes = outcomes.map((o) => {
      const r: QueuedRecipient = { ...o.recipient, attempts: o.recipient.attempts + 1, lastAttemptAt: now };
      if (o.delivered) return { recipient: r, done: true };
      r.lastError = o.reply;
      const expired = now - r.queuedAt >= policy.lifetimeMs;
      if (o.permanent || expired) {
        const reply = o.permanent ? o.reply : { code: 554, enhanced: '5.4.7', text: `Delivery time expired; last error: ${o.reply.code} ${o.reply.enhanced} ${o.reply.text}` };
        failed.push({ address: r.address, action: 'failed', reply, remoteMta: o.remoteMta, lastAttemptAt: now });
        return { recipient: r, done: true, dsn: 'failed' as const };
      }
      r.nextAttemptAt = nextAttempt(policy, r.attempts, now);
      if (policy.delayWarningMs && !r.warned && now - r.queuedAt >= policy.delayWarningMs) {
        r.warned = true;
        delayed.push({ address: r.address, action: 'delayed', reply: o.reply, remoteMta: o.remoteMta, lastAttemptAt: now, willRetryUntil: r.queuedAt + policy.lifetimeMs });
        return { recipient: r, done: false, dsn: 'delayed' as const };
      }
      return { recipient: r, done: false };
    });
    // A DSN is queued before its recipients leave: a crash in between repeats it at worst.
    // If it cannot be queued, those recipients stay (and are tried again, DSN and all) while
    // the delivered ones still leave, so nothing is lost and nothing is sent twice.
    const unsent = new Set<string>();
    for (const [kind, list] of [['failed', failed], ['delayed', delayed]] as const) {
      try {
        await this.queue.notify(message, body, list);
      } catch (err) {
        this.options.log.error({ event: 'queue.dsn-failed', messageId: message.id, kind, err }, 'could not queue the DSN; will try again');
        unsent.add(kind);
      }
    }
    await this.queue.store.settle(
      changes.map((c) => {
        if (!c.dsn || !unsent.has(c.dsn)) return c;
        const r = { ...c.recipient, warned: c.dsn === 'delayed' ? false : c.recipient.warned };
        if (c.dsn === 'failed') r.nextAttemptAt = nextAttempt(policy, r.attempts, now);
        return { recipient: r, done: false };
      }),
    );
    this.options.log.info(
      {
        event: 'queue.attempt',
        messageId: message.id,
        results: outcomes.map((o) => ({ rcpt: o.recipient.address, delivered: o.delivered, reply: `${o.reply.code} ${o.reply.enhanced}`, attempt: o.recipient.attempts + 1 })),
      },
      'delivery attempt',
    );
  }
}
