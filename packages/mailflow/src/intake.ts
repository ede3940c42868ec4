import { metrics, Replies, totals, toMailError, type Logger, type MailError, type SmtpReply } from '@mailgrid/core';
import type { Enqueue, MailQueue, Notify, QueueEntry, QueuedRecipient } from '@mailgrid/queue';
import type { Dispatcher, Outcome } from './dispatcher.js';
import { newMessageId } from './message-id.js';
import type { LocalRoute, Route, Router } from './router.js';
import type { TrailRecord } from './submit.js';
import { accept, refuse, type Verdict } from './verdict.js';

/** A message as it enters, whatever brought it: SMTP, submission, Submit, a DSN, a rule. */
export interface Submission {
  /** Given when the caller needs it first (the SMTP listener writes it into Received:). */
  id?: string;
  mailFrom: string;
  /** Addresses to route here, or routes already decided (RCPT time). */
  recipients: (string | Route)[];
  body: Buffer;
  receivedAt?: number;
  session?: string;
  isDsn?: boolean;
  /** May recipients in domains not hosted here be relayed: a trusted client, an authenticated user, mail made here. */
  mayRelay: boolean;
  /** The session's logger, so the message's line carries its session. */
  log?: Logger;
  /** RFC 3461 ENVID and RET of the message. */
  envid?: string;
  ret?: 'FULL' | 'HDRS';
  /** RFC 3461 NOTIFY and ORCPT, one entry per recipient (in the order of `recipients`). */
  dsn?: (RecipientDsn | undefined)[];
  /** 8-bit content (declared BODY=8BITMIME, or found in it). */
  eightBit?: boolean;
  /** This node's log records about the message, which travel with it to a queue taker (submit.log). */
  trail?: TrailRecord[];
  /** Where it came in, for the metrics: the SMTP listener (mx, submission, submissions); else `submit` (rules, DSNs, other members, the CLI). */
  via?: string;
}

export interface RecipientDsn {
  notify?: Notify[];
  orcpt?: string;
}

/** A submission routed and made into a queue entry, nothing written yet. */
export interface Prepared {
  id: string;
  /** One per recipient of the submission, in order. */
  routes: Route[];
  /** The routes that go somewhere, in the order of `entry.recipients`. */
  kept: Route[];
  entry: QueueEntry;
}

export type RecipientState = 'stored' | 'queued' | 'failed';

export interface RecipientVerdict {
  address: string;
  state: RecipientState;
  reply: SmtpReply;
}

/** What became of a submission: one verdict per recipient and the one reply for it all. */
export interface Accepted {
  id: string;
  /** The reply is a 2xx: every recipient is stored, durably queued, or reported by a DSN. */
  accepted: boolean;
  reply: SmtpReply;
  recipients: RecipientVerdict[];
}

/**
 * The one way into the mail flow. A refusal (4xx) may only come before anything was stored,
 * so a client's retry never stores a message twice:
 * - a message with several recipients is committed to the queue, all of them, before any
 *   is delivered inline; the inline attempt is then recorded like any queue attempt, and
 *   what it leaves behind is flushed before the 250;
 * - a message for one local recipient cannot be half-delivered: it is delivered inline
 *   first and queued only if it has to wait.
 */
export class Intake {
  private readonly log: Logger;

  constructor(
    private readonly options: {
      router: Router;
      queue: MailQueue;
      dispatcher: Dispatcher;
      node: string;
      /** Deliver local recipients before answering (delivery.inline), or only queue. */
      inline: () => boolean;
      /** How long the runner leaves a recipient to the inline attempt (a crash hands it over after this). */
      inlineGraceMs: () => number;
      log: Logger;
    },
  ) {
    this.log = options.log;
  }

  /** Backpressure: undefined while the queue has room, else the refusal (452 4.3.1). */
  room(): Promise<MailError | undefined> {
    return this.options.queue.refusal();
  }

  /** The recipients queued here of a message with this id; undefined when there is none. */
  queuedRecipients(id: string): string[] | undefined {
    if (!this.options.queue.store.message(id)) return undefined;
    return this.options.queue.store.recipientsOf(id).map((r) => r.address);
  }

  /** May a message go to this recipient (RCPT), and where. */
  async recipient(address: string, context: { mayRelay: boolean }): Promise<Verdict<Route>> {
    const route = await this.route(address, context.mayRelay);
    if (route.kind === 'unknown' || route.kind === 'tempfail') return refuse(route.reason);
    // The queue may have filled since MAIL, and an accepted recipient may have to be queued.
    const full = await this.room();
    return full ? refuse(full) : accept(route);
  }

  /** Routes a submission and builds its queue entry, writing nothing (see Bounces). */
  async prepare(s: Submission): Promise<Prepared> {
    const id = s.id ?? newMessageId();
    const routes = await Promise.all(s.recipients.map((r) => (typeof r === 'string' ? this.route(r, s.mayRelay) : r)));
    // Unknown recipients are answered, not queued; each kept one takes its own DSN request.
    const kept: Route[] = [];
    const recipients: Enqueue['recipients'] = [];
    routes.forEach((r, i) => {
      if (r.kind === 'unknown') return;
      kept.push(r);
      const { notify, orcpt } = s.dsn?.[i] ?? {};
      recipients.push({ address: r.address, route: r.kind === 'relay' ? 'relay' : 'local', account: r.kind === 'local' ? r.account : undefined, notify, orcpt });
    });
    const entry = this.options.queue.entry({
      id,
      mailFrom: s.mailFrom,
      body: s.body,
      receivedAt: s.receivedAt ?? Date.now(),
      origin: this.options.node,
      session: s.session,
      isDsn: s.isDsn,
      envid: s.envid,
      ret: s.ret,
      eightBit: s.eightBit,
      recipients,
    });
    return { id, routes, kept, entry };
  }

  async accept(s: Submission): Promise<Accepted> {
    const log = s.log ?? this.log;
    const { id, routes, kept, entry } = await this.prepare(s);
    const verdicts = new Map<Route, RecipientVerdict>();
    for (const r of routes) if (r.kind === 'unknown') verdicts.set(r, { address: r.address, state: 'failed', reply: r.reason.reply });
    const done = (reply: SmtpReply) => this.done(log, id, s, routes, verdicts, reply);
    if (!kept.length) return done(routes[0]?.kind === 'unknown' ? routes[0].reason.reply : Replies.noAnswer().reply);

    const inline = this.options.inline() ? kept.filter((r): r is LocalRoute => r.kind === 'local') : [];
    const isInline = new Set<Route>(inline);
    // A report of success is written with the settle that earns it: only the queue's way in does that.
    const wantsSuccess = entry.recipients.some((r) => r.notify?.includes('SUCCESS'));
    // A message for one local recipient cannot be half-delivered, so it needs no queue copy
    // to protect a retry: it is tried first, and queued only if it has to wait.
    const first = inline.length === 1 && kept.length === 1 && !wantsSuccess ? await this.tryFirst(entry, inline[0], s.session) : undefined;
    if (first?.delivered) {
      verdicts.set(inline[0], verdictOf(first));
      return done(Replies.accepted('stored', id));
    }
    if (first?.permanent) return done(first.reply);

    const notBefore = Date.now() + this.options.inlineGraceMs();
    // The runner leaves inline recipients alone meanwhile (after a failed first try, record() sets their backoff).
    kept.forEach((r, i) => isInline.has(r) && (entry.recipients[i].nextAttemptAt = notBefore));
    let written: QueuedRecipient[];
    try {
      written = await this.options.queue.add(entry);
    } catch (err) {
      // Nothing was stored anywhere yet: the client's retry is a first attempt.
      log.error({ event: 'intake.enqueue-failed', messageId: id, err }, 'could not queue the message');
      return done(toMailError(err).reply);
    }

    // Relayed and not-yet-routable recipients stay queued whatever the inline attempt does.
    let left = inline.length < kept.length;
    if (first) {
      // It waits: recorded as the attempt it was (its error, its backoff).
      verdicts.set(inline[0], verdictOf(first));
      left = true;
      await this.options.dispatcher
        .record(entry.message, s.body, [{ ...first, recipient: written[0] }], true)
        .catch((err) => log.error({ event: 'intake.record-failed', messageId: id, err }, 'could not record the inline attempt'));
    } else if (inline.length) {
      const queued = kept.flatMap((r, i) => (isInline.has(r) ? [written[i]] : []));
      const outcomes = await this.options.dispatcher.attempt(entry.message, s.body, queued, inline, { session: s.session });
      outcomes.forEach((o) => verdicts.set(inline[queued.indexOf(o.recipient)], verdictOf(o)));
      if (!left && outcomes.every((o) => o.permanent)) {
        // Every recipient refused for good: the client is told now, so no DSN.
        await this.drop(written, log, id);
        return done(outcomes[0].reply);
      }
      if (!left && !wantsSuccess && outcomes.every((o) => o.delivered)) {
        // All stored: tidying the queue need not delay the reply. Were it lost, a restarted
        // runner would deliver again and the backends would recognise the idempotency keys.
        this.options.queue
          .settle(written.map((recipient) => ({ recipient, done: true })))
          .catch((err) => log.warn({ event: 'intake.settle-failed', messageId: id, err }, 'delivered message left in the queue'));
      } else {
        try {
          if (await this.options.dispatcher.record(entry.message, s.body, outcomes, true)) left = true;
        } catch (err) {
          // The entry still holds them; the runner takes over after the grace time.
          left = true;
          log.error({ event: 'intake.record-failed', messageId: id, err }, 'could not record the inline attempt');
        }
      }
    }
    if (left) {
      try {
        await this.options.queue.flushed();
      } catch (err) {
        log.error({ event: 'intake.flush-failed', messageId: id, err }, 'queue not flushed');
        return done(Replies.storageFailed(err).reply);
      }
    }
    for (const r of kept) if (!verdicts.has(r)) verdicts.set(r, { address: r.address, state: 'queued', reply: Replies.accepted('queued', id) });
    const states = new Set([...verdicts.values()].map((v) => v.state));
    const how = states.has('stored') ? (states.has('queued') ? 'stored and queued' : 'stored') : 'queued';
    return done(Replies.accepted(how, id));
  }

  /** The inline attempt of a one-recipient message, before anything is queued. */
  private async tryFirst(entry: QueueEntry, route: LocalRoute, session?: string): Promise<Outcome> {
    const recipient: QueuedRecipient = { ...entry.recipients[0], messageId: entry.message.id, idx: 0, state: 'queued', attempts: 0 };
    const [outcome] = await this.options.dispatcher.attempt(entry.message, entry.body, [recipient], [route], { session });
    return outcome;
  }

  /** Routing plus the relay policy: a domain not hosted here is refused unless the sender may relay. */
  private async route(address: string, mayRelay: boolean): Promise<Route> {
    const route = await this.options.router.route(address);
    return route.kind === 'relay' && !mayRelay ? { kind: 'unknown', address, reason: Replies.relayDenied(address) } : route;
  }

  private async drop(recipients: QueuedRecipient[], log: Logger, id: string): Promise<void> {
    try {
      await this.options.queue.store.settle(recipients.map((recipient) => ({ recipient, done: true })));
      await this.options.queue.flushed();
    } catch (err) {
      // Left queued, the runner would bounce it later: the sender hears twice, nothing is lost.
      log.error({ event: 'intake.drop-failed', messageId: id, err }, 'could not drop a refused message from the queue');
    }
  }

  /** The one line a message leaves in the log, and the result. */
  private done(log: Logger, id: string, s: Submission, routes: Route[], verdicts: Map<Route, RecipientVerdict>, reply: SmtpReply): Accepted {
    const recipients = routes.map((r) => verdicts.get(r) ?? { address: r.address, state: 'failed' as const, reply });
    const accepted = reply.code < 300;
    if (accepted) {
      metrics.accepted.inc({ listener: s.via ?? 'submit' });
      totals.accepted++;
    }
    log.info(
      {
        event: accepted ? 'mail.accepted' : 'mail.refused',
        messageId: id,
        from: s.mailFrom,
        size: s.body.length,
        rcpts: recipients.map((v) => `${v.address}=${v.state === 'failed' ? `${v.reply.code} ${v.reply.enhanced}` : v.state}`).join(' '),
        ...(accepted ? {} : { reply: `${reply.code} ${reply.enhanced}` }),
      },
      accepted ? 'message accepted' : 'message refused',
    );
    return { id, accepted, reply, recipients };
  }
}

function verdictOf(o: Outcome): RecipientVerdict {
  return { address: o.recipient.address, state: o.delivered ? 'stored' : o.permanent ? 'failed' : 'queued', reply: o.reply };
}
