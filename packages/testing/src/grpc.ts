import * as grpc from '@grpc/grpc-js';
import { createDeliveryClient, createMailboxClient, deadline, type DeliverResponse__Output, type MessageInfo__Output } from '@mailgrid/protocol';

/** Reads a node's mailboxes over its gRPC Mailbox service. */
export class MailboxProbe {
  private readonly client;
  constructor(address: string) {
    this.client = createMailboxClient(address);
  }
  list(account: string, folder = ''): Promise<MessageInfo__Output[]> {
    return new Promise((resolve, reject) =>
      this.client.List({ account, folder }, { deadline: deadline(10_000) }, (err, res) => (err ? reject(err) : resolve(res!.messages))),
    );
  }
  fetch(account: string, uid: number, folder = ''): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const s = this.client.Fetch({ account, uid, folder }, { deadline: deadline(10_000) });
      s.on('data', (c) => c.chunk && chunks.push(c.chunk));
      s.on('error', reject);
      s.on('end', () => resolve(Buffer.concat(chunks)));
    });
  }
  /** How many times each `X-Test-Id` is stored in these accounts' folders. */
  async testIds(accounts: string[], folders = ['']): Promise<Map<string, number>> {
    const seen = new Map<string, number>();
    for (const account of accounts)
      for (const folder of folders)
        for (const m of await this.list(account, folder)) {
          const id = /^X-Test-Id: (.+)\r$/m.exec((await this.fetch(account, m.uid, folder)).toString())?.[1];
          if (id) seen.set(id, (seen.get(id) ?? 0) + 1);
        }
    return seen;
  }

  close() {
    this.client.close();
  }
}

/** One raw delivery-channel call, as a frontend would make it (`size` may be given wrong on purpose). */
export function deliverRaw(
  address: string,
  envelope: {
    messageId: string;
    mailFrom: string;
    recipients: { address: string; account: string; idempotencyKey: string }[];
    group?: string;
    epoch?: number;
    directoryRevision?: number;
    size?: number;
  },
  body: Buffer,
): Promise<DeliverResponse__Output> {
  const client = createDeliveryClient(address);
  return new Promise<DeliverResponse__Output>((resolve, reject) => {
    const call = client.deliver(new grpc.Metadata(), { deadline: deadline(10_000) }, (err, res) => (err ? reject(err) : resolve(res!)));
    call.write({ envelope: { size: body.length, receivedAtMs: Date.now(), ...envelope }, chunk: body });
    call.end();
  }).finally(() => client.close());
}
