import { Replies, type Address, type Logger, type Service, type ServiceState } from '@mailgrid/core';
import {
  checkedAddress,
  checkedDomain,
  DirectoryError,
  type AccountEntry,
  type AliasEntry,
  type Directory,
  type DirectoryAdmin,
  type Resolution,
} from '@mailgrid/directory';
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { readPrefix } from './etcd.js';
import type { Keys } from './keys.js';

/**
 * The cluster directory in etcd: domains, accounts and aliases → hosting group.
 *
 * Readers keep the whole directory in memory, loaded once with a paged range read and then
 * kept current by a watch from that revision, so RCPT never waits for etcd. While the watch
 * is cut off the cache may be stale: known addresses are still answered from it, anything it
 * does not know gets `451 4.4.3` instead of a possibly wrong 550/554.
 */
export class EtcdDirectory implements Directory, DirectoryAdmin, Service {
  readonly name = 'directory';
  private _state: ServiceState = 'new';
  private readonly domains = new Set<string>();
  /** address → group; group and domain names interned so a million accounts share them. */
  private readonly accounts = new Map<string, string>();
  private readonly aliases = new Map<string, string>();
  private readonly names = new Map<string, string>();
  private watcher: Watcher | undefined;
  private synced = false;
  private revision = 0;
  private loading: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: Etcd3,
    private readonly keys: Keys,
    private readonly log: Logger,
  ) {}

  get state(): ServiceState {
    return this._state;
  }

  /** True while the cache is loaded and the watch is connected. */
  get isSynced(): boolean {
    return this.synced;
  }

  get size(): { domains: number; accounts: number; aliases: number } {
    return { domains: this.domains.size, accounts: this.accounts.size, aliases: this.aliases.size };
  }

  /**
   * Loads the cache. If etcd cannot be reached the node still starts (every lookup answers
   * 451 until then) and loading is retried in the background.
   */
  async start(): Promise<void> {
    this._state = 'running';
    try {
      await this.load();
    } catch (err) {
      this.log.warn({ event: 'directory.load-failed', err: (err as Error).message }, 'directory not loaded, retrying');
      this.scheduleReload();
    }
  }

  async stop(): Promise<void> {
    this._state = 'stopped';
    clearTimeout(this.retryTimer);
    await this.watcher?.cancel().catch(() => undefined);
  }

  async resolve(address: Address): Promise<Resolution> {
    let key = address.key;
    const target = this.aliases.get(key);
    if (target) key = target;
    const group = this.accounts.get(key);
    if (group) return { kind: 'account', account: key, group };
    if (!this.synced) throw Replies.lookupFailed(address.key);
    if (target) return { kind: 'unknown-user' };
    return this.domains.has(address.domain) ? { kind: 'unknown-user' } : { kind: 'foreign' };
  }

  // --- cache -------------------------------------------------------------------------

  private load(): Promise<void> {
    this.loading ??= this.doLoad().finally(() => (this.loading = undefined));
    return this.loading;
  }

  private async doLoad(): Promise<void> {
    const t0 = Date.now();
    await this.watcher?.cancel().catch(() => undefined);
    this.synced = false;
    this.domains.clear();
    this.accounts.clear();
    this.aliases.clear();
    this.revision = await readPrefix(this.client, this.keys.directory, (kv) => this.apply('put', kv));
    const watcher = await this.client.watch().prefix(this.keys.directory).startRevision(String(this.revision + 1)).create();
    this.watcher = watcher;
    watcher.on('put', (kv) => this.apply('put', kv));
    watcher.on('delete', (kv) => this.apply('delete', kv));
    watcher.on('disconnected', () => {
      if (this.synced) this.log.warn({ event: 'directory.disconnected' }, 'directory watch lost; unknown addresses get 451');
      this.synced = false;
    });
    watcher.on('connected', () => {
      if (!this.synced) this.log.info({ event: 'directory.reconnected', revision: this.revision }, 'directory watch resumed');
      this.synced = true;
    });
    watcher.on('error', (err) => {
      // Compacted past our revision or cancelled by etcd: start over from a fresh read.
      this.log.warn({ event: 'directory.watch-error', err: err.message }, 'directory watch failed, reloading');
      this.synced = false;
      this.scheduleReload();
    });
    this.synced = true;
    this.log.info({ event: 'directory.loaded', ...this.size, revision: this.revision, ms: Date.now() - t0 }, 'directory loaded');
  }

  private scheduleReload(): void {
    if (this._state !== 'running' || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.load().catch((err) => {
        this.log.debug({ event: 'directory.load-failed', err: (err as Error).message }, 'directory reload failed');
        this.scheduleReload();
      });
    }, 1_000);
    this.retryTimer.unref();
  }

  private apply(kind: 'put' | 'delete', kv: IKeyValue): void {
    const rev = Number(kv.mod_revision);
    if (rev > this.revision) this.revision = rev;
    // `<directory>/<type>/<domain>/<local>`. Each part is decoded from the key bytes on its
    // own, and the domain interned: slices of the whole key string would keep all of it
    // alive for every one of a million cached addresses.
    const key = kv.key;
    const base = Buffer.byteLength(this.keys.directory);
    const s1 = key.indexOf(0x2f, base);
    const type = key.toString('utf8', base, s1 < 0 ? key.length : s1);
    if (s1 < 0) return;
    const s2 = key.indexOf(0x2f, s1 + 1);
    const domain = this.intern(key.toString('utf8', s1 + 1, s2 < 0 ? key.length : s2));
    if (type === 'domains') {
      if (kind === 'put') this.domains.add(domain);
      else this.domains.delete(domain);
      return;
    }
    if (s2 < 0) return;
    const address = key.toString('utf8', s2 + 1) + '@' + domain;
    if (type === 'accounts') {
      if (kind === 'put') this.accounts.set(address, this.intern(JSON.parse(kv.value.toString()).group));
      else this.accounts.delete(address);
    } else if (type === 'aliases') {
      if (kind === 'put') this.aliases.set(address, JSON.parse(kv.value.toString()).target);
      else this.aliases.delete(address);
    }
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
    if (!res.succeeded) throw new DirectoryError('ALREADY_EXISTS', `domain ${d} already exists`);
  }

  async removeDomain(domain: string): Promise<void> {
    const d = checkedDomain(domain);
    if (!(await this.client.get(this.keys.domain(d)).exec()).kvs.length) throw new DirectoryError('NOT_FOUND', `no such domain: ${d}`);
    if ((await this.client.getAll().prefix(this.keys.accountsOf(d)).count()) > 0)
      throw new DirectoryError('FAILED_PRECONDITION', `domain ${d} still has accounts; remove them first`);
    await this.client.delete().key(this.keys.domain(d)).exec();
  }

  async listDomains(): Promise<string[]> {
    const out: string[] = [];
    await readPrefix(this.client, this.keys.directory + 'domains/', (kv) => out.push(kv.key.toString().split('/').pop()!));
    return out;
  }

  async addAccount(address: string, group: string): Promise<void> {
    const a = checkedAddress(address);
    const [local] = a.key.split('@');
    if (!group) throw new DirectoryError('INVALID_ARGUMENT', 'a hosting group is required (--group)');
    if (!(await this.client.get(this.keys.group(group)).exec()).kvs.length)
      throw new DirectoryError('FAILED_PRECONDITION', `no such hosting group: ${group}`);
    const res = await this.client
      .if(this.keys.domain(a.domain), 'Create', '>', 0)
      .and(this.keys.account(a.domain, local), 'Create', '==', 0)
      .then(this.client.put(this.keys.account(a.domain, local)).value(JSON.stringify({ group })))
      .commit();
    if (res.succeeded) return;
    if (!(await this.client.get(this.keys.domain(a.domain)).exec()).kvs.length)
      throw new DirectoryError('FAILED_PRECONDITION', `domain ${a.domain} is not hosted; add it first with: mailgrid domain add ${a.domain}`);
    throw new DirectoryError('ALREADY_EXISTS', `account ${a.key} already exists`);
  }

  async removeAccount(address: string): Promise<void> {
    const a = checkedAddress(address);
    const [local] = a.key.split('@');
    const res = await this.client.delete().key(this.keys.account(a.domain, local)).exec();
    if (Number(res.deleted) === 0) throw new DirectoryError('NOT_FOUND', `no such account: ${a.key}`);
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
    if (!(await this.client.get(this.keys.domain(a.domain)).exec()).kvs.length) throw new DirectoryError('FAILED_PRECONDITION', `domain ${a.domain} is not hosted`);
    if (!(await this.client.get(this.keys.account(t.domain, tLocal)).exec()).kvs.length)
      throw new DirectoryError('FAILED_PRECONDITION', `alias target ${t.key} is not an account`);
    throw new DirectoryError('ALREADY_EXISTS', `${a.key} is already an account or an alias`);
  }

  async removeAlias(alias: string): Promise<void> {
    const a = checkedAddress(alias);
    const [local] = a.key.split('@');
    const res = await this.client.delete().key(this.keys.alias(a.domain, local)).exec();
    if (Number(res.deleted) === 0) throw new DirectoryError('NOT_FOUND', `no such alias: ${a.key}`);
  }

  async listAliases(domain?: string): Promise<AliasEntry[]> {
    const prefix = domain === undefined ? this.keys.directory + 'aliases/' : this.keys.directory + `aliases/${checkedDomain(domain)}/`;
    const out: AliasEntry[] = [];
    await readPrefix(this.client, prefix, (kv) => {
      const [, d, local] = kv.key.toString().slice(this.keys.directory.length).split('/');
      out.push({ alias: `${local}@${d}`, target: JSON.parse(kv.value.toString()).target });
    });
    return out;
  }

  async listAccounts(domain?: string): Promise<AccountEntry[]> {
    const prefix = domain === undefined ? this.keys.directory + 'accounts/' : this.keys.accountsOf(checkedDomain(domain));
    const out: AccountEntry[] = [];
    await readPrefix(this.client, prefix, (kv) => {
      const [, d, local] = kv.key.toString().slice(this.keys.directory.length).split('/');
      out.push({ address: `${local}@${d}`, group: JSON.parse(kv.value.toString()).group });
    });
    return out;
  }
}
