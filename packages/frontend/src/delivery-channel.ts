import { Replies, type MailError } from '@mailgrid/core';
import {
  createDeliveryClient,
  deadline,
  fromServiceError,
  traceMetadata,
  type DeliveryClient,
  type DeliveryRecipient,
  type RecipientResult__Output,
  type Trace,
} from '@mailgrid/protocol';

export interface Delivery {
  messageId: string;
  mailFrom: string;
  group: string;
  recipients: DeliveryRecipient[];
  body: Buffer;
  receivedAt: number;
}

/**
 * The frontend end of the delivery channel: streams one message to a hosting group's
 * primary and returns one result per recipient. A transport fault never throws: it comes
 * back as a temporary failure for every recipient, so the caller treats it like any other.
 */
export class DeliveryChannel {
  private readonly clients = new Map<string, DeliveryClient>();

  constructor(private readonly options: { timeoutMs: number; chunkBytes: number }) {}

  async deliver(address: string, delivery: Delivery, trace: Trace): Promise<RecipientResult__Output[]> {
    try {
      const response = await this.call(address, delivery, trace);
      return response;
    } catch (err) {
      return this.failAll(delivery, fromServiceError(err, 'delivery'));
    }
  }

  failAll(delivery: Delivery, error: MailError): RecipientResult__Output[] {
    return delivery.recipients.map((r) => ({
      address: r.address ?? '',
      outcome: error.retryable ? 'TEMPORARY_FAILURE' : 'PERMANENT_FAILURE',
      reply: error.reply,
      folder: '',
      uid: 0,
      duplicate: false,
    }));
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  private client(address: string): DeliveryClient {
    let c = this.clients.get(address);
    if (!c) this.clients.set(address, (c = createDeliveryClient(address)));
    return c;
  }

  private call(address: string, d: Delivery, trace: Trace): Promise<RecipientResult__Output[]> {
    return new Promise((resolve, reject) => {
      const stream = this.client(address).deliver(
        traceMetadata(trace),
        { deadline: deadline(this.options.timeoutMs) },
        (err, res) => {
          if (err) return reject(err);
          if (!res || res.results.length !== d.recipients.length) return reject(Replies.backendUnavailable(new Error('malformed delivery response')));
          resolve(res.results);
        },
      );
      stream.on('error', () => undefined); // reported through the callback
      const write = async () => {
        const envelope = {
          messageId: d.messageId,
          mailFrom: d.mailFrom,
          recipients: d.recipients,
          size: d.body.length,
          receivedAtMs: d.receivedAt,
          group: d.group,
        };
        const size = this.options.chunkBytes;
        if (!stream.write({ envelope, chunk: d.body.subarray(0, size) })) await drained(stream);
        for (let i = size; i < d.body.length; i += size) {
          if (!stream.write({ chunk: d.body.subarray(i, i + size) })) await drained(stream);
        }
        stream.end();
      };
      write().catch(reject);
    });
  }
}

function drained(stream: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => stream.once('drain', resolve));
}
