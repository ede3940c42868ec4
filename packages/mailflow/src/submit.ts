import type * as grpc from '@grpc/grpc-js';
import { badByteIn, MailError, Replies, toMailError, type Config, type Logger, type SmtpReply } from '@mailgrid/core';
import {
  ClientPool,
  createSubmitClient,
  deadline,
  fromServiceError,
  proto,
  receiveChunked,
  toServiceError,
  traceMetadata,
  writeChunked,
  type GrpcService,
  type SubmitClient,
  type SubmitEnvelope,
  type SubmitEnvelope__Output,
  type SubmitHandlers,
  type SubmitResponse__Output,
} from '@mailgrid/protocol';
import type { Notify, QueuedMessage, QueuedRecipient } from '@mailgrid/queue';
import type { Outcome } from './dispatcher.js';
import type { Accepted, Intake, RecipientVerdict, Submission } from './intake.js';
import { newMessageId } from './message-id.js';
import type { Router } from './router.js';

/** Where mail made on a node is queued (BRIEF §2.4); `auto` is resolved by `submitModeOf`. */
export type SubmitMode = 'local' | 'local-for-others' | 'remote';

/** `auto`: local-for-others on a cluster frontend, remote on a cluster backend, local on a single node. */
export function submitModeOf(config: Config, place: 'single' | 'frontend' | 'backend'): SubmitMode {
  const mode = config.submit.mode;
  if (mode !== 'auto') return mode;
  return place === 'frontend' ? 'local-for-others' : place === 'backend' ? 'remote' : 'local';
}

/** A member that takes other members' mail, as the member list shows it. */
export interface QueueTaker {
  id: string;
  /** Its gRPC address (the Submit service). */
  address: string;
  queueDepth: number;
}

/** The controller's live lists, as this node's membership view shows them. */
export interface QueueTakers {
  /** Live members in local-for-others mode whose queue has room, other than this node. */
  takers(): QueueTaker[];
  /** Live frontends offering Submit (for relay.viaFrontends), takers first. */
  frontends(): QueueTaker[];
  /** Calls `listener` whenever the member list changes. */
  subscribe(listener: () => void): void;
}

/** One of this node's log records about a message, kept to travel with it (submit.log). */
export interface TrailRecord {
  level: 'info' | 'warn' | 'error';
  event: string;
  msg: string;
  time: string;
  [field: string]: unknown;
}

/** Logs a record and keeps it in the message's trail. */
export function note(trail: TrailRecord[], log: Logger, level: TrailRecord['level'], fields: { event: string; [k: string]: unknown }, msg: string): void {
  log[level](fields, msg);
  trail.push({ ...fields, level, msg, time: new Date().toISOString() });
}

/** How a hand-over came: from a member into this node's queue, or from the CLI through its submit mode. */
export interface Arrival {
  /** The member that handed it over; '' for the CLI. */
  origin: string;
  log: TrailRecord[];
  /** `send --as`: the sender must be an account hosted here. */
  asAccount: boolean;
}

/** A submission as it crosses a wire (gRPC, or the single node's port): the envelope and the body. */
export function envelopeOf(s: Submission & { id: string }, arrival: Arrival): SubmitEnvelope {
  return {
    messageId: s.id,
    mailFrom: s.mailFrom,
    recipients: s.recipients.map((r, i) => ({ address: typeof r === 'string' ? r : r.address, notify: s.dsn?.[i]?.notify ?? [], orcpt: s.dsn?.[i]?.orcpt ?? '' })),
    size: s.body.length,
    receivedAtMs: s.receivedAt ?? Date.now(),
    origin: arrival.origin,
    isDsn: Boolean(s.isDsn),
    envid: s.envid ?? '',
    ret: s.ret ?? '',
    eightBit: Boolean(s.eightBit),
    log: arrival.log.map((r) => JSON.stringify(r)),
    asAccount: arrival.asAccount,
  };
}

/** The other way: what arrived, as a Submission (mail made in the cluster may be relayed) and how it came. */
export function submissionOf(e: SubmitEnvelope__Output, body: Buffer): { submission: Submission; arrival: Arrival } {
  const log: TrailRecord[] = [];
  for (const line of e.log) {
    try {
      const r = JSON.parse(line);
      if (r && typeof r === 'object' && ['info', 'warn', 'error'].includes(r.level)) log.push(r);
    } catch {
      // a record that does not parse is not written
    }
  }
  return {
    submission: {
      id: e.messageId || undefined,
      mailFrom: e.mailFrom,
      recipients: e.recipients.map((r) => r.address),
      dsn: e.recipients.map((r) => ({ notify: r.notify.length ? (r.notify as Notify[]) : undefined, orcpt: r.orcpt || undefined })),
      body,
      receivedAt: Number(e.receivedAtMs) || Date.now(),
      isDsn: e.isDsn,
      envid: e.envid || undefined,
      ret: e.ret === 'FULL' || e.ret === 'HDRS' ? e.ret : undefined,
      eightBit: e.eightBit,
      mayRelay: true,
    },
    arrival: { origin: e.origin, log, asAccount: e.asAccount },
  };
}

/** The Submit service's client side: one message to a node, answered once it is durably queued there. */
export class GrpcSubmitter {
  private readonly clients = new ClientPool<SubmitClient>(createSubmitClient);

  constructor(private readonly options: { timeoutMs: number; chunkBytes: number; node: string }) {}

  submit(address: string, s: Submission & { id: string }, arrival: Arrival): Promise<Accepted> {
    return new Promise<Accepted>((resolve, reject) => {
      const stream = this.clients.get(address).submit(traceMetadata({ node: this.options.node, message: s.id, session: s.session }), { deadline: deadline(this.options.timeoutMs) }, (err, res?: SubmitResponse__Output) =>
        err ? reject(err) : res?.reply ? resolve(acceptedOf(res)) : reject(new Error('empty submit response')),
      );
      stream.on('error', () => undefined); // reported through the callback
      writeChunked(stream, envelopeOf(s, arrival), s.body, this.options.chunkBytes).catch(reject);
    }).catch((err) => {
      // An admin answer (never sent here) would be a 451, not a bounce.
      throw MailError.is(err) ? err : toMailError(fromServiceError(err, 'submit'));
    });
  }

  close(): void {
    this.clients.close();
  }
}

function acceptedOf(res: SubmitResponse__Output): Accepted {
  const reply = (r: SmtpReply | null | undefined): SmtpReply => r ?? Replies.noAnswer().reply;
  return {
    id: res.messageId,
    accepted: res.accepted,
    reply: reply(res.reply),
    recipients: res.recipients.map((v) => ({ address: v.address, state: v.state as RecipientVerdict['state'], reply: reply(v.reply) })),
  };
}

/**
 * The submit channel: how mail made on this node enters the mail flow, by its submit mode
 * (BRIEF §2.4). `local` and `local-for-others`: this node's own Intake. `remote`: one live
 * queue taker over Submit, least loaded first, random among equals, the next on a
 * refusal; when none is live, a call fails or every one refuses, this node's own queue,
 * so nothing is lost. The same hand-over serves a queue pass of a remote-mode node
 * (`offer`: what waits here goes to a taker once one is back) and `relay.viaFrontends`.
 */
export class SubmitChannel {
  constructor(
    private readonly o: {
      intake: Intake;
      router: Router;
      node: string;
      mode: () => SubmitMode;
      /** submit.log: which of this node's records travel with a message it hands over. */
      logLevel: () => Config['submit']['log'];
      viaFrontends: () => boolean;
      takers?: QueueTakers;
      submitter: GrpcSubmitter;
      log: Logger;
    },
  ) {}

  /** Mail made on this node (a rule's action, a DSN, `mailgrid send`), through its submit mode. */
  async submit(s: Submission): Promise<Accepted> {
    // A trail of its own: what happens to this message is not another's story.
    const m = { ...s, id: s.id ?? newMessageId(), trail: [...(s.trail ?? [])] };
    if (this.o.mode() !== 'remote') return this.o.intake.accept(m);
    const taken = await this.handOver(this.ordered(this.o.takers?.takers() ?? []), m);
    if (taken) return taken.accepted;
    note(m.trail, this.o.log, 'warn', { event: 'submit.queued-here', messageId: m.id }, 'no queue taker took the message; queued here');
    return this.o.intake.accept(m);
  }

  /** What the Submit service received: a member's hand-over into this node's queue, or the CLI's message through its submit mode. */
  async receive(s: Submission, arrival: Arrival): Promise<Accepted> {
    if (arrival.asAccount) {
      const route = await this.o.router.route(s.mailFrom);
      if (route.kind === 'tempfail') throw route.reason;
      if (route.kind !== 'local') throw Replies.notAnAccount(s.mailFrom);
    }
    if (!arrival.origin) return this.submit(s);
    // A member's hand-over: only a taker takes them (two remote members never pass mail back and forth).
    if (this.o.mode() === 'remote') throw Replies.notTaking();
    const full = await this.o.intake.room();
    if (full) throw full;
    // Written by the node that takes it, once (a refusing one leaves them to the next).
    for (const { level, msg, time, ...fields } of arrival.log) this.o.log[level]({ ...fields, tag: 'SUBMIT', origin: arrival.origin, originTime: time }, msg);
    const offered = s.recipients.map((r) => (typeof r === 'string' ? r : r.address));
    const here = s.id ? this.o.intake.queuedRecipients(s.id) : undefined;
    if (here && offered.every((a) => here.includes(a))) {
      // A hand-over whose answer was lost comes again: it is here already.
      const reply = Replies.accepted('queued', s.id!);
      return { id: s.id!, accepted: true, reply, recipients: offered.map((address) => ({ address, state: 'queued', reply })) };
    }
    // Other recipients of a message already queued here go in under an id of their own.
    return this.o.intake.accept(here ? { ...s, id: newMessageId() } : s);
  }

  /** A queue pass in remote mode: the recipients go to a taker; undefined when none took them (this node goes on itself). */
  async offer(message: QueuedMessage, body: Buffer, recipients: QueuedRecipient[]): Promise<Outcome[] | undefined> {
    if (this.o.mode() !== 'remote') return undefined;
    const takers = this.o.takers?.takers() ?? [];
    if (!takers.length) return undefined;
    const taken = await this.handOver(this.ordered(takers), this.fromQueue(message, body, recipients));
    return taken && outcomesOf(taken, recipients);
  }

  /** relay.viaFrontends: relayed recipients go to a frontend instead of out from here; undefined when not set. */
  relay(message: QueuedMessage, body: Buffer, recipients: QueuedRecipient[]): Promise<Outcome[]> | undefined {
    if (!this.o.viaFrontends()) return undefined;
    return this.handOver(this.o.takers?.frontends() ?? [], this.fromQueue(message, body, recipients)).then((taken) => {
      if (taken) return outcomesOf(taken, recipients);
      const none = Replies.noFrontend().reply;
      return recipients.map((recipient) => ({ recipient, delivered: false, permanent: false, reply: none }));
    });
  }

  close(): void {
    this.o.submitter.close();
  }

  /** Tries each in turn; the first that takes it (or refuses it for good) answers. */
  private async handOver(targets: QueueTaker[], s: Submission & { id: string; trail: TrailRecord[] }): Promise<{ accepted: Accepted; taker: QueueTaker } | undefined> {
    const log = this.o.log;
    for (const t of targets) {
      const arrival = { origin: this.o.node, log: this.travelling(s.trail), asAccount: false };
      try {
        const accepted = await this.o.submitter.submit(t.address, s, arrival);
        if (accepted.accepted || accepted.reply.code >= 500) {
          log.info({ event: 'submit.handed-over', messageId: s.id, taker: t.id, reply: `${accepted.reply.code} ${accepted.reply.enhanced}` }, 'message handed to a queue taker');
          return { accepted, taker: t };
        }
        note(s.trail, log, 'warn', { event: 'submit.taker-refused', messageId: s.id, taker: t.id, reply: `${accepted.reply.code} ${accepted.reply.enhanced} ${accepted.reply.text}` }, 'queue taker refused the message');
      } catch (err) {
        note(s.trail, log, 'warn', { event: 'submit.taker-failed', messageId: s.id, taker: t.id, err: (err as Error).message }, 'queue taker not reached');
      }
    }
    return undefined;
  }

  /** submit.log: none, problems (warnings and errors) or all. */
  private travelling(trail: TrailRecord[]): TrailRecord[] {
    const level = this.o.logLevel();
    return level === 'all' ? trail : level === 'problems' ? trail.filter((r) => r.level !== 'info') : [];
  }

  private fromQueue(message: QueuedMessage, body: Buffer, recipients: QueuedRecipient[]): Submission & { id: string; trail: TrailRecord[] } {
    // For the taker's log only: this node's queue.attempt lines already tell the wait here.
    const trail: TrailRecord[] = [];
    const waited = recipients.find((r) => r.lastError);
    if (waited?.lastError) {
      const e = waited.lastError;
      trail.push({ level: 'warn', event: 'submit.waited', messageId: message.id, since: new Date(waited.queuedAt).toISOString(), attempts: waited.attempts, lastError: `${e.code} ${e.enhanced} ${e.text}`, msg: "message waited in the origin's queue", time: new Date().toISOString() });
    }
    return {
      id: message.id,
      mailFrom: message.mailFrom,
      recipients: recipients.map((r) => r.address),
      dsn: recipients.map((r) => ({ notify: r.notify, orcpt: r.orcpt })),
      body,
      receivedAt: message.receivedAt,
      isDsn: message.isDsn,
      envid: message.envid,
      ret: message.ret,
      eightBit: message.eightBit,
      mayRelay: true,
      trail,
    };
  }

  /** Least loaded first, random among equals (so equals share the load). */
  private ordered(takers: QueueTaker[]): QueueTaker[] {
    return takers
      .map((t) => ({ t, r: Math.random() }))
      .sort((a, b) => a.t.queueDepth - b.t.queueDepth || a.r - b.r)
      .map(({ t }) => t);
  }
}

/** A hand-over's answer as queue outcomes: the taker reports to the sender from now on (no DSN here). */
function outcomesOf({ accepted, taker }: { accepted: Accepted; taker: QueueTaker }, recipients: QueuedRecipient[]): Outcome[] {
  return recipients.map((recipient) => {
    const v = accepted.recipients.find((x) => x.address === recipient.address);
    // A recipient the answer does not mention was not taken: it stays here.
    if (!v && accepted.accepted) return { recipient, delivered: false, permanent: false, reply: Replies.noAnswer().reply };
    const reply = v?.reply ?? accepted.reply;
    const failed = v ? v.state === 'failed' : !accepted.accepted;
    return failed
      ? { recipient, delivered: false, permanent: reply.code >= 500, reply }
      : { recipient, delivered: true, permanent: false, reply: Replies.handedOver(taker.id, reply), dsnPassed: true };
  });
}

/** The Submit service on a node's gRPC host: envelope and body in chunks, then `receive`. */
export function submitService(receive: (s: Submission, arrival: Arrival) => Promise<Accepted>, deps: { maxMessageBytes: () => number; log: Logger }): GrpcService {
  const handlers: SubmitHandlers = {
    Submit(call: grpc.ServerReadableStream<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) {
      call.on('error', (err) => deps.log.warn({ event: 'submit.stream-error', err }, 'submit stream failed'));
      receiveChunked<SubmitEnvelope__Output>(call, deps.maxMessageBytes, (received) => {
        const refuse = (err: unknown) => {
          deps.log.warn({ event: 'submit.refused', err }, 'submission refused');
          callback(toServiceError(err));
        };
        if (MailError.is(received)) return refuse(received);
        if (received.body.length !== Number(received.envelope.size)) return refuse(Replies.malformedRequest(`expected ${received.envelope.size} bytes, got ${received.body.length}`));
        // As at the SMTP listener: nothing with a bare CR, bare LF or NUL is queued, stored or relayed.
        if (badByteIn(received.body) >= 0) return refuse(Replies.badLineEndings());
        const { submission, arrival } = submissionOf(received.envelope, received.body);
        // Mail to relay is taken only from a member handing it over, or sent as an account here.
        if (!arrival.origin && !arrival.asAccount) return refuse(Replies.submitDenied());
        receive(submission, arrival).then((a) => callback(null, { messageId: a.id, accepted: a.accepted, reply: a.reply, recipients: a.recipients }), refuse);
      });
    },
  } as SubmitHandlers;
  return { name: 'Submit', definition: proto.Submit.service, handlers: handlers as never };
}
