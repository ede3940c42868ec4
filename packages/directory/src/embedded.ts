import { isDomain, normalizeDomain, parseAddress, type Address } from '@mailgrid/core';
import { open, type Database, type RootDatabase } from 'lmdb';
import { mkdirSync } from 'node:fs';
import type { AccountEntry, AliasEntry, Directory, DirectoryAdmin, Resolution } from './directory.js';

/** Raised for admin requests that cannot be done as asked; `code` says why. */
export class DirectoryError extends Error {
  override readonly name = 'DirectoryError';
  constructor(
    readonly code: 'INVALID_ARGUMENT' | 'NOT_FOUND' | 'ALREADY_EXISTS' | 'FAILED_PRECONDITION',
    message: string,
  ) {
    super(message);
  }
}

export function checkedDomain(domain: string): string {
  const d = normalizeDomain(domain);
  if (!isDomain(d)) throw new DirectoryError('INVALID_ARGUMENT', `invalid domain name: ${domain}`);
  return d;
}

export function checkedAddress(address: string): Address {
  const a = parseAddress(address);
  if (!a) throw new DirectoryError('INVALID_ARGUMENT', `invalid address: ${address}`);
  return a;
}

/**
 * The directory of a single node, in its own LMDB environment. Lookups are memory-mapped
 * reads (no I/O once warm); edits are durable before they return.
 */
export class EmbeddedDirectory implements Directory, DirectoryAdmin {
  private readonly root: RootDatabase;
  private readonly domains: Database<{ addedAt: number }, string>;
  private readonly accounts: Database<{ group: string }, string>;
  private readonly aliases: Database<{ target: string }, string>;

  constructor(path: string) {
    mkdirSync(path, { recursive: true });
    this.root = open({ path });
    this.domains = this.root.openDB({ name: 'domains' });
    this.accounts = this.root.openDB({ name: 'accounts' });
    this.aliases = this.root.openDB({ name: 'aliases' });
  }

  async resolve(address: Address): Promise<Resolution> {
    const key = this.aliases.get(address.key)?.target ?? address.key;
    const entry = this.accounts.get(key);
    if (entry) return { kind: 'account', account: key, group: entry.group };
    return this.domains.get(address.domain) ? { kind: 'unknown-user' } : { kind: 'foreign' };
  }

  async addDomain(domain: string): Promise<void> {
    const d = checkedDomain(domain);
    if (!(await this.domains.ifNoExists(d, () => this.domains.put(d, { addedAt: Date.now() }))))
      throw new DirectoryError('ALREADY_EXISTS', `domain ${d} already exists`);
    await this.root.flushed;
  }

  async removeDomain(domain: string): Promise<void> {
    const d = checkedDomain(domain);
    if (!this.domains.get(d)) throw new DirectoryError('NOT_FOUND', `no such domain: ${d}`);
    if (this.accountKeys(d).length)
      throw new DirectoryError('FAILED_PRECONDITION', `domain ${d} still has accounts; remove them first`);
    await this.domains.remove(d);
    await this.root.flushed;
  }

  async listDomains(): Promise<string[]> {
    return [...this.domains.getKeys()];
  }

  async addAccount(address: string, group: string): Promise<void> {
    const a = checkedAddress(address);
    if (!this.domains.get(a.domain))
      throw new DirectoryError('FAILED_PRECONDITION', `domain ${a.domain} is not hosted; add it first with: mailgrid domain add ${a.domain}`);
    if (!(await this.accounts.ifNoExists(a.key, () => this.accounts.put(a.key, { group }))))
      throw new DirectoryError('ALREADY_EXISTS', `account ${a.key} already exists`);
    await this.root.flushed;
  }

  async removeAccount(address: string): Promise<void> {
    const a = checkedAddress(address);
    if (!(await this.accounts.remove(a.key))) throw new DirectoryError('NOT_FOUND', `no such account: ${a.key}`);
    await this.root.flushed;
  }

  async listAccounts(domain?: string): Promise<AccountEntry[]> {
    const d = domain === undefined ? undefined : checkedDomain(domain);
    if (d !== undefined && !this.domains.get(d)) throw new DirectoryError('NOT_FOUND', `no such domain: ${d}`);
    const out: AccountEntry[] = [];
    for (const { key, value } of this.accounts.getRange()) {
      if (d === undefined || key.endsWith('@' + d)) out.push({ address: key, group: value.group });
    }
    return out;
  }

  async addAlias(alias: string, target: string): Promise<void> {
    const a = checkedAddress(alias);
    const t = checkedAddress(target);
    if (!this.domains.get(a.domain)) throw new DirectoryError('FAILED_PRECONDITION', `domain ${a.domain} is not hosted`);
    if (!this.accounts.get(t.key)) throw new DirectoryError('FAILED_PRECONDITION', `alias target ${t.key} is not an account`);
    if (this.accounts.get(a.key)) throw new DirectoryError('ALREADY_EXISTS', `${a.key} is an account`);
    if (!(await this.aliases.ifNoExists(a.key, () => this.aliases.put(a.key, { target: t.key }))))
      throw new DirectoryError('ALREADY_EXISTS', `alias ${a.key} already exists`);
    await this.root.flushed;
  }

  async removeAlias(alias: string): Promise<void> {
    const a = checkedAddress(alias);
    if (!(await this.aliases.remove(a.key))) throw new DirectoryError('NOT_FOUND', `no such alias: ${a.key}`);
    await this.root.flushed;
  }

  async listAliases(domain?: string): Promise<AliasEntry[]> {
    const d = domain === undefined ? undefined : checkedDomain(domain);
    const out: AliasEntry[] = [];
    for (const { key, value } of this.aliases.getRange()) if (d === undefined || key.endsWith('@' + d)) out.push({ alias: key, target: value.target });
    return out;
  }

  async close(): Promise<void> {
    await this.root.close();
  }

  private accountKeys(domain: string): string[] {
    return [...this.accounts.getKeys()].filter((k) => k.endsWith('@' + domain));
  }
}
