import * as grpc from '@grpc/grpc-js';
import { MailError, Replies, type Logger, type Service, type ServiceState } from '@mailgrid/core';
import type { GroupLeadership, HostingGroupsWatch } from '@mailgrid/cluster';
import {
  createReplicationClient,
  LogSignal,
  proto,
  receiveLog,
  refuseFollower as refuse,
  shipLog,
  type FollowCall,
  type FollowClientCall,
  type FollowRequest__Output,
  type GrpcService,
  type ReplicationClient,
  type ReplicationHandlers,
} from '@mailgrid/protocol';
import type { LmdbMailStore, LogPosition } from '@mailgrid/store';

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

/** A replica's stream as its primary keeps it. */
interface Follower {
  node: string;
  call: FollowCall;
  /** The last seq it has on disk. */
  acked: number;
  /** Counted by waiting writes: in the in-sync set, or on its way there. */
  counted: boolean;
  /** It counts once it has acked this far: the log's end when it connected (or last fell behind). */
  target: number;
  /** The log's end when it began to count: with everything up to here acked, it joins the set in etcd. */
  joinAt: number;
  /** Its in-sync change is under way. */
  adding: boolean;
  /** Resolves when the stream ends. */
  closed: Promise<void>;
  close(): void;
}

interface Waiter {
  seq: number;
  at: number;
  resolve(): void;
  reject(err: MailError): void;
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
  private readonly followers = new Map<string, Follower>();
  /** In-sync replicas as last written to etcd (this member, the primary, not included). */
  private inSync = new Set<string>();
  private waiters: Waiter[] = [];
  /** In-sync changes, one at a time. */
  private changing: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private ticks = 0;
  private lastFailoverAt: number | undefined;
  /** Replica side: the stream to the primary followed now. */
  private following: { epoch: number; client: ReplicationClient; call: FollowClientCall } | undefined;
  private followRetry: NodeJS.Timeout | undefined;
  private readonly signal: LogSignal;
  private readonly onGroups = () => this.follow();

  constructor(private readonly options: ReplicationOptions) {
    this.signal = new LogSignal(options.store);
    options.leadership.on('elected', (epoch: number) => this.elected(epoch));
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
    this.follow();
  }

  async stop(): Promise<void> {
    this._state = 'stopping';
    clearInterval(this.timer);
    clearTimeout(this.followRetry);
    this.options.groups.off('change', this.onGroups);
    this.unfollow();
    for (const f of this.followers.values()) f.call.end();
    this.failWaiters(Replies.backendUnavailable(new Error('stopping')));
    this._state = 'stopped';
  }

  /** The store's durable hook: resolves once every in-sync replica has the entry on disk. */
  durable(seq: number): Promise<void> {
    if (this.options.leadership.writableEpoch() === undefined) return Promise.reject(Replies.notPrimary(this.options.group));
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ seq, at: Date.now(), resolve, reject });
      this.settle();
    });
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
      inSync: [this.options.node, ...this.inSync],
      lag: Object.fromEntries([...this.followers.values()].map((f) => [f.node, seq - f.acked])),
      seq,
      lastFailoverAt: this.lastFailoverAt,
    };
  }

  // ---- primary ---------------------------------------------------------------------------

  private elected(epoch: number): void {
    this.unfollow();
    this.options.store.epoch = epoch;
    // A group that had members before this one was elected failed over (or was handed over).
    if (this.options.groups.group(this.options.group)?.inSync?.length) this.lastFailoverAt = Date.now();
    this.inSync = new Set();
    void this.options.store.setReady().catch(() => undefined);
  }

  private demoted(): void {
    for (const f of this.followers.values()) refuse(f.call, grpc.status.FAILED_PRECONDITION, 'no longer the primary');
    this.followers.clear();
    this.inSync.clear();
    this.failWaiters(Replies.notPrimary(this.options.group));
    this.follow();
  }

  private failWaiters(err: MailError): void {
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) w.reject(err);
  }

  /** Resolves the writes every counted replica has acked. */
  private settle(): void {
    let min = Infinity;
    for (const f of this.followers.values()) if (f.counted) min = Math.min(min, f.acked);
    for (const node of this.inSync) if (!this.followers.get(node)?.counted) min = -1;
    if (!this.waiters.length) return;
    const left: Waiter[] = [];
    for (const w of this.waiters) (w.seq <= min ? w.resolve() : left.push(w));
    this.waiters = left;
  }

  private changeInSync(next: Set<string>): Promise<boolean> {
    const run = this.changing.then(async () => {
      const ok = await this.options.leadership.setInSync([this.options.node, ...next]);
      if (ok) {
        const added = [...next].filter((n) => !this.inSync.has(n));
        const removed = [...this.inSync].filter((n) => !next.has(n));
        this.inSync = next;
        this.options.log.info({ event: 'replication.in-sync', group: this.options.group, inSync: [this.options.node, ...next], added, removed }, 'in-sync set changed');
      }
      return ok;
    });
    this.changing = run.catch(() => false);
    return run;
  }

  /** Drops lagging or gone replicas from the in-sync set, adds caught-up ones, trims the log. */
  private watchdog(): void {
    if (this.options.leadership.epoch === undefined) return;
    if (++this.ticks % 8 === 0) void this.options.leadership.publish(this.status()).catch(() => undefined);
    const now = Date.now();
    const oldest = this.waiters.reduce((m, w) => Math.min(m, w.at), now);
    const lagging = [...this.inSync].filter((node) => {
      const f = this.followers.get(node);
      return !f || (now - oldest > this.options.maxLagMs() && this.waiters.some((w) => w.seq > f.acked));
    });
    if (lagging.length) {
      const next = new Set([...this.inSync].filter((n) => !lagging.includes(n)));
      this.changeInSync(next).then(
        (ok) => {
          if (!ok) return;
          for (const node of lagging) {
            const f = this.followers.get(node);
            if (f) this.uncount(f);
            this.options.log.warn({ event: 'replication.dropped', group: this.options.group, replica: node, acked: f?.acked }, 'replica left the in-sync set');
          }
          this.settle();
        },
        () => undefined,
      );
    }
    // One counted on its way to the set that falls behind stops holding writes up too.
    for (const f of this.followers.values()) {
      if (!f.counted || f.adding || this.inSync.has(f.node)) continue;
      if (now - oldest > this.options.maxLagMs() && this.waiters.some((w) => w.seq > f.acked)) {
        this.uncount(f);
        this.settle();
      }
    }
    // A write waiting this long is answered with a temporary failure (its sender retries; the key keeps one copy).
    const limit = now - Math.max(10_000, this.options.maxLagMs() * 3);
    if (this.waiters.some((w) => w.at < limit)) {
      const stale = this.waiters.filter((w) => w.at < limit);
      this.waiters = this.waiters.filter((w) => w.at >= limit);
      for (const w of stale) w.reject(Replies.timeout('replication'));
    }
  }

  /** Up to where the log may be trimmed: what every connected replica has, less `logRetain` entries. */
  trimPoint(): number {
    let upto = this.options.store.position().seq - this.options.logRetain();
    for (const f of this.followers.values()) upto = Math.min(upto, f.acked);
    return upto;
  }

  /**
   * A replica that has caught up with where the log was when it connected counts for
   * waiting writes from then on, so under steady writes it cannot stay one batch behind for
   * good. It joins the in-sync set in etcd (may be elected) only once it has also acked
   * everything written before it counted: every answered write is then on it.
   */
  private join(f: Follower): void {
    if (!f.counted) {
      if (f.acked < f.target) return;
      f.counted = true;
      f.joinAt = this.options.store.position().seq;
    }
    if (f.adding || this.inSync.has(f.node) || f.acked < f.joinAt) return;
    f.adding = true;
    this.changeInSync(new Set([...this.inSync, f.node])).then(
      (ok) => {
        f.adding = false;
        if (!ok && this.followers.get(f.node) === f) this.uncount(f);
        this.settle();
      },
      () => {
        f.adding = false;
        this.uncount(f);
        this.settle();
      },
    );
  }

  /** Writes stop waiting for it; it counts again once it has caught up with the log as it is now. */
  private uncount(f: Follower): void {
    f.counted = false;
    f.target = this.options.store.position().seq;
  }

  /** The Replication service: a replica's Follow stream. */
  service(): GrpcService {
    const handlers: ReplicationHandlers = {
      Follow: (call) => {
        let follower: Follower | undefined;
        const drop = () => {
          if (!follower) return;
          follower.close();
          if (this.followers.get(follower.node) === follower) {
            this.followers.delete(follower.node);
            follower.counted = false;
          }
        };
        call.on('error', drop);
        call.on('close', drop);
        call.on('cancelled', drop);
        call.on('end', drop);
        call.on('data', (req: FollowRequest__Output) => {
          if (!follower) {
            follower = this.accept(call, req);
            return;
          }
          follower.acked = Math.max(follower.acked, Number(req.flushed));
          this.join(follower);
          this.settle();
        });
      },
    };
    return { name: 'Replication', definition: proto.Replication.service, handlers: handlers as never };
  }

  private accept(call: Follower['call'], req: FollowRequest__Output): Follower | undefined {
    const epoch = this.options.leadership.epoch;
    if (epoch === undefined || Number(req.epoch) !== epoch) {
      refuse(call, grpc.status.FAILED_PRECONDITION, `epoch ${req.epoch} is not current here (${epoch ?? 'not the primary'})`);
      return undefined;
    }
    const old = this.followers.get(req.node);
    if (old) refuse(old.call, grpc.status.ABORTED, 'replaced by a new stream');
    const at = { seq: Number(req.lastSeq), epoch: Number(req.lastEpoch) };
    let close!: () => void;
    const closed = new Promise<void>((resolve) => (close = resolve));
    const f: Follower = { node: req.node, call, acked: 0, counted: false, target: this.options.store.position().seq, joinAt: Infinity, adding: false, closed, close };
    this.followers.set(req.node, f);
    void this.ship(f, epoch, at).then(
      () => call.end(),
      (err) => {
        this.options.log.warn({ event: 'replication.ship-failed', replica: f.node, err: (err as Error).message }, 'replica stream ended');
        refuse(call, grpc.status.UNAVAILABLE, (err as Error).message);
      },
    );
    return f;
  }

  /** Streams to one replica: a full copy if this log cannot continue its own, then the log. */
  private ship(f: Follower, epoch: number, at: LogPosition): Promise<void> {
    return shipLog({
      source: this.options.store,
      signal: this.signal,
      call: f.call,
      epoch,
      from: at,
      open: () => this.followers.get(f.node) === f && this.options.leadership.epoch === epoch,
      closed: f.closed,
      onCopy: (base) => this.options.log.info({ event: 'replication.copy', replica: f.node, from: at, base }, 'replica needs a full copy'),
      onCaughtUp: (acked) => {
        f.acked = acked;
        this.join(f);
      },
    });
  }

  // ---- replica ---------------------------------------------------------------------------

  /** Follows the elected primary (if it is another member), marking the data ready once this member is in sync. */
  private follow(): void {
    if (this._state !== 'running' || this.options.leadership.epoch !== undefined) return;
    const g = this.options.groups.group(this.options.group);
    const leader = g?.leader;
    if (this.following && this.following.epoch === leader?.epoch) {
      if (g?.inSync?.includes(this.options.node)) void this.options.store.setReady().catch(() => undefined);
      return;
    }
    this.unfollow();
    if (!leader || leader.id === this.options.node) return;
    const client = createReplicationClient(leader.address);
    const call = client.Follow() as unknown as FollowClientCall;
    const following = { epoch: leader.epoch, client, call };
    this.following = following;
    const pos = this.options.store.position();
    call.write({ node: this.options.node, epoch: leader.epoch, lastSeq: pos.seq, lastEpoch: pos.epoch });
    this.options.log.info({ event: 'replication.following', primary: leader.id, epoch: leader.epoch, from: pos }, 'following the primary');
    void this.receive(following).then(
      () => this.retryFollow(following),
      (err) => {
        if (this.following === following)
          this.options.log.warn({ event: 'replication.follow-failed', primary: leader.id, err: (err as Error).message }, 'stream from the primary ended');
        this.retryFollow(following);
      },
    );
  }

  private retryFollow(following: NonNullable<GroupReplication['following']>): void {
    if (this.following !== following) return;
    this.unfollow();
    clearTimeout(this.followRetry);
    this.followRetry = setTimeout(() => this.follow(), 500);
  }

  private unfollow(): void {
    const f = this.following;
    this.following = undefined;
    if (!f) return;
    f.call.cancel();
    f.client.close();
  }

  private receive(following: NonNullable<GroupReplication['following']>): Promise<void> {
    const { store, groups, group, node } = this.options;
    return receiveLog({
      copy: store,
      call: following.call,
      epoch: following.epoch,
      still: () => this.following === following,
      after: async () => {
        if (groups.group(group)?.inSync?.includes(node)) await store.setReady();
      },
    });
  }
}
