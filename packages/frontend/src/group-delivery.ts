import { Replies } from '@mailgrid/core';
import type { HostingGroups } from '@mailgrid/directory';
import type { RecipientResult__Output, Trace } from '@mailgrid/protocol';
import type { LocalDelivery } from '@mailgrid/queue';
import type { DeliveryChannel } from './delivery-channel.js';

export interface GroupRecipient {
  address: string;
  account: string;
  group: string;
}

export interface MessageToDeliver {
  messageId: string;
  mailFrom: string;
  body: Buffer;
  receivedAt: number;
}

/**
 * Local delivery by hosting group: finds each group's primary and streams the message to
 * it over the delivery channel. Used inline after DATA and by the queue runner alike. A
 * group without a live primary is a temporary failure for its recipients.
 */
export class GroupDelivery implements LocalDelivery {
  constructor(
    private readonly groups: HostingGroups,
    private readonly channel: DeliveryChannel,
    private readonly nodeId: string,
  ) {}

  async deliver(
    group: string,
    d: MessageToDeliver & { recipients: { address: string; account: string; idempotencyKey: string }[] },
    trace: Trace = {},
  ): Promise<RecipientResult__Output[]> {
    const delivery = { ...d, group };
    const address = await this.groups.primary(group);
    if (!address) return this.channel.failAll(delivery, Replies.backendUnavailable());
    return this.channel.deliver(address, delivery, { node: this.nodeId, message: d.messageId, ...trace });
  }

  /** Every recipient, split by group, delivered in parallel; results in no particular order. */
  async deliverAll(recipients: GroupRecipient[], d: MessageToDeliver, trace: Trace): Promise<RecipientResult__Output[]> {
    const byGroup = new Map<string, GroupRecipient[]>();
    for (const r of recipients) byGroup.set(r.group, [...(byGroup.get(r.group) ?? []), r]);
    const results = await Promise.all(
      [...byGroup].map(([group, list]) =>
        this.deliver(group, { ...d, recipients: list.map((r) => ({ address: r.address, account: r.account, idempotencyKey: `${d.messageId}:${r.account}` })) }, trace),
      ),
    );
    return results.flat();
  }
}
