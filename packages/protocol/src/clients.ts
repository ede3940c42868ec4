import * as grpc from '@grpc/grpc-js';
import { proto } from './load.js';
import type { AdminClient } from './generated/mailgrid/v1/Admin.js';
import type { DeliveryClient } from './generated/mailgrid/v1/Delivery.js';
import type { MailboxClient } from './generated/mailgrid/v1/Mailbox.js';
import type { QueueClient } from './generated/mailgrid/v1/Queue.js';
import type { RulesClient } from './generated/mailgrid/v1/Rules.js';
import type { SubmitClient } from './generated/mailgrid/v1/Submit.js';
import type { ReplicationClient } from './generated/mailgrid/v1/Replication.js';
import type { QueueCopyClient } from './generated/mailgrid/v1/QueueCopy.js';
import type { AccountMoveClient } from './generated/mailgrid/v1/AccountMove.js';
import type { BackupClient } from './generated/mailgrid/v1/Backup.js';

/** Channel options shared by every client: keepalive so a dead peer is noticed fast. */
export const channelOptions: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.max_receive_message_length': 8 * 1024 * 1024,
};

const insecure = () => grpc.credentials.createInsecure();

/** One client per address, made on first use (a channel is reused for every call); `close` closes them all. */
export class ClientPool<C extends { close(): void }> {
  private readonly clients = new Map<string, C>();

  constructor(private readonly create: (address: string) => C) {}

  get(address: string): C {
    let c = this.clients.get(address);
    if (!c) this.clients.set(address, (c = this.create(address)));
    return c;
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}

export const createDeliveryClient = (address: string): DeliveryClient =>
  new proto.Delivery(address, insecure(), channelOptions);
export const createMailboxClient = (address: string): MailboxClient =>
  new proto.Mailbox(address, insecure(), channelOptions);
export const createAdminClient = (address: string): AdminClient => new proto.Admin(address, insecure(), channelOptions);
export const createQueueClient = (address: string): QueueClient => new proto.Queue(address, insecure(), channelOptions);
export const createSubmitClient = (address: string): SubmitClient => new proto.Submit(address, insecure(), channelOptions);
export const createRulesClient = (address: string): RulesClient => new proto.Rules(address, insecure(), channelOptions);
/** A replica's stream from its primary: one log entry holds a whole message, so frames may be as large as the largest. */
export const createReplicationClient = (address: string): ReplicationClient =>
  new proto.Replication(address, insecure(), { ...channelOptions, 'grpc.max_receive_message_length': 256 * 1024 * 1024 });
/** A queue partner's stream from the queue's owner, framed like a replica's. */
export const createQueueCopyClient = (address: string): QueueCopyClient =>
  new proto.QueueCopy(address, insecure(), { ...channelOptions, 'grpc.max_receive_message_length': 256 * 1024 * 1024 });
/** A move's export and import carry batches of about 1 MB (a large message in parts of that size). */
export const createAccountMoveClient = (address: string): AccountMoveClient =>
  new proto.AccountMove(address, insecure(), { ...channelOptions, 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
export const createBackupClient = (address: string): BackupClient => new proto.Backup(address, insecure(), channelOptions);
