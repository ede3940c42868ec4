import { commit, copyEnvironment, flushed, isDomain, normalizeDomain, parseAddress, Replies, type Address } from '@mailgrid/core';
import { open, type Database, type RootDatabase } from 'lmdb';
import { mkdirSync } from 'node:fs';
import type { AccountEntry, AliasEntry, Directory, DirectoryAdmin, Resolution } from './directory.js';

export function checkedDomain(domain: string): string {
  const d = normalizeDomain(domain);
  if (!isDomain(d)) throw Replies.invalidDomain(domain);
  return d;
}

export function checkedAddress(address: string): Address {
  const a = parseAddress(address);
  if (!a) throw Replies.invalidAddress(address);
  return a;
}

/**
 * The directory of a single node, in its own LMDB environment. Lookups are memory-mapped
 * reads (no I/O once warm); every edit is one transaction that also counts the revision,
 * checked and durable before it returns.
 */
export class EmbeddedDirectory implements Directory, DirectoryAdmin {
  private readonly root: RootDatabase;
  private readonly domains: Database<{ addedAt: number }, string>;
  private readonly accounts: Database<{ group: string }, string>;
  private readonly aliases: Database<{ target: string }, string>;
  private readonly meta: Database<number, string>;

  constructor(path: string) {
    mkdirSync(path, { recursive: true });
    this.root = open({ path });
    this.domains = this.root.openDB({ name: 'domains' });
    this.accounts = this.root.openDB({ name: 'accounts' });
    this.aliases = this.root.openDB({ name: 'aliases' });
    this.meta = this.root.openDB({ name: 'meta' });
  }

  get revision(): number {
    return this.meta.get('revision') ?? 0;
  }

  async resolve(address: Address): Promise<Resolution> {
    const key = this.aliases.get(address.key)?.target ?? address.key;
    const entry = this.accounts.get(key);
    if (entry) return { kind: 'account', account: key, group: entry.group };
    return this.domains.get(address.domain) ? { kind: 'unknown-user' } : { kind: 'foreign' };
  }

  async hostedDomains(): Promise<string[]> {
    return [...this.domains.getKeys()];
  }

  async firstAccount(domain: string): Promise<string | undefined> {
    return this.accountKeys(domain).sort()[0];
  }

  async addDomain(domain: string): Promise<void> {
    const d = checkedDomain(domain);
    await this.edit(() => {
      if (this.domains.get(d)) throw Replies.domainExists(d);
      this.domains.put(d, { addedAt: Date.now() });
    });
  }

  async removeDomain(domain: string): Promise<void> {
    const d = checkedDomain(domain);
    await this.edit(() => {
      if (!this.domains.get(d)) throw Replies.noSuchDomain(d);
      if (this.accountKeys(d).length) throw Replies.domainHasAccounts(d);
      this.domains.remove(d);
    });
  }

  async listDomains(): Promise<string[]> {
    return [...this.domains.getKeys()];
  }

  async addAccount(address: string, group: string): Promise<void> {
    const a = checkedAddress(address);
    if (!group) throw Replies.groupRequired();
    await this.edit(() => {
      if (!this.domains.get(a.domain)) throw Replies.domainNotHosted(a.domain);
      if (this.accounts.get(a.key)) throw Replies.accountExists(a.key);
      if (this.aliases.get(a.key)) throw Replies.aliasTaken(a.key);
      this.accounts.put(a.key, { group });
    });
  }

  async removeAccount(address: string): Promise<void> {
    const a = checkedAddress(address);
    await this.edit(() => {
      if (!this.accounts.get(a.key)) throw Replies.noSuchAccount(a.key);
      this.accounts.remove(a.key);
    });
  }

  async listAccounts(domain?: string): Promise<AccountEntry[]> {
    const d = domain === undefined ? undefined : checkedDomain(domain);
    if (d !== undefined && !this.domains.get(d)) throw Replies.noSuchDomain(d);
    const out: AccountEntry[] = [];
    for (const { key, value } of this.accounts.getRange()) {
      if (d === undefined || key.endsWith('@' + d)) out.push({ address: key, group: value.group });
    }
    return out;
  }

  async addAlias(alias: string, target: string): Promise<void> {
    const a = checkedAddress(alias);
    const t = checkedAddress(target);
    await this.edit(() => {
      if (!this.domains.get(a.domain)) throw Replies.domainNotHosted(a.domain);
      if (!this.accounts.get(t.key)) throw Replies.aliasTargetNotAccount(t.key);
      if (this.accounts.get(a.key) || this.aliases.get(a.key)) throw Replies.aliasTaken(a.key);
      this.aliases.put(a.key, { target: t.key });
    });
  }

  async removeAlias(alias: string): Promise<void> {
    const a = checkedAddress(alias);
    await this.edit(() => {
      if (!this.aliases.get(a.key)) throw Replies.noSuchAlias(a.key);
      this.aliases.remove(a.key);
    });
  }

  async listAliases(domain?: string): Promise<AliasEntry[]> {
    const d = domain === undefined ? undefined : checkedDomain(domain);
    const out: AliasEntry[] = [];
    for (const { key, value } of this.aliases.getRange()) if (d === undefined || key.endsWith('@' + d)) out.push({ alias: key, target: value.target });
    return out;
  }

  /** A consistent copy into `dir` (new, or empty), made while edits go on: a single node's backup has its directory too. */
  backup(dir: string, compact = false): Promise<void> {
    return copyEnvironment(this.root, dir, compact);
  }

  async close(): Promise<void> {
    await this.root.close();
  }

  /** One checked edit: runs inside the write transaction, counts the revision, then flushes. */
  private async edit(change: () => void): Promise<void> {
    await commit(this.root, () => {
      change();
      this.meta.put('revision', this.revision + 1);
    });
    await flushed(this.root);
  }

  private accountKeys(domain: string): string[] {
    return [...this.accounts.getKeys()].filter((k) => k.endsWith('@' + domain));
  }
}
