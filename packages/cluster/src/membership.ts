import type { Logger, Service, ServiceState } from '@mailgrid/core';
import type { HostingGroups } from '@mailgrid/directory';
import type { Etcd3, Lease, Watcher } from 'etcd3';
import { EventEmitter } from 'node:events';
import { readPrefix } from './etcd.js';
import type { Keys } from './keys.js';

export type Role = 'frontend' | 'backend';

/** What a node publishes about itself under its lease. */
export interface MemberInfo {
  id: string;
  role: Role;
  site: string;
  /** Hosting group served (backends). */
  group?: string;
  /** Addresses other parts of the cluster use: `host:port`. */
  smtp?: string;
  grpc?: string;
  http?: string;
  /** The Queue admin service, on nodes with a queue. */
  queue?: string;
  queueDepth?: number;
  queueOldestAt?: number;
  submitMode?: string;
  state: 'up' | 'draining';
  pid: number;
  startedAt: string;
}

/**
 * Cluster membership: this node's entry lives under an etcd lease (its heartbeat), and the
 * live members are followed with a watch. A lost lease (etcd unreachable past the TTL) is
 * re-granted as soon as etcd answers again, so a node that was cut off comes back by itself.
 */
export class Membership extends EventEmitter implements Service {
  readonly name = 'membership';
  private _state: ServiceState = 'new';
  private lease: Lease | undefined;
  private watcher: Watcher | undefined;
  private readonly live = new Map<string, MemberInfo>();
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: Etcd3,
    private readonly keys: Keys,
    private self: MemberInfo,
    private readonly ttlSec: number,
    private readonly log: Logger,
  ) {
    super();
  }

  get state(): ServiceState {
    return this._state;
  }

  members(): MemberInfo[] {
    return [...this.live.values()];
  }

  /** Registers and starts following the member list; retries in the background if etcd is down. */
  async start(): Promise<void> {
    this._state = 'running';
    try {
      await this.follow();
      await this.register();
    } catch (err) {
      this.log.warn({ event: 'membership.register-failed', err: (err as Error).message }, 'could not register yet, retrying');
      this.retry();
    }
  }

  /** Publishes a change of this node's entry (state, queue depth, ...). */
  async update(patch: Partial<MemberInfo>): Promise<void> {
    this.self = { ...this.self, ...patch };
    if (this.lease) await this.lease.put(this.keys.member(this.self.id)).value(JSON.stringify(this.self));
  }

  /** Says it is draining, then revokes the lease so it leaves the member list at once. */
  async stop(): Promise<void> {
    if (this._state !== 'running') return;
    this._state = 'stopping';
    clearTimeout(this.retryTimer);
    const lease = this.lease;
    this.lease = undefined;
    await lease?.put(this.keys.member(this.self.id)).value(JSON.stringify({ ...this.self, state: 'draining' })).catch(() => undefined);
    await lease?.revoke().catch((err) => this.log.warn({ event: 'membership.revoke-failed', err: (err as Error).message }, 'lease not revoked; it will expire'));
    await this.watcher?.cancel().catch(() => undefined);
    this._state = 'stopped';
  }

  private async register(): Promise<void> {
    const lease = this.client.lease(this.ttlSec, { autoKeepAlive: true });
    lease.on('lost', (err) => {
      if (this.lease !== lease) return;
      this.lease = undefined;
      this.log.warn({ event: 'membership.lease-lost', err: err.message }, 'lease lost, registering again');
      this.retry();
    });
    await lease.grant();
    await lease.put(this.keys.member(this.self.id)).value(JSON.stringify(this.self));
    if (this.self.role === 'backend' && this.self.group) {
      // The group exists from its first backend on; accounts can be placed in it.
      await this.client.if(this.keys.group(this.self.group), 'Create', '==', 0).then(this.client.put(this.keys.group(this.self.group)).value('{}')).commit();
    }
    this.lease = lease;
    this.log.info({ event: 'membership.registered', id: this.self.id, role: this.self.role, group: this.self.group }, 'registered');
  }

  private async follow(): Promise<void> {
    await this.watcher?.cancel().catch(() => undefined);
    this.live.clear();
    const rev = await readPrefix(this.client, this.keys.members, (kv) => this.put(kv.value.toString()));
    this.watcher = await this.client.watch().prefix(this.keys.members).startRevision(String(rev + 1)).create();
    this.watcher.on('put', (kv) => this.put(kv.value.toString()));
    this.watcher.on('delete', (kv) => {
      const id = kv.key.toString().slice(this.keys.members.length);
      if (this.live.delete(id)) this.emit('change', this.members());
    });
    this.watcher.on('error', () => {
      this.watcher = undefined;
      this.retry();
    });
    this.emit('change', this.members());
  }

  private put(json: string): void {
    try {
      const m = JSON.parse(json) as MemberInfo;
      this.live.set(m.id, m);
      this.emit('change', this.members());
    } catch {
      this.log.warn({ event: 'membership.bad-entry', json }, 'ignoring malformed member entry');
    }
  }

  private retry(): void {
    if (this._state !== 'running' || this.retryTimer) return;
    this.retryTimer = setTimeout(async () => {
      this.retryTimer = undefined;
      try {
        if (!this.watcher) await this.follow();
        if (!this.lease) await this.register();
      } catch (err) {
        this.log.debug({ event: 'membership.retry-failed', err: (err as Error).message }, 'membership retry failed');
        this.retry();
      }
    }, 1_000);
    this.retryTimer.unref();
  }
}

/** A hosting group's primary is the live backend of that group that is up. */
export class MemberHostingGroups implements HostingGroups {
  constructor(private readonly membership: Membership) {}

  async primary(group: string): Promise<string | undefined> {
    return this.membership.members().find((m) => m.role === 'backend' && m.group === group && m.state === 'up')?.grpc;
  }
}
