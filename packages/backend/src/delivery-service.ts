import { threadKeys } from './thread-keys.js';
import type * as grpc from '@grpc/grpc-js';
import { MailError, Replies, toMailError, type DiskGuard, type Logger } from '@mailgrid/core';
import { MessageView } from '@mailgrid/rules';
import type { AccountRules } from './account-rules.js';
import type { Router } from '@mailgrid/mailflow';
import {
  outcomeOf,
  proto,
  receiveChunked,
  toServiceError,
  traceFromMetadata,
  type DeliverRequest__Output,
  type DeliverResponse,
  type Delivery,
  type DeliveryHandler,
  type DeliveryHandlers,
  type Envelope__Output,
  type GrpcService,
  type RecipientResult,
  type Trace,
} from '@mailgrid/protocol';
import type { AppendRecipient, MailStore } from '@mailgrid/store';

export interface DeliveryServiceDeps {
  group: string;
  router: Router;
  store: MailStore;
  /** The store's disk: an append that would leave it below its floor is a 452, not a full disk. */
  disk: DiskGuard;
  /** The live `smtp.maxMessageBytes`: a frontend may accept up to it. */
  maxMessageBytes: () => number;
  /** This member's current epoch, which every call must carry (a cluster member); absent: not fenced. */
  epoch?: () => number | undefined;
  /** Whether an account takes mail here now (not while it is being moved away); absent: always. */
  accepts?: (account: string) => boolean;
  /** The accounts' rules, applied to each copy before it is stored. */
  rules: AccountRules;
  log: Logger;
}

/**
 * The receiving end of the delivery channel, whichever transport brought the message:
 * each recipient checked to be an account of this group, the message stored once for all
 * of them, one answer per recipient. "Stored" is only said once the write is on disk, and a
 * 5xx only when it is definite: a request that does not add up, a stale epoch, or a
 * recipient this backend does not know while its directory is behind the sender's are 4xx.
 */
export function deliveryHandler(deps: DeliveryServiceDeps): DeliveryHandler {
  return async ({ envelope, body, trace }) => {
    try {
      if (body.length !== Number(envelope.size)) throw Replies.malformedRequest(`expected ${envelope.size} bytes, got ${body.length}`);
      // The frontend enforces the limit; a live change may leave it a little behind.
      if (body.length > deps.maxMessageBytes() * 2) throw Replies.messageTooBig(deps.maxMessageBytes());
      if (deps.epoch) {
        const current = deps.epoch();
        if (Number(envelope.epoch) !== current) throw Replies.staleEpoch(Number(envelope.epoch), current);
      }
      const ids = { session: trace.session, messageId: envelope.messageId, peer: trace.node };
      return await deliver(deps, envelope, body, ids);
    } catch (err) {
      deps.log.warn({ event: 'delivery.failed', ...trace, err }, 'delivery refused');
      throw err;
    }
  };
}

/** The Delivery gRPC service: the envelope and the message, in chunks or whole, then the handler. */
export function deliveryService(handler: DeliveryHandler, deps: Pick<DeliveryServiceDeps, 'maxMessageBytes' | 'log'>): GrpcService {
  /** A request that did not add up is refused here; a whole one goes to the handler. */
  const answer = (received: Delivery | MailError, trace: Trace, callback: grpc.sendUnaryData<DeliverResponse>) => {
    if (MailError.is(received)) {
      deps.log.warn({ event: 'delivery.failed', ...trace, err: received }, 'delivery refused');
      return callback(toServiceError(received));
    }
    handler(received).then(
      (res) => callback(null, res),
      (err) => callback(toServiceError(err)),
    );
  };
  const handlers: DeliveryHandlers = {
    Deliver(call: grpc.ServerReadableStream<DeliverRequest__Output, DeliverResponse>, callback: grpc.sendUnaryData<DeliverResponse>) {
      const trace = traceFromMetadata(call.metadata);
      call.on('error', (err) => deps.log.warn({ event: 'delivery.stream-error', ...trace, err }, 'delivery stream failed'));
      receiveChunked<Envelope__Output>(call, deps.maxMessageBytes, (received) => answer(MailError.is(received) ? received : { ...received, trace }, trace, callback));
    },
    DeliverWhole(call: grpc.ServerUnaryCall<DeliverRequest__Output, DeliverResponse>, callback: grpc.sendUnaryData<DeliverResponse>) {
      const trace = traceFromMetadata(call.metadata);
      const { envelope, chunk } = call.request;
      answer(envelope ? { envelope, body: chunk ?? Buffer.alloc(0), trace } : Replies.malformedRequest('no envelope'), trace, callback);
    },
  };
  return { name: 'Delivery', definition: proto.Delivery.service, handlers: handlers as never };
}

async function deliver(deps: DeliveryServiceDeps, envelope: Envelope__Output, body: Buffer, ids: Record<string, string | undefined>): Promise<DeliverResponse> {
  const results = new Map<string, RecipientResult>();
  const toStore: (AppendRecipient & { address: string; actions?: string[] })[] = [];
  const fail = (address: string, err: MailError) => results.set(address, { address, outcome: outcomeOf(err), reply: err.reply });
  const senderRevision = Number(envelope.directoryRevision);

  for (const r of envelope.recipients) {
    if (envelope.group && envelope.group !== deps.group) {
      fail(r.address, Replies.wrongGroup(r.address));
      continue;
    }
    // Read before the lookup: a revision that understates only makes the answer more careful.
    const revision = deps.router.revision;
    const route = await deps.router.route(r.account || r.address);
    if (route.kind === 'local') {
      if (route.group !== deps.group) fail(r.address, Replies.wrongGroup(r.address));
      // Before its rules run (they may make mail); the store asks again inside its write.
      else if (deps.accepts && !deps.accepts(route.account)) fail(r.address, Replies.accountMoving(route.account));
      else toStore.push({ address: r.address, account: route.account, idempotencyKey: r.idempotencyKey });
    } else if (route.kind === 'tempfail') fail(r.address, route.reason);
    else if (route.kind === 'unknown' && route.reason.code === 'BAD_ADDRESS') fail(r.address, route.reason);
    // The sender resolved it to an account: "no such user" is only definite from a directory at least as current.
    else fail(r.address, revision >= senderRevision ? Replies.unknownUser(r.address) : Replies.directoryBehind(r.address));
  }

  // Final delivery records the envelope sender (RFC 5321 §4.4); <> for a DSN.
  const returnPath = Buffer.from(`Return-Path: <${envelope.mailFrom.replace(/[\r\n<>]/g, '')}>\r\n`, 'latin1');
  // Room first: rules make mail, which must not be made again because the store was full.
  const full = toStore.length ? await deps.disk.reserve(returnPath.length + body.length) : undefined;
  if (full) {
    deps.log.warn({ event: 'delivery.disk-full', ...ids, size: body.length }, 'store disk below its floor, deliveries deferred');
    for (const r of toStore) fail(r.address, full);
    toStore.length = 0;
  }
  // Over its quota: refused for good (a DSN), before its rules make any mail; the store asks again inside its write.
  for (const r of [...toStore]) {
    const q = deps.store.quota(r.account);
    if (q.limit && q.used + returnPath.length + body.length > q.limit) {
      fail(r.address, Replies.overQuota(r.account));
      toStore.splice(toStore.indexOf(r), 1);
    }
  }
  await applyRules(deps, envelope, body, toStore, fail);
  body = Buffer.concat([returnPath, body]);
  if (toStore.length) {
    try {
      const stored = await deps.store.append({ body, receivedAt: Number(envelope.receivedAtMs) || Date.now(), recipients: toStore, thread: threadKeys(body) });
      stored.forEach((s, i) => {
        const { address, actions } = toStore[i];
        if (s.refused) return fail(address, Replies.accountMoving(s.account));
        if (s.overQuota) return fail(address, Replies.overQuota(s.account));
        const reply = s.uid ? Replies.storedAs(s.folder, s.uid) : Replies.disposedByRules(s.duplicate ? 'earlier' : actions?.join(' ') || 'not stored');
        results.set(address, { address, outcome: 'STORED', reply, folder: s.folder, uid: s.uid, duplicate: s.duplicate });
      });
    } catch (err) {
      deps.log.error({ event: 'delivery.store-failed', ...ids, err }, 'store failed');
      for (const r of toStore) fail(r.address, Replies.storageFailed(err));
    }
  }

  const out = envelope.recipients.map((r) => results.get(r.address)!);
  // One line per delivery, flat fields (a per-message child logger or nested objects cost
  // measurable throughput): rcpts as `address=OUTCOME[/uid][/dup]`.
  deps.log.info(
    { event: 'delivery.done', ...ids, size: body.length, rcpts: out.map((r) => `${r.address}=${r.outcome}${r.uid ? '/' + r.uid : ''}${r.duplicate ? '/dup' : ''}`).join(' ') },
    'delivered',
  );
  return { results: out };
}

/**
 * Each copy for an account with rules: a key stored before is left to the append, which
 * answers it as it was (its rules ran then); else the rules say where it goes and what
 * they make, which is queued before anything is stored. A copy whose made mail could not
 * be queued fails temporarily.
 */
async function applyRules(
  deps: DeliveryServiceDeps,
  envelope: Envelope__Output,
  body: Buffer,
  toStore: (AppendRecipient & { address: string; actions?: string[] })[],
  fail: (address: string, err: MailError) => void,
): Promise<void> {
  let view: MessageView | undefined;
  for (let i = 0; i < toStore.length; i++) {
    const r = toStore[i];
    const script = deps.rules.script(r.account);
    if (!script) continue;
    // Stored before: its rules ran then; the append answers it as a duplicate (once durable).
    if (deps.store.seen(r.idempotencyKey)) continue;
    try {
      view ??= new MessageView(body);
      const d = await deps.rules.apply(script, { messageId: envelope.messageId, account: r.account, address: r.address, mailFrom: envelope.mailFrom, receivedAt: Number(envelope.receivedAtMs) || Date.now(), body, view });
      Object.assign(r, { folders: d.folders, vacation: d.vacation, actions: d.actions });
    } catch (err) {
      deps.log.warn({ event: 'rules.failed', messageId: envelope.messageId, account: r.account, err }, "account's rules could not be applied");
      fail(r.address, toMailError(err));
      toStore.splice(i--, 1);
    }
  }
}
