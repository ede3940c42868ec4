import { Replies, toMailError, type MailError, type SmtpReply } from '@mailgrid/core';
import type { HostingGroups } from '@mailgrid/directory';
import { GrpcDeliveryTransport, outcomeOf, type DeliveryTransport, type Outcome__Output, type Trace } from '@mailgrid/protocol';

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
 * The sending end of the delivery channel: one message to a hosting group's current
 * primary (`{address, epoch}`, looked up per call: primaries change) and one result per
 * recipient, in order. The transport is gRPC between nodes; the single node passes its
 * in-process one. Nothing throws: no primary, a transport fault or a malformed answer is a
 * temporary failure for every recipient.
 */
export class DeliveryChannel {
  private readonly transport: DeliveryTransport;

  constructor(private readonly options: { groups: HostingGroups; timeoutMs: number; chunkBytes: number; node: string; transport?: DeliveryTransport }) {
    this.transport = options.transport ?? new GrpcDeliveryTransport(options);
  }

  async deliver(group: string, m: ChannelMessage, recipients: ChannelRecipient[], trace: Trace = {}): Promise<ChannelResult[]> {
    try {
      const primary = await this.options.groups.primary(group);
      if (!primary) return failAll(recipients, Replies.backendUnavailable());
      const envelope = {
        messageId: m.id,
        mailFrom: m.mailFrom,
        recipients: recipients.map((r) => ({ address: r.address, account: r.account, idempotencyKey: idempotencyKey(m.id, r.account) })),
        size: m.body.length,
        receivedAtMs: m.receivedAt,
        group,
        epoch: primary.epoch,
        directoryRevision: m.directoryRevision,
      };
      const results = await this.transport.deliver(primary.address, { envelope, body: m.body, trace: { node: this.options.node, message: m.id, ...trace } });
      if (results.length !== recipients.length) throw Replies.backendUnavailable(new Error('malformed delivery response'));
      return results.map((r, i) => ({ address: recipients[i].address, outcome: r.outcome, reply: r.reply ?? Replies.noAnswer().reply }));
    } catch (err) {
      return failAll(recipients, toMailError(err));
    }
  }

  close(): void {
    this.transport.close();
  }
}

function failAll(recipients: ChannelRecipient[], error: MailError): ChannelResult[] {
  return recipients.map((r) => ({ address: r.address, outcome: outcomeOf(error), reply: error.reply }));
}
