import type * as grpc from '@grpc/grpc-js';
import { MailError, Replies, parseAddress, toMailError, type Logger } from '@mailgrid/core';
import type { Directory } from '@mailgrid/directory';
import {
  invalidArgument,
  toServiceError,
  traceFromMetadata,
  type DeliverRequest__Output,
  type DeliverResponse,
  type DeliveryHandlers,
  type Envelope__Output,
  type RecipientResult,
} from '@mailgrid/protocol';
import type { AppendRecipient, MailStore } from '@mailgrid/store';

export interface DeliveryServiceDeps {
  group: string;
  directory: Directory;
  store: MailStore;
  maxMessageBytes: number;
  log: Logger;
}

/**
 * The backend end of the delivery channel: receives the envelope and the message in
 * chunks, checks each recipient is an account of this group, stores the message once for
 * all of them and answers per recipient. "Stored" is only said once the write is on disk.
 */
export function deliveryHandlers(deps: DeliveryServiceDeps): DeliveryHandlers {
  return {
    Deliver(call: grpc.ServerReadableStream<DeliverRequest__Output, DeliverResponse>, callback: grpc.sendUnaryData<DeliverResponse>) {
      const trace = traceFromMetadata(call.metadata);
      let envelope: Envelope__Output | undefined;
      const chunks: Buffer[] = [];
      let size = 0;
      let failed: MailError | undefined;
      call.on('data', (req: DeliverRequest__Output) => {
        if (failed) return;
        if (req.envelope) {
          if (envelope) failed = invalidArgument('envelope sent twice');
          envelope = req.envelope;
        }
        if (req.chunk?.length) {
          if (!envelope) failed = invalidArgument('chunk before envelope');
          size += req.chunk.length;
          // The frontend enforces the limit; this guards the backend's memory.
          if (size > deps.maxMessageBytes * 2) failed = Replies.messageTooBig(deps.maxMessageBytes);
          else chunks.push(req.chunk);
        }
      });
      call.on('error', (err) => deps.log.warn({ event: 'delivery.stream-error', ...trace, err }, 'delivery stream failed'));
      call.on('end', () => {
        const done = (): Promise<DeliverResponse> => {
          if (failed) throw failed;
          if (!envelope) throw invalidArgument('no envelope');
          if (size !== Number(envelope.size)) throw invalidArgument(`expected ${envelope.size} bytes, got ${size}`);
          const ids = { session: trace.session, messageId: envelope.messageId, peer: trace.node };
          // Final delivery records the envelope sender (RFC 5321 §4.4); <> for a DSN.
          const returnPath = Buffer.from(`Return-Path: <${envelope.mailFrom.replace(/[\r\n<>]/g, '')}>\r\n`, 'latin1');
          return deliver(deps, envelope, Buffer.concat([returnPath, ...chunks]), ids);
        };
        done().then(
          (res) => callback(null, res),
          (err) => {
            deps.log.warn({ event: 'delivery.failed', ...trace, err }, 'delivery refused');
            callback(toServiceError(err));
          },
        );
      });
    },
  };
}

async function deliver(deps: DeliveryServiceDeps, envelope: Envelope__Output, body: Buffer, ids: Record<string, string | undefined>): Promise<DeliverResponse> {
  const results = new Map<string, RecipientResult>();
  const toStore: (AppendRecipient & { address: string })[] = [];
  const fail = (address: string, err: MailError) =>
    results.set(address, { address, outcome: err.retryable ? 'TEMPORARY_FAILURE' : 'PERMANENT_FAILURE', reply: err.reply });

  for (const r of envelope.recipients) {
    if (envelope.group && envelope.group !== deps.group) {
      fail(r.address, Replies.wrongGroup(r.address));
      continue;
    }
    const account = parseAddress(r.account || r.address);
    if (!account) {
      fail(r.address, Replies.badAddress(r.address));
      continue;
    }
    try {
      const res = await deps.directory.resolve(account);
      if (res.kind !== 'account') fail(r.address, Replies.unknownUser(r.address));
      else if (res.group !== deps.group) fail(r.address, Replies.wrongGroup(r.address));
      else toStore.push({ address: r.address, account: res.account, idempotencyKey: r.idempotencyKey });
    } catch (err) {
      fail(r.address, Replies.lookupFailed(r.address, err));
    }
  }

  if (toStore.length) {
    try {
      const stored = await deps.store.append({ body, receivedAt: Number(envelope.receivedAtMs) || Date.now(), recipients: toStore });
      stored.forEach((s, i) => {
        const address = toStore[i].address;
        results.set(address, {
          address,
          outcome: 'STORED',
          reply: { code: 250, enhanced: '2.0.0', text: `Stored as ${s.folder}/${s.uid}` },
          folder: s.folder,
          uid: s.uid,
          duplicate: s.duplicate,
        });
      });
    } catch (err) {
      deps.log.error({ event: 'delivery.store-failed', ...ids, err }, 'store failed');
      for (const r of toStore) fail(r.address, toMailError(Replies.storageFailed(err)));
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
