import { parseAddress } from '@mailgrid/core';
import {
  createAdminClient,
  createMailboxClient,
  deadline,
  type AdminClient,
  type FetchChunk__Output,
  type MailboxClient,
  type MessageInfo__Output,
} from '@mailgrid/protocol';
import * as grpc from '@grpc/grpc-js';
import type { AccountEntry, AliasEntry, DirectoryAdmin } from '@mailgrid/directory';

/** A failure the CLI reports as one clear line and a non-zero exit. */
export class CliError extends Error {
  override readonly name = 'CliError';
}

const CALL_TIMEOUT_MS = 10_000;

/** Turns a failed call into a sentence for the operator. */
function explain(err: unknown, address: string): CliError {
  const e = err as grpc.ServiceError;
  if (e.code === grpc.status.UNAVAILABLE || e.code === grpc.status.DEADLINE_EXCEEDED)
    return new CliError(`cannot reach the mailgrid node at ${address}: is it running? (start it with: npx mailgrid start)`);
  if (e.code === grpc.status.UNIMPLEMENTED)
    return new CliError(`the service at ${address} does not offer this command (is it a cluster member? use --etcd)`);
  return new CliError(e.details || e.message);
}

function unary<Req, Res>(address: string, method: (req: Req, md: grpc.Metadata, opts: grpc.CallOptions, cb: grpc.requestCallback<Res>) => unknown, req: Req): Promise<Res> {
  return new Promise((resolve, reject) =>
    method(req, new grpc.Metadata(), { deadline: deadline(CALL_TIMEOUT_MS) }, (err, res) => (err ? reject(explain(err, address)) : resolve(res!))),
  );
}

/** The directory of a single node, edited through its Admin service. */
export class NodeDirectoryAdmin implements DirectoryAdmin {
  private readonly client: AdminClient;
  constructor(private readonly address: string) {
    this.client = createAdminClient(address);
  }
  private call<Req, Res>(name: keyof AdminClient & string, req: Req): Promise<Res> {
    const fn = (this.client as any)[name].bind(this.client);
    return unary<Req, Res>(this.address, fn, req);
  }
  async addDomain(domain: string) {
    await this.call('AddDomain', { domain });
  }
  async removeDomain(domain: string) {
    await this.call('RemoveDomain', { domain });
  }
  async listDomains() {
    return (await this.call<unknown, { domains: string[] }>('ListDomains', {})).domains;
  }
  async addAccount(address: string, group: string) {
    await this.call('AddAccount', { address, group });
  }
  async removeAccount(address: string) {
    await this.call('RemoveAccount', { address });
  }
  async listAccounts(domain?: string): Promise<AccountEntry[]> {
    return (await this.call<unknown, { accounts: AccountEntry[] }>('ListAccounts', { domain: domain ?? '' })).accounts;
  }
  async addAlias(alias: string, target: string) {
    await this.call('AddAlias', { alias, target });
  }
  async removeAlias(alias: string) {
    await this.call('RemoveAlias', { alias });
  }
  async listAliases(domain?: string): Promise<AliasEntry[]> {
    return (await this.call<unknown, { aliases: AliasEntry[] }>('ListAliases', { domain: domain ?? '' })).aliases;
  }
  close() {
    this.client.close();
  }
}

/** Reading a mailbox through a backend's Mailbox service. */
export class MailboxReader {
  private readonly client: MailboxClient;
  constructor(private readonly address: string) {
    this.client = createMailboxClient(address);
  }

  async list(account: string): Promise<MessageInfo__Output[]> {
    const res = await unary<unknown, { messages: MessageInfo__Output[] }>(this.address, this.client.List.bind(this.client) as any, { account: checked(account) });
    return res.messages;
  }

  fetch(account: string, uid: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const stream = this.client.Fetch({ account: checked(account), uid }, { deadline: deadline(CALL_TIMEOUT_MS) });
      stream.on('data', (c: FetchChunk__Output) => c.chunk && chunks.push(c.chunk));
      stream.on('error', (err) => reject(explain(err, this.address)));
      stream.on('end', () => resolve(Buffer.concat(chunks)));
    });
  }

  close() {
    this.client.close();
  }
}

function checked(address: string): string {
  const a = parseAddress(address);
  if (!a) throw new CliError(`invalid address: ${address}`);
  return a.key;
}
