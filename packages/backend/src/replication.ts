import { metrics, Replies, type Logger, type Service, type ServiceState } from '@mailgrid/core';
import type { Failover, GroupLeadership, HostingGroupsWatch } from '@mailgrid/cluster';
import { createReplicationClient, LogFollower, LogFollowers, proto, type FollowClientCall, type GrpcService, type ReplicationHandlers } from '@mailgrid/protocol';
import type { LmdbMailStore } from '@mailgrid/store';

export interface ReplicationOptions {
  store: LmdbMailStore;
  leadership: GroupLeadership;
  groups: HostingGroupsWatch;
  group: string;
  node: string;
  /** An in-sync replica that has not acked a waiting write for this long is dropped from the set. */
  maxLagMs: () => number;
  /** Log entries kept beyond what every follower has, so a replica that was away catches up from the log. */
  logRetain: () => number;
  log: Logger;
}

/**
 * Synchronous replication of a hosting group's store, both ends.
 *
 * As primary: every write waits (the store's `durable` hook) until each member of the
 * in-sync set has acked its log entry as flushed. Replicas connect with Follow; one that
 * has acked everything written so far counts for waiting writes from then on and is added
 * to the in-sync set in etcd. One whose stream breaks, or that leaves a write waiting longer
 * than `maxLagMs`, is removed from the set in etcd first, and only then stops being waited
 * for: a member that may be elected has every answered write.
 *
 * As replica: follows the elected primary (from the groups watch), applies what it sends
 * as its own log, acks after the flush. Serves nothing else.
 */
export class GroupReplication implements Service {
  readonly name = 'replication';
  private _state: ServiceState = 'new';
  /** The primary's side: replicas' streams, the in-sync set, writes waiting for them. */
  private readonly followers: LogFollowers;
  private timer: NodeJS.Timeout | undefined;
  private ticks = 0;
  /** The group's last failovers (this one's election the newest), published with its status. */
  private failovers: Failover[] = [];
  /** Replica side: the stream from the primary. */
  private readonly follower: LogFollower;
  private followRetry: NodeJS.Timeout | undefined;
  private readonly onGroups = () => this.follow();
  private unobserve: (() => void) | undefined;

  constructor(private readonly options: ReplicationOptions) {
    const { leadership } = options;
    this.followers = new LogFollowers({
      source: options.store,
      name: 'replication',
      epoch: () => leadership.epoch,
      writeSet: (nodes) => leadership.setInSync([options.node, ...nodes]),
      maxLagMs: options.maxLagMs,
      log: options.log,
    });
    this.follower = new LogFollower({
      copy: options.store,
      node: options.node,
      name: 'replication',
      open: (address) => {
        const client = createReplicationClient(address);
        return { call: client.Follow() as unknown as FollowClientCall, close: () => client.close() };
      },
      after: async () => {
        if (options.groups.group(options.group)?.inSync?.includes(options.node)) await options.store.setReady();
      },
      retryMs: 500,
      ended: (err) => {
        if (err) options.log.warn({ event: 'replication.follow-failed', err: err.message }, 'stream from the primary ended');
        // Whom to follow is looked at again: the primary may have changed.
        clearTimeout(this.followRetry);
        this.followRetry = setTimeout(() => this.follow(), 500);
      },
      log: options.log,
    });
    options.leadership.on('elected', (epoch: number, followsAnother: boolean) => this.elected(epoch, followsAnother));
    options.leadership.on('demoted', () => this.demoted());
  }

  get state(): ServiceState {
    return this._state;
  }

  async start(): Promise<void> {
    this._state = 'running';
    this.options.groups.on('change', this.onGroups);
    this.timer = setInterval(() => this.watchdog(), 250);
    this.timer.unref();
    this.unobserve = metrics.observe.replication(() => {
      const epoch = this.options.leadership.epoch;
      if (epoch !== undefined) return { group: this.options.group, primary: true, epoch, inSync: 1 + this.followers.members().length, lag: this.followers.lag() };
      return { group: this.options.group, primary: false, epoch: this.follower.following?.epoch ?? 0, inSync: 0, lag: {} };
    });
    this.follow();
  }

  async stop(): Promise<void> {
    this._state = 'stopping';
    this.unobserve?.();
    clearInterval(this.timer);
    clearTimeout(this.followRetry);
    this.options.groups.off('change', this.onGroups);
    void this.follower.stop();
    this.followers.close();
    this.followers.end(Replies.backendUnavailable(new Error('stopping')));
    this._state = 'stopped';
  }

  /** The store's durable hook: resolves once every in-sync replica has the entry on disk. */
  durable(seq: number): Promise<void> {
    if (this.options.leadership.writableEpoch() === undefined) return Promise.reject(Replies.notPrimary(this.options.group));
    return this.followers.durable(seq);
  }

  /** What membership and `group list` show of this member's replication. */
  describe(): { role: 'primary' | 'replica'; seq: number } {
    const seq = this.options.store.position().seq;
    return this.options.leadership.epoch !== undefined ? { role: 'primary', seq } : { role: 'replica', seq };
  }

  /** The primary's figures for the group's status key. */
  status() {
    const seq = this.options.store.position().seq;
    return {
      leader: this.options.node,
      epoch: this.options.leadership.epoch ?? 0,
      inSync: [this.options.node, ...this.followers.members()],
      lag: this.followers.lag(),
      seq,
      failovers: this.failovers,
    };
  }

  // ---- primary ---------------------------------------------------------------------------

  private elected(epoch: number, followsAnother: boolean): void {
    void this.follower.stop();
    this.options.store.epoch = epoch;
    // A group that had an in-sync set before this one was elected failed over (or was handed
    // over; the campaign says so: the groups watch may have its new set already). The list goes
    // on from the status the previous primary last published, which names it.
    const status = this.options.groups.group(this.options.group)?.status;
    const before = status?.failovers ?? [];
    const from = status && status.epoch !== epoch ? status.leader : undefined;
    if (followsAnother) metrics.failovers.inc({ group: this.options.group });
    this.failovers = (followsAnother ? [...before, { at: Date.now(), epoch, to: this.options.node, ...(from ? { from } : {}) }] : before).slice(-10);
    this.followers.reset();
    void this.options.store.setReady().catch(() => undefined);
  }

  private demoted(): void {
    this.followers.end(Replies.notPrimary(this.options.group));
    this.follow();
  }

  /** Republishes the group's figures every 2 s; the followers' watchdog. */
  private watchdog(): void {
    if (this.options.leadership.epoch === undefined) return;
    if (++this.ticks % 8 === 0) void this.options.leadership.publish(this.status()).catch(() => undefined);
    this.followers.watchdog();
  }

  /** Up to where the log may be trimmed: what every connected replica has, less `logRetain` entries. */
  trimPoint(): number {
    return this.followers.trimPoint(this.options.logRetain());
  }

  /** The Replication service: a replica's Follow stream. */
  service(): GrpcService {
    const handlers: ReplicationHandlers = { Follow: (call) => this.followers.follow(call) };
    return { name: 'Replication', definition: proto.Replication.service, handlers: handlers as never };
  }

  // ---- replica ---------------------------------------------------------------------------

  /** Follows the elected primary (if it is another member), marking the data ready once this member is in sync. */
  private follow(): void {
    if (this._state !== 'running' || this.options.leadership.epoch !== undefined) return;
    const g = this.options.groups.group(this.options.group);
    const leader = g?.leader;
    if (!leader || leader.id === this.options.node) return void this.follower.stop();
    if (this.follower.following?.epoch === leader.epoch) {
      if (g?.inSync?.includes(this.options.node)) void this.options.store.setReady().catch(() => undefined);
      return;
    }
    if (this.follower.follow({ address: leader.address, epoch: leader.epoch }))
      this.options.log.info({ event: 'replication.following', primary: leader.id, epoch: leader.epoch, from: this.options.store.position() }, 'following the primary');
  }
}
