import { MailError, Replies, toMailError } from '@mailgrid/core';
import type { MessagePort } from 'node:worker_threads';
import { ClientPool, createDeliveryClient } from './clients.js';
import type { DeliveryClient } from './generated/mailgrid/v1/Delivery.js';
import type { DeliverResponse, DeliverResponse__Output } from './generated/mailgrid/v1/DeliverResponse.js';
import type { Envelope__Output } from './generated/mailgrid/v1/Envelope.js';
import type { RecipientResult__Output } from './generated/mailgrid/v1/RecipientResult.js';
import { fromServiceError } from './status.js';
import { deadline, traceMetadata, type Trace } from './trace.js';
import { writeChunked } from './chunks.js';
import { PortClient, servePort } from './port-calls.js';

/** One delivery as it travels: the envelope and the whole message. */
export interface Delivery {
  envelope: Envelope__Output;
  body: Buffer;
  trace: Trace;
}

/** The receiving end: a backend stores a delivery and answers once per recipient, or throws a MailError. */
export type DeliveryHandler = (delivery: Delivery) => Promise<DeliverResponse>;

/**
 * How the delivery channel reaches a backend's primary at `address`. Resolves with one
 * result per recipient; every failure rejects with a MailError (what the backend answered,
 * or a 4xx for a fault of the transport itself).
 */
export interface DeliveryTransport {
  deliver(address: string, delivery: Delivery): Promise<RecipientResult__Output[]>;
  close(): void;
}

/**
 * gRPC, between the nodes of a cluster: a message that fits in one chunk as one unary call
 * (DeliverWhole), a larger one streamed, the envelope with its first chunk (Deliver).
 */
export class GrpcDeliveryTransport implements DeliveryTransport {
  private readonly clients = new ClientPool<DeliveryClient>(createDeliveryClient);

  constructor(private readonly options: { timeoutMs: number; chunkBytes: number }) {}

  deliver(address: string, { envelope, body, trace }: Delivery): Promise<RecipientResult__Output[]> {
    return new Promise<RecipientResult__Output[]>((resolve, reject) => {
      const done = (err: Error | null, res?: DeliverResponse__Output) => (err ? reject(err) : res ? resolve(res.results) : reject(new Error('empty delivery response')));
      const options = { deadline: deadline(this.options.timeoutMs) };
      if (body.length <= this.options.chunkBytes) {
        this.clients.get(address).DeliverWhole({ envelope, chunk: body }, traceMetadata(trace), options, done);
        return;
      }
      const stream = this.clients.get(address).deliver(traceMetadata(trace), options, done);
      stream.on('error', () => undefined); // reported through the callback
      writeChunked(stream, envelope, body, this.options.chunkBytes).catch(reject);
    }).catch((err) => {
      // An admin answer (never sent here) would be a 451, not a bounce.
      throw MailError.is(err) ? err : toMailError(fromServiceError(err, 'delivery'));
    });
  }

  close(): void {
    this.clients.close();
  }
}


type PortRequest = { envelope: Envelope__Output; body: Uint8Array; trace: Trace };

/**
 * The single node's frontend and backend threads, one process: a MessagePort instead of
 * gRPC. The body crosses as one copy whose memory is transferred, not cloned again (the
 * caller keeps its own: the queue may still need it; and lmdb-js cannot store from a
 * SharedArrayBuffer, it writes garbage). The answer is the same as gRPC's. A backend that
 * does not answer in `timeoutMs` is a 4xx, as a gRPC deadline is.
 */
export class PortDeliveryTransport implements DeliveryTransport {
  private readonly client: PortClient<PortRequest, RecipientResult__Output[]>;

  constructor(port: MessagePort, options: { timeoutMs: number }) {
    this.client = new PortClient(port, {
      timeoutMs: options.timeoutMs,
      timeout: () => Replies.timeout('delivery'),
      gone: (why) => Replies.backendUnavailable(new Error(`backend thread: ${why}`)),
    });
  }

  deliver(_address: string, { envelope, body, trace }: Delivery): Promise<RecipientResult__Output[]> {
    const copy = new Uint8Array(body);
    return this.client.call({ envelope, body: copy, trace }, [copy.buffer]);
  }

  close(): void {
    this.client.close();
  }
}

/** The backend thread's end of a PortDeliveryTransport (the handler logs what it refuses). */
export function servePortDeliveries(port: MessagePort, handler: DeliveryHandler): void {
  servePort<PortRequest, RecipientResult__Output[]>(port, async (req) => {
    const body = Buffer.from(req.body.buffer, req.body.byteOffset, req.body.byteLength);
    return (await handler({ envelope: req.envelope, body, trace: req.trace })).results as RecipientResult__Output[];
  });
}
