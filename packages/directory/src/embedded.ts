import { isDomain, normalizeDomain, parseAddress, type Address } from '@mailgrid/core';
import { open, type Database, type RootDatabase } from 'lmdb';
import { mkdirSync } from 'node:fs';
import type { AccountEntry, Directory, DirectoryAdmin, Resolution } from './directory.js';

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

  constructor(path: string) {
    mkdirSync(path, { recursive: true });
    this.root = open({ path });
    this.domains = this.root.openDB({ name: 'domains' });
    this.accounts = this.root.openDB({ name: 'accounts' });
  }

  async resolve(address: Address): Promise<Resolution> {
    const entry = this.accounts.get(address.key);
    if (entry) return { kind: 'account', account: address.key, group: entry.group };
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

  async close(): Promise<void> {
    await this.root.close();
  }

  private accountKeys(domain: string): string[] {
    return [...this.accounts.getKeys()].filter((k) => k.endsWith('@' + domain));
  }
}
