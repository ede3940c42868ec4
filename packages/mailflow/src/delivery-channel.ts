import { Replies, type MailError, type SmtpReply } from '@mailgrid/core';
import type { HostingGroups } from '@mailgrid/directory';
import {
  createDeliveryClient,
  deadline,
  fromServiceError,
  outcomeOf,
  traceMetadata,
  type DeliveryClient,
  type Outcome__Output,
  type Trace,
} from '@mailgrid/protocol';

/** The key a backend stores a delivery under: a retry with the same key is stored once. */
export function idempotencyKey(messageId: string, account: string): string {
  return `${messageId}:${account}`;
}

export interface ChannelMessage {
  id: string;
  mailFrom: string;
  body: Buffer;
  receivedAt: number;
  /** The directory revision the recipients were resolved at (see Envelope.directory_revision). */
  directoryRevision: number;
}

export interface ChannelRecipient {
  address: string;
  account: string;
}

export interface ChannelResult {
  address: string;
  outcome: Outcome__Output;
  reply: SmtpReply;
}

/**
 * The sending end of the delivery channel: streams one message to a hosting group's
 * current primary (`{address, epoch}`, looked up per call: primaries change) and returns one
 * result per recipient, in order. Nothing throws: no primary, a transport fault or a
 * malformed answer is a temporary failure for every recipient.
 */
export class DeliveryChannel {
  private readonly clients = new Map<string, DeliveryClient>();

  constructor(private readonly options: { groups: HostingGroups; timeoutMs: number; chunkBytes: number; node: string }) {}

  async deliver(group: string, message: ChannelMessage, recipients: ChannelRecipient[], trace: Trace = {}): Promise<ChannelResult[]> {
    try {
      const primary = await this.options.groups.primary(group);
      if (!primary) return failAll(recipients, Replies.backendUnavailable());
      return await this.call(primary.address, primary.epoch, group, message, recipients, { node: this.options.node, message: message.id, ...trace });
    } catch (err) {
      return failAll(recipients, fromServiceError(err, 'delivery'));
    }
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

  private call(address: string, epoch: number, group: string, m: ChannelMessage, recipients: ChannelRecipient[], trace: Trace): Promise<ChannelResult[]> {
    return new Promise((resolve, reject) => {
      const stream = this.client(address).deliver(traceMetadata(trace), { deadline: deadline(this.options.timeoutMs) }, (err, res) => {
        if (err) return reject(err);
        if (!res || res.results.length !== recipients.length) return reject(Replies.backendUnavailable(new Error('malformed delivery response')));
        resolve(res.results.map((r, i) => ({ address: recipients[i].address, outcome: r.outcome, reply: r.reply ?? Replies.noAnswer().reply })));
      });
      stream.on('error', () => undefined); // reported through the callback
      const write = async () => {
        const envelope = {
          messageId: m.id,
          mailFrom: m.mailFrom,
          recipients: recipients.map((r) => ({ ...r, idempotencyKey: idempotencyKey(m.id, r.account) })),
          size: m.body.length,
          receivedAtMs: m.receivedAt,
          group,
          epoch,
          directoryRevision: m.directoryRevision,
        };
        // The envelope travels with the first chunk: a small message is one request.
        const size = this.options.chunkBytes;
        if (!stream.write({ envelope, chunk: m.body.subarray(0, size) })) await drained(stream);
        for (let i = size; i < m.body.length; i += size) {
          if (!stream.write({ chunk: m.body.subarray(i, i + size) })) await drained(stream);
        }
        stream.end();
      };
      write().catch(reject);
    });
  }
}

function failAll(recipients: ChannelRecipient[], error: MailError): ChannelResult[] {
  return recipients.map((r) => ({ address: r.address, outcome: outcomeOf(error), reply: error.reply }));
}

function drained(stream: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => stream.once('drain', resolve));
}
