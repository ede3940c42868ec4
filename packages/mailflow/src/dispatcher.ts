import { metrics, totals, type Logger, type SmtpReply } from '@mailgrid/core';
import type { Trace } from '@mailgrid/protocol';
import { nextAttempt, type DsnRecipient, type MailQueue, type QueueEntry, type QueuedMessage, type QueuedRecipient, type Relay, type RetryPolicy } from '@mailgrid/queue';
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
  /** Stored here (final delivery), as opposed to handed to another server. */
  local?: boolean;
  /** Relayed to a next hop that took the DSN request along: it reports, not this node. */
  dsnPassed?: boolean;
}

/** A recipient stored in its mailbox (local) or taken by the next server (remote): counted here, where both happen, with the time since the message came in. */
function delivered(message: QueuedMessage, route: 'local' | 'remote'): void {
  if (route === 'local') {
    metrics.delivered.inc();
    totals.delivered++;
  } else metrics.relayed.inc();
  metrics.deliveryDuration.observe({ route }, Math.max(0, Date.now() - message.receivedAt) / 1000);
}

/** What the sender asked to hear about (RFC 3461); without NOTIFY, failures and delays. */
const wants = (r: QueuedRecipient, what: 'SUCCESS' | 'FAILURE' | 'DELAY') => (r.notify ? r.notify.includes(what) : what !== 'SUCCESS');

/**
 * The report (a DSN) about some recipients of a message, as a queue entry not yet written:
 * made through Intake, written with the settle it reports on. Undefined when none is sent
 * (a null sender, a report about a report, a sender that does not exist).
 */
export type Bounce = (original: QueuedMessage, body: Buffer, recipients: DsnRecipient[]) => Promise<QueueEntry | undefined>;

/** Hand-overs to other members over Submit (see SubmitChannel). */
export interface HandOver {
  /** A queue pass of a node in remote mode: every recipient to a queue taker; undefined when none took them. */
  offer(message: QueuedMessage, body: Buffer, recipients: QueuedRecipient[]): Promise<Outcome[] | undefined>;
  /** relay.viaFrontends: relayed recipients go to a frontend; undefined when not set. */
  relay(message: QueuedMessage, body: Buffer, recipients: QueuedRecipient[]): Promise<Outcome[]> | undefined;
}

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
      bounce: Bounce;
      handOver?: HandOver;
      log: Logger;
    },
  ) {}

  /**
   * Tries the recipients. `routes` (from RCPT, just now) skips routing them again; without
   * it (a queue pass) each is routed afresh, since accounts move and domains come and go,
   * and a node in remote submit mode first offers them to a queue taker.
   */
  async attempt(message: QueuedMessage, body: Buffer, recipients: QueuedRecipient[], routes?: Route[], trace: Trace = {}): Promise<Outcome[]> {
    if (!routes) {
      const taken = await this.options.handOver?.offer(message, body, recipients);
      if (taken) return taken;
    }
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
    // Relay via the frontends (relay.viaFrontends): every relayed recipient in one hand-over.
    const relayed = [...relay.values()].flat();
    const via = relayed.length ? this.options.handOver?.relay(message, body, relayed) : undefined;
    if (via) relay.clear();
    const sends = [
      ...[...local].map(async ([group, list]) => {
        const results = await this.options.channel.deliver(
          group,
          { id: message.id, mailFrom: message.mailFrom, body, receivedAt: message.receivedAt, directoryRevision: Math.max(...list.map((l) => l.route.revision)) },
          list.map(({ route }) => ({ address: route.address, account: route.account })),
          trace,
        );
        results.forEach((res, i) => {
          if (res.outcome === 'STORED') delivered(message, 'local');
          out.push({ recipient: list[i].r, delivered: res.outcome === 'STORED', permanent: res.outcome === 'PERMANENT_FAILURE', reply: res.reply, local: true });
        });
      }),
      ...(via ? [via.then((outcomes) => void out.push(...outcomes))] : []),
      ...[...relay].map(async ([domain, list]) => {
        const { mailFrom, envid, ret, eightBit } = message;
        // At most what is in flight when this node dies can be sent twice after a takeover.
        await this.options.queue.handing(list);
        const results = await this.options.relay.send(
          domain,
          { mailFrom, body, envid, ret, eightBit },
          list.map((r) => ({ address: r.address, notify: r.notify, orcpt: r.orcpt })),
        );
        results.forEach((res, i) => {
          if (res.delivered) delivered(message, 'remote');
          out.push({
            recipient: list[i],
            delivered: res.delivered,
            permanent: !res.delivered && res.reply.code >= 500,
            reply: res.reply,
            remoteMta: res.remoteMta,
            dsnPassed: res.dsnPassed,
          });
        });
      }),
    ];
    await Promise.all(sends);
    return out;
  }

  /**
   * Writes the outcome of one attempt: done, failed, or again later, and in the same
   * transaction the one report (DSN) of this pass about every recipient whose sender asked
   * to hear about it (RFC 3461 NOTIFY; without it, failures and delays). Resolves once
   * committed, telling whether anything is left to deliver (recipients still queued, or the
   * report), which a caller that acknowledges awaits `queue.flushed()` for. `inline`: the
   * attempt right after DATA, which Intake logs with the whole transaction.
   */
  async record(message: QueuedMessage, body: Buffer, outcomes: Outcome[], inline = false): Promise<boolean> {
    const now = Date.now();
    const policy = this.options.policy();
    const report: DsnRecipient[] = [];
    const changes = outcomes.map((o): { recipient: QueuedRecipient; done: boolean; failed?: boolean; warnedNow?: boolean } => {
      const r: QueuedRecipient = { ...o.recipient, attempts: o.recipient.attempts + 1, lastAttemptAt: now };
      const orcpt = { originalRecipient: r.orcpt, remoteMta: o.remoteMta, lastAttemptAt: now };
      if (o.delivered) {
        if (wants(r, 'SUCCESS') && !o.dsnPassed) report.push({ address: r.address, action: o.local ? 'delivered' : 'relayed', reply: o.reply, ...orcpt });
        return { recipient: r, done: true };
      }
      r.lastError = o.reply;
      const expired = now - r.queuedAt >= policy.lifetimeMs;
      if (o.permanent || expired) {
        // An expired recipient's report carries the last real reply, with the status of expiry.
        if (wants(r, 'FAILURE')) report.push({ address: r.address, action: 'failed', reply: o.reply, status: o.permanent ? undefined : '5.4.7', ...orcpt });
        metrics.bounced.inc({ reason: o.permanent ? 'permanent' : 'expired' });
        return { recipient: r, done: true, failed: true };
      }
      r.nextAttemptAt = nextAttempt(policy, r.attempts, now);
      if (policy.delayWarningMs && !r.warned && now - r.queuedAt >= policy.delayWarningMs) {
        r.warned = true;
        if (wants(r, 'DELAY')) report.push({ address: r.address, action: 'delayed', reply: o.reply, willRetryUntil: r.queuedAt + policy.lifetimeMs, ...orcpt });
        return { recipient: r, done: false, warnedNow: true };
      }
      return { recipient: r, done: false };
    });
    let dsn: QueueEntry | undefined;
    if (report.length) {
      try {
        dsn = await this.options.bounce(message, body, report);
      } catch (err) {
        // No report now: the failed recipients stay (tried again, report and all), a delay
        // notice is owed again, and the delivered ones still leave.
        this.options.log.error({ event: 'queue.dsn-failed', messageId: message.id, err }, 'could not make the DSN; will try again');
        for (const c of changes) {
          if (c.failed) Object.assign(c, { done: false, recipient: { ...c.recipient, nextAttemptAt: nextAttempt(policy, c.recipient.attempts, now) } });
          else if (c.warnedNow) c.recipient = { ...c.recipient, warned: false };
        }
      }
    }
    await this.options.queue.settle(changes, dsn ? [dsn] : []);
    const pending = !!dsn || changes.some((c) => !c.done);
    if (inline) return pending;
    this.options.log.info(
      {
        event: 'queue.attempt',
        messageId: message.id,
        results: outcomes.map((o) => ({ rcpt: o.recipient.address, delivered: o.delivered, reply: `${o.reply.code} ${o.reply.enhanced}`, attempt: o.recipient.attempts + 1 })),
        ...(dsn ? { dsn: dsn.message.id } : {}),
      },
      'delivery attempt',
    );
    return pending;
  }
}
