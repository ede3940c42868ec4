import { parseAddress, Replies, type Address, type Logger, type Service, type ServiceState } from '@mailgrid/core';
import {
  checkedAddress,
  checkedDomain,
  type AccountEntry,
  type AccountHome,
  type AliasEntry,
  type Directory,
  type DirectoryAdmin,
  type Resolution,
} from '@mailgrid/directory';
import type { Etcd3, IKeyValue } from 'etcd3';
import { z } from 'zod';
import { readPrefix } from './etcd.js';
import { prefixEnd, type Keys } from './keys.js';
import { jsonValue, PrefixWatch } from './prefix-watch.js';

const groupName = z.string().regex(/^[A-Za-z0-9._-]+$/);
/**
 * An account's group. While `account move` runs: `moving` (its mail is deferred, then it is
 * copied to `moving.to`), then after the switch `purge` (the group whose copy is still to go).
 */
export const accountValue = z.object({ group: groupName, moving: z.object({ to: groupName }).optional(), purge: groupName.optional() });
export type AccountValue = z.infer<typeof accountValue>;
const aliasValue = z.object({
  target: z.string().transform((s, ctx) => {
    const a = parseAddress(s);
    if (!a) ctx.addIssue({ code: 'custom', message: 'not an address' });
    return a?.key ?? s;
  }),
});
const domainValue = z.record(z.string(), z.unknown());

/** One directory key, decoded. */
type Entry = { type: 'domains'; domain: string } | { type: 'accounts' | 'aliases'; address: string };

/**
 * The cluster directory in etcd: domains, accounts and aliases → hosting group.
 *
 * Readers keep the whole directory in memory, loaded once with a paged range read and then
 * kept current by a watch from that revision, so RCPT never waits for etcd. While the watch
 * is cut off the cache may be stale: known addresses are still answered from it, anything it
 * does not know gets `451 4.4.3` instead of a possibly wrong 550/554. So does an address
 * whose entry holds a value that does not parse (written by hand): it is deferred until an
 * operator fixes it, never bounced.
 */
export class EtcdDirectory implements Directory, DirectoryAdmin, Service {
  readonly name = 'directory';
  private readonly domains = new Set<string>();
  /** address → group; group and domain names interned so a million accounts share them. */
  private readonly accounts = new Map<string, string>();
  private readonly aliases = new Map<string, string>();
  /** Accounts being moved → the group they go to. */
  private readonly moving = new Map<string, string>();
  private readonly names = new Map<string, string>();
  /** Keys whose value did not parse: addresses (accounts, aliases) and domain names. */
  private readonly badAccounts = new Set<string>();
  private readonly badAliases = new Set<string>();
  private readonly badDomains = new Set<string>();
  /** The first account of a domain, once asked for; dropped when it goes, found again when asked. */
  private readonly firstAccounts = new Map<string, string>();
  private readonly watch: PrefixWatch;

  constructor(
    private readonly client: Etcd3,
    private readonly keys: Keys,
    log: Logger,
  ) {
    this.watch = new PrefixWatch({
      client,
      prefix: keys.directory,
      name: 'directory',
      log,
      handler: {
        reset: () => {
          for (const c of [this.domains, this.accounts, this.aliases, this.moving, this.badAccounts, this.badAliases, this.badDomains, this.firstAccounts]) c.clear();
        },
        put: (kv) => this.put(kv),
        delete: (kv) => this.remove(kv, false),
        invalid: (kv) => this.remove(kv, true),
      },
    });
  }

  get state(): ServiceState {
    return this.watch.state;
  }

  /** True while the cache is loaded and the watch is connected. */
  get isSynced(): boolean {
    return this.watch.synced;
  }

  get revision(): number {
    return this.watch.revision;
  }

  get size(): { domains: number; accounts: number; aliases: number } {
    return { domains: this.domains.size, accounts: this.accounts.size, aliases: this.aliases.size };
  }

  /**
   * Loads the cache. If etcd cannot be reached the node still starts (every lookup answers
   * 451 until then) and loading is retried in the background.
   */
  start(): Promise<void> {
    return this.watch.start();
  }

  stop(): Promise<void> {
    return this.watch.stop();
  }

  async resolve(address: Address): Promise<Resolution> {
    let key = address.key;
    const target = this.aliases.get(key);
    if (target) key = target;
    const group = this.accounts.get(key);
    if (group) return { kind: 'account', account: key, group };
    if (this.badAccounts.has(address.key) || this.badAliases.has(address.key) || (target && this.badAccounts.has(target)))
      throw Replies.directoryEntryInvalid(address.key);
    if (!this.watch.synced) throw Replies.lookupFailed(address.key);
    if (target) return { kind: 'unknown-user' };
    if (this.badDomains.has(address.domain)) throw Replies.directoryEntryInvalid(address.key);
    return this.domains.has(address.domain) ? { kind: 'unknown-user' } : { kind: 'foreign' };
  }

  home(account: string): AccountHome | undefined {
    const group = this.accounts.get(account);
    return group === undefined ? undefined : { group, movingTo: this.moving.get(account) };
  }

  async hostedDomains(): Promise<string[]> {
    return [...this.domains].sort();
  }

  async firstAccount(domain: string): Promise<string | undefined> {
    let first = this.firstAccounts.get(domain);
    if (first === undefined) {
      // Postmaster mail is rare: one pass over the cache, remembered until that account goes.
      const suffix = '@' + domain;
      for (const address of this.accounts.keys()) if (address.endsWith(suffix) && (first === undefined || address < first)) first = address;
      if (first !== undefined) this.firstAccounts.set(domain, first);
    }
    return first;
  }

  // --- cache -------------------------------------------------------------------------

  /** Throws (for the watch to log) when the value does not parse. */
  private put(kv: IKeyValue): void {
    const e = this.entry(kv);
    if (!e) return;
    if (e.type === 'domains') {
      jsonValue(domainValue, kv);
      this.domains.add(e.domain);
      this.badDomains.delete(e.domain);
    } else if (e.type === 'accounts') {
      const value = jsonValue(accountValue, kv);
      this.accounts.set(e.address, this.intern(value.group));
      if (value.moving) this.moving.set(e.address, this.intern(value.moving.to));
      else this.moving.delete(e.address);
      this.badAccounts.delete(e.address);
      const domain = e.address.slice(e.address.lastIndexOf('@') + 1);
      const first = this.firstAccounts.get(domain);
      if (first !== undefined && e.address < first) this.firstAccounts.set(domain, e.address);
    } else {
      this.aliases.set(e.address, jsonValue(aliasValue, kv).target);
      this.badAliases.delete(e.address);
    }
  }

  /** A deleted key, or one whose value did not parse (`bad`): either way its old value goes. */
  private remove(kv: IKeyValue, bad: boolean): void {
    const e = this.entry(kv);
    if (!e) return;
    const [values, invalid, name] =
      e.type === 'domains' ? [this.domains, this.badDomains, e.domain] : e.type === 'accounts' ? [this.accounts, this.badAccounts, e.address] : [this.aliases, this.badAliases, e.address];
    values.delete(name);
    if (e.type === 'accounts') this.moving.delete(name);
    if (bad) invalid.add(name);
    else invalid.delete(name);
    if (e.type === 'accounts') {
      const domain = name.slice(name.lastIndexOf('@') + 1);
      if (this.firstAccounts.get(domain) === name) this.firstAccounts.delete(domain);
    }
  }

  /**
   * `<directory>/<type>/<domain>[/<local>]`; undefined for anything else. Each part is
   * decoded from the key bytes on its own, and the domain interned: slices of the whole key
   * string would keep all of it alive for every one of a million cached addresses.
   */
  private entry(kv: IKeyValue): Entry | undefined {
    const key = kv.key;
    const base = Buffer.byteLength(this.keys.directory);
    const s1 = key.indexOf(0x2f, base);
    if (s1 < 0) return undefined;
    const type = key.toString('utf8', base, s1);
    const s2 = key.indexOf(0x2f, s1 + 1);
    if (type === 'domains') return s2 < 0 ? { type, domain: this.intern(key.toString('utf8', s1 + 1)) } : undefined;
    if ((type !== 'accounts' && type !== 'aliases') || s2 < 0) return undefined;
    return { type, address: key.toString('utf8', s2 + 1) + '@' + this.intern(key.toString('utf8', s1 + 1, s2)) };
  }

  private intern(name: string): string {
    let g = this.names.get(name);
    if (!g) this.names.set(name, (g = name));
    return g;
  }

  // --- administration (straight to etcd, checked in transactions) ------------------------

  async addDomain(domain: string): Promise<void> {
    const d = checkedDomain(domain);
    const res = await this.client.if(this.keys.domain(d), 'Create', '==', 0).then(this.client.put(this.keys.domain(d)).value('{}')).commit();
    if (!res.succeeded) throw Replies.domainExists(d);
  }

  async removeDomain(domain: string): Promise<void> {
    const d = checkedDomain(domain);
    const key = Buffer.from(this.keys.domain(d));
    const accounts = this.keys.accountsOf(d);
    // One transaction: the domain exists and no key in its accounts range does (a range
    // compare holds for every key of the range, and for none when it is empty), so an
    // account added meanwhile cannot outlive its domain.
    const res = await this.client.kv.txn({
      compare: [
        { key, target: 'Create', result: 'Greater', create_revision: 0 },
        { key: Buffer.from(accounts), range_end: Buffer.from(prefixEnd(accounts)), target: 'Create', result: 'Equal', create_revision: 0 },
      ],
      success: [{ request_delete_range: { key } }],
      failure: [],
    });
    if (res.succeeded) return;
    if (!(await this.client.get(this.keys.domain(d)).exec()).kvs.length) throw Replies.noSuchDomain(d);
    throw Replies.domainHasAccounts(d);
  }

  async listDomains(): Promise<string[]> {
    const out: string[] = [];
    await readPrefix(this.client, this.keys.directory + 'domains/', (kv) => {
      if (valid(domainValue, kv)) out.push(kv.key.toString().split('/').pop()!);
    });
    return out;
  }

  async addAccount(address: string, group: string): Promise<void> {
    const a = checkedAddress(address);
    const [local] = a.key.split('@');
    if (!group) throw Replies.groupRequired();
    if (!(await this.client.get(this.keys.group(group)).exec()).kvs.length) throw Replies.noSuchGroup(group);
    const res = await this.client
      .if(this.keys.domain(a.domain), 'Create', '>', 0)
      .and(this.keys.account(a.domain, local), 'Create', '==', 0)
      .then(this.client.put(this.keys.account(a.domain, local)).value(JSON.stringify({ group })))
      .commit();
    if (res.succeeded) return;
    if (!(await this.client.get(this.keys.domain(a.domain)).exec()).kvs.length) throw Replies.domainNotHosted(a.domain);
    throw Replies.accountExists(a.key);
  }

  async removeAccount(address: string): Promise<void> {
    const a = checkedAddress(address);
    const [local] = a.key.split('@');
    const res = await this.client.delete().key(this.keys.account(a.domain, local)).exec();
    if (Number(res.deleted) === 0) throw Replies.noSuchAccount(a.key);
  }

  async addAlias(alias: string, target: string): Promise<void> {
    const a = checkedAddress(alias);
    const t = checkedAddress(target);
    const [local] = a.key.split('@');
    const [tLocal] = t.key.split('@');
    const res = await this.client
      .if(this.keys.domain(a.domain), 'Create', '>', 0)
      .and(this.keys.account(t.domain, tLocal), 'Create', '>', 0)
      .and(this.keys.account(a.domain, local), 'Create', '==', 0)
      .and(this.keys.alias(a.domain, local), 'Create', '==', 0)
      .then(this.client.put(this.keys.alias(a.domain, local)).value(JSON.stringify({ target: t.key })))
      .commit();
    if (res.succeeded) return;
    if (!(await this.client.get(this.keys.domain(a.domain)).exec()).kvs.length) throw Replies.domainNotHosted(a.domain);
    if (!(await this.client.get(this.keys.account(t.domain, tLocal)).exec()).kvs.length) throw Replies.aliasTargetNotAccount(t.key);
    throw Replies.aliasTaken(a.key);
  }

  async removeAlias(alias: string): Promise<void> {
    const a = checkedAddress(alias);
    const [local] = a.key.split('@');
    const res = await this.client.delete().key(this.keys.alias(a.domain, local)).exec();
    if (Number(res.deleted) === 0) throw Replies.noSuchAlias(a.key);
  }

  async listAliases(domain?: string): Promise<AliasEntry[]> {
    const prefix = domain === undefined ? this.keys.directory + 'aliases/' : this.keys.directory + `aliases/${checkedDomain(domain)}/`;
    const out: AliasEntry[] = [];
    await readPrefix(this.client, prefix, (kv) => {
      const [, d, local] = kv.key.toString().slice(this.keys.directory.length).split('/');
      const value = valid(aliasValue, kv);
      if (value) out.push({ alias: `${local}@${d}`, target: value.target });
    });
    return out;
  }

  async listAccounts(domain?: string): Promise<AccountEntry[]> {
    const prefix = domain === undefined ? this.keys.directory + 'accounts/' : this.keys.accountsOf(checkedDomain(domain));
    const out: AccountEntry[] = [];
    await readPrefix(this.client, prefix, (kv) => {
      const [, d, local] = kv.key.toString().slice(this.keys.directory.length).split('/');
      const value = valid(accountValue, kv);
      const move = value?.moving ? `to ${value.moving.to}` : value?.purge ? `from ${value.purge}` : undefined;
      if (value) out.push({ address: `${local}@${d}`, group: value.group, ...(move && { move }) });
    });
    return out;
  }
}

/** Lists skip entries whose value does not parse (the watch logs them). */
function valid<T>(schema: z.ZodType<T>, kv: IKeyValue): T | undefined {
  try {
    return jsonValue(schema, kv);
  } catch {
    return undefined;
  }
}
