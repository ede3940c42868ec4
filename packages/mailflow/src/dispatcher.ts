import { Replies, type Logger, type SmtpReply } from '@mailgrid/core';
import type { Trace } from '@mailgrid/protocol';
import { nextAttempt, type DsnRecipient, type MailQueue, type QueuedMessage, type QueuedRecipient, type Relay, type RetryPolicy } from '@mailgrid/queue';
import type { DeliveryChannel } from './delivery-channel.js';
import type { LocalRoute, Route, Router } from './router.js';

/** What one attempt did for one queued recipient. */
export interface Outcome {
  recipient: QueuedRecipient;
  delivered: boolean;
  /** 5xx: final. */
  permanent: boolean;
  reply: SmtpReply;
  remoteMta?: string;
}

/** Sends the sender a report about failed or delayed recipients (a DSN, made through Intake). */
export type Notify = (original: QueuedMessage, body: Buffer, recipients: DsnRecipient[]) => Promise<void>;

/**
 * One attempt at some recipients of a queued message, and what follows from it. Local
 * recipients go over the delivery channel to their group's primary, one call per group;
 * others are relayed, one transaction per domain. `record` is the one place outcomes are
 * written: delivered and permanently failed recipients leave the queue (the failed ones
 * after a DSN is queued), the rest wait for their next try, and past the queue lifetime
 * they bounce. The queue runner and the inline attempt after DATA both come through here.
 */
export class Dispatcher {
  constructor(
    private readonly options: {
      queue: MailQueue;
      router: Router;
      channel: DeliveryChannel;
      relay: Relay;
      policy: () => RetryPolicy;
      notify: Notify;
      log: Logger;
    },
  ) {}

  /**
   * Tries the recipients. `routes` (from RCPT, just now) skips routing them again; without
   * it each is routed afresh, since accounts move and domains come and go.
   */
  async attempt(message: QueuedMessage, body: Buffer, recipients: QueuedRecipient[], routes?: Route[], trace: Trace = {}): Promise<Outcome[]> {
    const routed = routes ?? (await Promise.all(recipients.map((r) => this.options.router.route(r.address))));
    const out: Outcome[] = [];
    const local = new Map<string, { r: QueuedRecipient; route: LocalRoute }[]>();
    const relay = new Map<string, QueuedRecipient[]>();
    routed.forEach((route, i) => {
      const r = recipients[i];
      if (route.kind === 'local') local.set(route.group, [...(local.get(route.group) ?? []), { r, route }]);
      else if (route.kind === 'relay') relay.set(route.domain, [...(relay.get(route.domain) ?? []), r]);
      else out.push({ recipient: r, delivered: false, permanent: route.kind === 'unknown', reply: route.reason.reply });
    });
    const sends = [
      ...[...local].map(async ([group, list]) => {
        const results = await this.options.channel.deliver(
          group,
          { id: message.id, mailFrom: message.mailFrom, body, receivedAt: message.receivedAt, directoryRevision: Math.max(...list.map((l) => l.route.revision)) },
          list.map(({ route }) => ({ address: route.address, account: route.account })),
          trace,
        );
        results.forEach((res, i) =>
          out.push({ recipient: list[i].r, delivered: res.outcome === 'STORED', permanent: res.outcome === 'PERMANENT_FAILURE', reply: res.reply }),
        );
      }),
      ...[...relay].map(async ([domain, list]) => {
        const results = await this.options.relay.send(domain, message.mailFrom, list.map((r) => r.address), body);
        results.forEach((res, i) =>
          out.push({ recipient: list[i], delivered: res.delivered, permanent: !res.delivered && res.reply.code >= 500, reply: res.reply, remoteMta: res.remoteMta }),
        );
      }),
    ];
    await Promise.all(sends);
    return out;
  }

  /**
   * Writes the outcome of one attempt: done, failed (DSN), or again later. Resolves once
   * committed, with how many of these recipients stay queued; a caller that acknowledges
   * them awaits `queue.flushed()`. `inline`: the attempt right after DATA, which Intake logs
   * with the whole transaction.
   */
  async record(message: QueuedMessage, body: Buffer, outcomes: Outcome[], inline = false): Promise<number> {
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
        const reply = o.permanent ? o.reply : Replies.deliveryExpired(o.reply).reply;
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
      if (!list.length) continue;
      try {
        await this.options.notify(message, body, list);
      } catch (err) {
        this.options.log.error({ event: 'queue.dsn-failed', messageId: message.id, kind, err }, 'could not queue the DSN; will try again');
        unsent.add(kind);
      }
    }
    const settled = changes.map((c) => {
      if (!c.dsn || !unsent.has(c.dsn)) return c;
      const r = { ...c.recipient, warned: c.dsn === 'delayed' ? false : c.recipient.warned };
      if (c.dsn === 'failed') r.nextAttemptAt = nextAttempt(policy, r.attempts, now);
      return { recipient: r, done: false };
    });
    await this.options.queue.store.settle(settled);
    const left = settled.filter((c) => !c.done).length;
    if (inline) return left;
    this.options.log.info(
      {
        event: 'queue.attempt',
        messageId: message.id,
        results: outcomes.map((o) => ({ rcpt: o.recipient.address, delivered: o.delivered, reply: `${o.reply.code} ${o.reply.enhanced}`, attempt: o.recipient.attempts + 1 })),
      },
      'delivery attempt',
    );
    return left;
  }
}
