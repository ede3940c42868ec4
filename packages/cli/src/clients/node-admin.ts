import * as grpc from '@grpc/grpc-js';
import type { AccountEntry, AliasEntry, DirectoryAdmin, Primary } from '@mailgrid/directory';
import {
  createAdminClient,
  createMailboxClient,
  createRulesClient,
  deadline,
  traceMetadata,
  fromServiceError,
  type AdminClient,
  MailboxCalls,
  type MailboxClient,
  type RulesClient,
} from '@mailgrid/protocol';
import { explain } from '../errors.js';

const CALL_TIMEOUT_MS = 10_000;

export const failed = (err: unknown, address: string) => explain(fromServiceError(err), `the mailgrid node at ${address}`);

export function unary<Req, Res>(
  address: string,
  method: (req: Req, md: grpc.Metadata, opts: grpc.CallOptions, cb: grpc.requestCallback<Res>) => unknown,
  req: Req,
  md = new grpc.Metadata(),
  timeoutMs = CALL_TIMEOUT_MS,
): Promise<Res> {
  return new Promise((resolve, reject) => method(req, md, { deadline: deadline(timeoutMs) }, (err, res) => (err ? reject(failed(err, address)) : resolve(res!))));
}

/** Calls to a group's primary carry its epoch: a write reaches only the member elected in it. */
export const fenced = (primary: Primary) => traceMetadata({ epoch: String(primary.epoch) });

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

/** An account's mailbox and password, through the Mailbox service of the node that serves the account. */
export class MailboxReader extends MailboxCalls {
  private readonly channel: MailboxClient;
  constructor(primary: Primary) {
    const client = createMailboxClient(primary.address);
    super(client, primary, { timeoutMs: CALL_TIMEOUT_MS, explain: (err) => failed(err, primary.address) });
    this.channel = client;
  }

  close() {
    this.channel.close();
  }
}

/** An account's rules, through the Rules service of the node that serves the account. */
export class RulesEditor {
  private readonly client: RulesClient;
  private readonly address: string;
  constructor(private readonly primary: Primary) {
    this.address = primary.address;
    this.client = createRulesClient(primary.address);
  }

  async set(account: string, script: string): Promise<void> {
    await unary(this.address, this.client.Set.bind(this.client) as any, { account, script }, fenced(this.primary));
  }

  async get(account: string): Promise<string> {
    return (await unary<unknown, { script: string }>(this.address, this.client.Get.bind(this.client) as any, { account }, fenced(this.primary))).script;
  }

  close() {
    this.client.close();
  }
}
