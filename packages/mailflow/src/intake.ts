import { Replies, toMailError, type Logger, type MailError, type SmtpReply } from '@mailgrid/core';
import type { MailQueue, QueuedRecipient } from '@mailgrid/queue';
import type { Dispatcher, Outcome } from './dispatcher.js';
import { newMessageId } from './message-id.js';
import type { LocalRoute, Route, Router } from './router.js';
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
 * The one way into the mail flow. The message and all its recipients are committed to the
 * queue first; only then are local recipients delivered inline over the delivery channel,
 * and the attempt is recorded like any queue attempt. So a refusal (4xx) can only come
 * before anything was stored, and a client's retry never stores a message twice; what an
 * inline attempt leaves behind is already queued, and is flushed before the 250.
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

  /** May a message go to this recipient (RCPT), and where. */
  async recipient(address: string, context: { mayRelay: boolean }): Promise<Verdict<Route>> {
    const route = await this.route(address, context.mayRelay);
    if (route.kind === 'unknown' || route.kind === 'tempfail') return refuse(route.reason);
    // The queue may have filled since MAIL, and an accepted recipient may have to be queued.
    const full = await this.room();
    return full ? refuse(full) : accept(route);
  }

  async accept(s: Submission): Promise<Accepted> {
    const id = s.id ?? newMessageId();
    const log = s.log ?? this.log;
    const routes = await Promise.all(s.recipients.map((r) => (typeof r === 'string' ? this.route(r, s.mayRelay) : r)));
    const verdicts = new Map<Route, RecipientVerdict>();
    for (const r of routes) if (r.kind === 'unknown') verdicts.set(r, { address: r.address, state: 'failed', reply: r.reason.reply });
    const kept = routes.filter((r) => r.kind !== 'unknown');
    const done = (reply: SmtpReply) => this.done(log, id, s, routes, verdicts, reply);
    if (!kept.length) return done(routes[0]?.kind === 'unknown' ? routes[0].reason.reply : Replies.noAnswer().reply);

    const inline = this.options.inline() ? kept.filter((r): r is LocalRoute => r.kind === 'local') : [];
    const isInline = new Set<Route>(inline);
    const notBefore = Date.now() + this.options.inlineGraceMs();
    let entry: Awaited<ReturnType<MailQueue['enqueue']>>;
    try {
      entry = await this.options.queue.enqueue({
        id,
        mailFrom: s.mailFrom,
        body: s.body,
        receivedAt: s.receivedAt ?? Date.now(),
        origin: this.options.node,
        session: s.session,
        isDsn: s.isDsn,
        recipients: kept.map((r) => ({
          address: r.address,
          route: r.kind === 'relay' ? 'relay' : 'local',
          account: r.kind === 'local' ? r.account : undefined,
          notBefore: isInline.has(r) ? notBefore : undefined,
        })),
      });
    } catch (err) {
      // Nothing was stored anywhere yet: the client's retry is a first attempt.
      log.error({ event: 'intake.enqueue-failed', messageId: id, err }, 'could not queue the message');
      return done(toMailError(err).reply);
    }

    if (inline.length) {
      const queued = kept.flatMap((r, i) => (isInline.has(r) ? [entry.recipients[i]] : []));
      const outcomes = await this.options.dispatcher.attempt(entry.message, s.body, queued, inline, { session: s.session });
      outcomes.forEach((o) => verdicts.set(inline[queued.indexOf(o.recipient)], verdictOf(o)));
      if (inline.length === kept.length && outcomes.every((o) => o.permanent)) {
        // Every recipient refused for good: the client is told now, so no DSN.
        await this.drop(entry.recipients, log, id);
        return done(outcomes[0].reply);
      }
      try {
        await this.options.dispatcher.record(entry.message, s.body, outcomes, true);
      } catch (err) {
        // The entry still holds them; the runner takes over after the grace time.
        log.error({ event: 'intake.record-failed', messageId: id, err }, 'could not record the inline attempt');
      }
    }
    if (this.options.queue.store.message(id)) {
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
    log.info(
      {
        event: accepted ? 'mail.accepted' : 'mail.refused',
        messageId: id,
        from: s.mailFrom,
        size: s.body.length,
        rcpts: recipients.map((v) => `${v.address}=${v.state === 'failed' ? `${v.reply.code} ${v.reply.enhanced}` : v.state}`).join(' '),
        reply: `${reply.code} ${reply.enhanced}`,
      },
      accepted ? 'message accepted' : 'message refused',
    );
    return { id, accepted, reply, recipients };
  }
}

function verdictOf(o: Outcome): RecipientVerdict {
  return { address: o.recipient.address, state: o.delivered ? 'stored' : o.permanent ? 'failed' : 'queued', reply: o.reply };
}
