import type { Logger, Service, ServiceState } from '@mailgrid/core';
import { EtcdLeaseInvalidError, type Etcd3, type Lease } from 'etcd3';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { HostingGroupsWatch } from './hosting-groups.js';
import type { Keys } from './keys.js';

export interface LeadershipOptions {
  client: Etcd3;
  keys: Keys;
  groups: HostingGroupsWatch;
  group: string;
  node: string;
  /** The gRPC address others reach the primary at (known once the host is bound). */
  address: () => string | undefined;
  ttlSec: number;
  /** Whether this member's data may serve as the group's (whole, and in sync once). */
  canLead: () => boolean;
  log: Logger;
}

/**
 * This member's part in its hosting group's election. The election key is lease-bound; it
 * is taken in a transaction that also checks the in-sync set is the one this member read
 * and names it (or does not exist yet: a new group), and resets the in-sync set to the
 * winner alone, who adds replicas as they catch up. The key's create revision is the epoch.
 *
 * The lease is this object's own and kept alive by hand, so its deadline is known on this
 * node's monotonic clock: a keep-alive sent at t keeps the lease until at least t + TTL on
 * etcd's side, so `writableEpoch` answers only until t + TTL − a margin, and a primary cut
 * off from etcd stops taking writes before anyone else can be elected. Leadership comes
 * only from this member's own successful transaction, never from a watch event, and is
 * confirmed on every keep-alive by reading the key's create revision (etcd3 has elected two
 * leaders after an etcd restart: microsoft/etcd3 #158, #176).
 *
 * Events: `elected` (epoch), `demoted`.
 */
export class GroupLeadership extends EventEmitter implements Service {
  readonly name = 'leadership';
  private _state: ServiceState = 'new';
  private lease: Lease | undefined;
  private leaseId: string | undefined;
  private _epoch: number | undefined;
  private validUntil = 0;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  /**
   * A change of this group's election or in-sync key is acted on at once; the rest of
   * `groups/` (other groups, the status every primary writes every 2 s) waits for the tick.
   */
  private readonly onGroups = () => {
    const g = this.options.groups.group(this.options.group);
    const seen = `${g?.leader?.epoch}/${g?.inSyncRevision}`;
    if (seen === this.seen) return;
    this.seen = seen;
    this.kick();
  };
  private seen = '';

  constructor(private readonly options: LeadershipOptions) {
    super();
  }

  get state(): ServiceState {
    return this._state;
  }

  /** The epoch while this member is the primary. */
  get epoch(): number | undefined {
    return this._epoch;
  }

  /** The epoch while this member is the primary and its lease is surely still held; else undefined (no writes). */
  writableEpoch(): number | undefined {
    return this._epoch !== undefined && performance.now() < this.validUntil ? this._epoch : undefined;
  }

  private get every(): number {
    return Math.max(300, (this.options.ttlSec * 1000) / 4);
  }

  async start(): Promise<void> {
    this._state = 'running';
    this.options.groups.on('change', this.onGroups);
    this.timer = setInterval(() => this.kick(), this.every);
    this.timer.unref();
    this.kick();
  }

  /** Runs a tick now unless one runs. */
  private kick(): void {
    if (this._state !== 'running' || this.ticking) return;
    this.ticking = this.tick()
      .catch((err) => this.options.log.debug({ event: 'leadership.tick-failed', err: (err as Error).message }, 'election step failed'))
      .finally(() => (this.ticking = undefined));
  }

  private async tick(): Promise<void> {
    const { client, keys, group } = this.options;
    // No keep-alive got through in time: no more writes (writableEpoch already says so), and the lease is left.
    if (this._epoch !== undefined && performance.now() > this.validUntil) this.demote('lease not renewed in time');
    await this.keepAlive();
    if (this._epoch !== undefined) {
      const kv = (await client.get(keys.election(group)).options({ deadline: this.deadline() }).exec()).kvs[0];
      if (!kv || Number(kv.create_revision) !== this._epoch || leaderOf(kv.value) !== this.options.node) this.demote('the election key is no longer this member’s');
      return;
    }
    const g = this.options.groups.group(group);
    if (!this.options.groups.synced || g?.leader || !this.leaseId) return;
    const inSync = g?.inSync;
    // A new group (no in-sync set yet) takes its first member; after that only in-sync, whole data.
    if (inSync ? !inSync.includes(this.options.node) || !this.options.canLead() : false) return;
    const address = this.options.address();
    if (!address) return;
    const res = await client
      .if(keys.election(group), 'Create', '==', 0)
      .and(keys.inSync(group), 'Mod', '==', g?.inSyncRevision ?? 0)
      .then(
        client.put(keys.election(group)).value(JSON.stringify({ id: this.options.node, grpc: address })).lease(this.leaseId),
        client.put(keys.inSync(group)).value(JSON.stringify({ members: [this.options.node] })),
        client.put(keys.group(group)).value('{}'),
      )
      .commit();
    if (!res.succeeded || this._state !== 'running') return;
    this._epoch = Number(res.header.revision);
    this.options.log.info({ event: 'leadership.elected', group, epoch: this._epoch, newGroup: !inSync }, 'elected primary of the hosting group');
    // Whether the group had an in-sync set before: then this election follows another primary (a failover or hand-over).
    this.emit('elected', this._epoch, Boolean(inSync));
  }

  /** Grants a lease when there is none, else renews it; the deadline moves only on success. */
  private async keepAlive(): Promise<void> {
    const { client, ttlSec } = this.options;
    if (!this.lease) {
      const lease = client.lease(ttlSec, { autoKeepAlive: false });
      lease.on('lost', () => undefined); // handled where keepaliveOnce rejects
      const sent = performance.now();
      try {
        this.leaseId = await lease.grant();
      } catch (err) {
        await lease.revoke().catch(() => undefined);
        throw err;
      }
      this.lease = lease;
      this.validUntil = sent + ttlSec * 1000 - MARGIN_MS;
      return;
    }
    const sent = performance.now();
    try {
      const res = await this.lease.keepaliveOnce({ deadline: this.deadline() } as never);
      if (Number(res.TTL) > 0) this.validUntil = sent + ttlSec * 1000 - MARGIN_MS;
    } catch (err) {
      if (err instanceof EtcdLeaseInvalidError || /lease not found/i.test((err as Error).message)) {
        // Gone on etcd's side: so is the key. A new lease next tick.
        if (this._epoch !== undefined) this.demote('lease expired');
        this.dropLease();
      }
      throw err;
    }
  }

  private deadline(): Date {
    return new Date(Date.now() + this.every);
  }

  /**
   * Leaves the lease: revoked if etcd answers (the key goes with it, so an election can
   * follow at once), else left to lapse. A new one is granted next tick.
   */
  private dropLease(): void {
    const lease = this.lease;
    this.lease = undefined;
    this.leaseId = undefined;
    this.validUntil = 0;
    lease?.revoke().catch(() => undefined);
  }

  private demote(reason: string): void {
    const epoch = this._epoch;
    // When it stopped taking writes, on the wall clock (for logs: terms can be laid side by side).
    const writableUntil = new Date(Date.now() - Math.max(0, performance.now() - this.validUntil)).toISOString();
    this._epoch = undefined;
    // Whatever the reason, the key must not outlive the term (a live lease would keep it).
    this.dropLease();
    this.options.log.warn({ event: 'leadership.demoted', group: this.options.group, epoch, reason, writableUntil }, 'no longer the primary');
    this.emit('demoted', epoch);
  }

  /**
   * Sets the in-sync set, guarded by this primary's epoch: resolves false (nothing changed)
   * when this member is no longer the one elected.
   */
  async setInSync(members: string[]): Promise<boolean> {
    const { client, keys, group } = this.options;
    const epoch = this._epoch;
    if (epoch === undefined) return false;
    const res = await client
      .if(keys.election(group), 'Create', '==', epoch)
      .then(client.put(keys.inSync(group)).value(JSON.stringify({ members })))
      .commit();
    return res.succeeded;
  }

  /** Publishes the primary's figures, guarded like the in-sync set. */
  async publish(status: object): Promise<void> {
    const { client, keys, group } = this.options;
    const epoch = this._epoch;
    if (epoch === undefined) return;
    await client.if(keys.election(group), 'Create', '==', epoch).then(client.put(keys.groupStatus(group)).value(JSON.stringify(status))).commit();
  }

  /** Gives the election up (a replica may take over at once) and revokes the lease. */
  async stop(): Promise<void> {
    if (this._state !== 'running') return;
    this._state = 'stopping';
    clearInterval(this.timer);
    this.options.groups.off('change', this.onGroups);
    await this.ticking;
    // Revoking the lease removes the election key with it: a replica is elected at once.
    const lease = this.lease;
    if (this._epoch !== undefined) this.demote('stopping');
    await lease?.revoke().catch(() => undefined);
    this._state = 'stopped';
  }
}

/** How long before the lease could lapse on etcd's side a primary stops taking writes. */
const MARGIN_MS = 1_000;

function leaderOf(value: Buffer): string | undefined {
  try {
    return (JSON.parse(value.toString()) as { id?: string }).id;
  } catch {
    return undefined;
  }
}
