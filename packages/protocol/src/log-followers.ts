import * as grpc from '@grpc/grpc-js';
import { Replies, type Logger, type MailError } from '@mailgrid/core';
import { LogSignal, receiveLog, refuseFollower as refuse, shipLog, type FollowCall, type FollowClientCall, type LogCopy, type LogSource, type Position } from './log-shipping.js';
import type { FollowRequest__Output } from './types.js';

/** A follower's stream as the shipping side keeps it. */
interface Follower {
  node: string;
  call: FollowCall;
  /** The last seq it has on disk. */
  acked: number;
  /** Counted by waiting writes: in the set, or on its way there. */
  counted: boolean;
  /** It counts once it has acked this far: the log's end when it connected (or last fell behind). */
  target: number;
  /** The log's end when it began to count: with everything up to here acked, it joins the set in etcd. */
  joinAt: number;
  /** Its set change is under way. */
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

export interface LogFollowersOptions {
  source: LogSource;
  /** For logs and events: `replication`, `queue-copy`. */
  name: string;
  /** The epoch streams are accepted and shipped in; undefined: none now (not the primary, not registered). */
  epoch(): number | undefined;
  /** Why this follower is not served (wrong store, not this log's partner); undefined serves it. */
  refusal?(req: FollowRequest__Output): string | undefined;
  /**
   * Writes the set of followers that have every answered write (the others than this node),
   * in etcd, fenced by the epoch; false when the fence did not hold.
   */
  writeSet(nodes: string[]): Promise<boolean>;
  /** A counted follower that leaves a write waiting this long leaves the set. */
  maxLagMs(): number;
  log: Logger;
}

/**
 * The shipping side of a synchronously followed log (a hosting group's primary and its
 * replicas, a queue and its partner copy).
 *
 * Every write waits (`durable`) until each member of the set has acked its log entry as
 * flushed. A follower that has acked everything written so far counts for waiting writes
 * from then on and is added to the set in etcd. One whose stream breaks, or that leaves a
 * write waiting longer than `maxLagMs`, is removed from the set in etcd first, and only then
 * stops being waited for: a member of the set has every answered write.
 */
export class LogFollowers {
  private readonly followers = new Map<string, Follower>();
  /** The set as last written to etcd. */
  private set = new Set<string>();
  private waiters: Waiter[] = [];
  /** Set changes, one at a time. */
  private changing: Promise<unknown> = Promise.resolve();
  private readonly signal: LogSignal;

  constructor(private readonly options: LogFollowersOptions) {
    this.signal = new LogSignal(options.source);
  }

  /** Resolves once every member of the set has the entry on disk. */
  durable(seq: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ seq, at: Date.now(), resolve, reject });
      this.settle();
    });
  }

  /** The set as last written (this node not included). */
  members(): string[] {
    return [...this.set];
  }

  /** The followers connected now. */
  connected(): string[] {
    return [...this.followers.keys()];
  }

  /** The set as etcd had it when this node last stopped: writes wait for those until they are back or dropped. */
  load(nodes: string[]): void {
    this.set = new Set(nodes);
  }

  /** How far each connected follower is behind the log's end. */
  lag(): Record<string, number> {
    const seq = this.options.source.position().seq;
    return Object.fromEntries([...this.followers.values()].map((f) => [f.node, seq - f.acked]));
  }

  /** Starts over with an empty set (a new epoch: the set was written empty with it). */
  reset(): void {
    this.set = new Set();
  }

  /** Ends every stream and fails every waiting write with `err`. */
  end(err: MailError, code = grpc.status.FAILED_PRECONDITION): void {
    for (const f of this.followers.values()) refuse(f.call, code, err.message);
    this.followers.clear();
    this.set.clear();
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) w.reject(err);
  }

  /** Removes these from the set (in etcd first) and ends their streams. */
  async drop(nodes: string[], why: string): Promise<void> {
    const leaving = nodes.filter((n) => this.set.has(n) || this.followers.has(n));
    if (!leaving.length) return;
    if (leaving.some((n) => this.set.has(n)) && !(await this.changeSet(new Set([...this.set].filter((n) => !leaving.includes(n)))))) return;
    for (const node of leaving) {
      const f = this.followers.get(node);
      if (!f) continue;
      this.followers.delete(node);
      refuse(f.call, grpc.status.FAILED_PRECONDITION, why);
    }
    this.settle();
  }

  /** Up to where the log may be trimmed: what every connected follower has, less `retain` entries; nothing while a set member is away. */
  trimPoint(retain: number): number {
    // A member of the set that is away (etcd could not be told yet) catches up from the log.
    if ([...this.set].some((n) => !this.followers.has(n))) return 0;
    let upto = this.options.source.position().seq - retain;
    for (const f of this.followers.values()) upto = Math.min(upto, f.acked);
    return upto;
  }

  /** Resolves the writes every counted follower has acked. */
  private settle(): void {
    let min = Infinity;
    for (const f of this.followers.values()) if (f.counted) min = Math.min(min, f.acked);
    for (const node of this.set) if (!this.followers.get(node)?.counted) min = -1;
    if (!this.waiters.length) return;
    const left: Waiter[] = [];
    for (const w of this.waiters) (w.seq <= min ? w.resolve() : left.push(w));
    this.waiters = left;
  }

  private changeSet(next: Set<string>): Promise<boolean> {
    const run = this.changing.then(async () => {
      const ok = await this.options.writeSet([...next]);
      if (ok) {
        const added = [...next].filter((n) => !this.set.has(n));
        const removed = [...this.set].filter((n) => !next.has(n));
        this.set = next;
        this.options.log.info({ event: `${this.options.name}.set`, set: [...next], added, removed }, 'set of followers with every write changed');
      }
      return ok;
    });
    this.changing = run.catch(() => false);
    return run;
  }

  /** Times out stale writes; drops lagging or gone followers from the set; stops waiting for laggards on their way to it. Every 250 ms or so. */
  watchdog(): void {
    const now = Date.now();
    // A write waiting this long is answered with a temporary failure (its sender retries; the key keeps one copy).
    const limit = now - Math.max(10_000, this.options.maxLagMs() * 3);
    if (this.waiters.some((w) => w.at < limit)) {
      const stale = this.waiters.filter((w) => w.at < limit);
      this.waiters = this.waiters.filter((w) => w.at >= limit);
      for (const w of stale) w.reject(Replies.timeout(this.options.name));
    }
    if (this.options.epoch() === undefined) return;
    const oldest = this.waiters.reduce((m, w) => Math.min(m, w.at), now);
    const holdsUp = (f: Follower) => now - oldest > this.options.maxLagMs() && this.waiters.some((w) => w.seq > f.acked);
    const lagging = [...this.set].filter((node) => {
      const f = this.followers.get(node);
      return !f || holdsUp(f);
    });
    if (lagging.length) {
      this.changeSet(new Set([...this.set].filter((n) => !lagging.includes(n)))).then(
        (ok) => {
          if (!ok) return;
          for (const node of lagging) {
            const f = this.followers.get(node);
            if (f) this.uncount(f);
            this.options.log.warn({ event: `${this.options.name}.dropped`, follower: node, acked: f?.acked }, 'follower left the set');
          }
          this.settle();
        },
        () => undefined,
      );
    }
    // One counted on its way to the set that falls behind stops holding writes up too.
    for (const f of this.followers.values()) {
      if (!f.counted || f.adding || this.set.has(f.node)) continue;
      if (holdsUp(f)) {
        this.uncount(f);
        this.settle();
      }
    }
  }

  /**
   * A follower that has caught up with where the log was when it connected counts for
   * waiting writes from then on, so under steady writes it cannot stay one batch behind for
   * good. It joins the set in etcd only once it has also acked everything written before
   * it counted: every answered write is then on it.
   */
  private join(f: Follower): void {
    if (!f.counted) {
      if (f.acked < f.target) return;
      f.counted = true;
      f.joinAt = this.options.source.position().seq;
    }
    if (f.adding || this.set.has(f.node) || f.acked < f.joinAt) return;
    f.adding = true;
    this.changeSet(new Set([...this.set, f.node])).then(
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
    f.target = this.options.source.position().seq;
  }

  /** The Follow handler: a follower's stream. */
  follow(call: FollowCall): void {
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
  }

  private accept(call: FollowCall, req: FollowRequest__Output): Follower | undefined {
    const epoch = this.options.epoch();
    if (epoch === undefined || Number(req.epoch) !== epoch) {
      refuse(call, grpc.status.FAILED_PRECONDITION, `epoch ${req.epoch} is not current here (${epoch ?? 'none'})`);
      return undefined;
    }
    const why = this.options.refusal?.(req);
    if (why) {
      refuse(call, grpc.status.FAILED_PRECONDITION, why);
      return undefined;
    }
    const old = this.followers.get(req.node);
    if (old) refuse(old.call, grpc.status.ABORTED, 'replaced by a new stream');
    const at = { seq: Number(req.lastSeq), epoch: Number(req.lastEpoch) };
    let close!: () => void;
    const closed = new Promise<void>((resolve) => (close = resolve));
    const f: Follower = { node: req.node, call, acked: 0, counted: false, target: this.options.source.position().seq, joinAt: Infinity, adding: false, closed, close };
    this.followers.set(req.node, f);
    void this.ship(f, epoch, at).then(
      () => call.end(),
      (err) => {
        this.options.log.warn({ event: `${this.options.name}.ship-failed`, follower: f.node, err: (err as Error).message }, 'follower stream ended');
        refuse(call, grpc.status.UNAVAILABLE, (err as Error).message);
      },
    );
    return f;
  }

  /** Streams to one follower: a full copy if this log cannot continue its own, then the log. */
  private ship(f: Follower, epoch: number, at: Position): Promise<void> {
    return shipLog({
      source: this.options.source,
      signal: this.signal,
      call: f.call,
      epoch,
      from: at,
      open: () => this.followers.get(f.node) === f && this.options.epoch() === epoch,
      closed: f.closed,
      onCopy: (base) => this.options.log.info({ event: `${this.options.name}.copy`, follower: f.node, from: at, base }, 'follower needs a full copy'),
      onCaughtUp: (acked) => {
        f.acked = acked;
        this.join(f);
      },
    });
  }

  /** Ends every stream (stopping). */
  close(): void {
    for (const f of this.followers.values()) f.call.end();
  }
}

/** Where a follower follows a log from: a member's gRPC address, and the epoch it is followed in. */
export interface LogTarget {
  address: string;
  epoch: number;
}

export interface LogFollowerOptions {
  /** The log this node keeps: a replica's store, a partner's copy of a queue. */
  copy: LogCopy;
  /** This node, as the shipping side knows it. */
  node: string;
  /** For logs and events: `replication`, `queue-copy`. */
  name: string;
  /** Opens the Follow stream to a target's address (the Replication or the QueueCopy service). */
  open(address: string): { call: FollowClientCall; close(): void };
  /** The identity of the store followed, when the shipping side checks it (a queue store). */
  source?: string;
  /** After each ack (a replica marks itself ready once in sync). */
  after?: () => Promise<void>;
  /** A stream that ended is not opened again for this long. */
  retryMs: number;
  /** Heard when a stream ended (it is not opened again by itself). */
  ended?: (err?: Error) => void;
  log: Logger;
}

/**
 * The following side of a synchronously followed log (a replica following its primary, a
 * queue partner following the queue it copies): one stream at a time, to the target it was
 * last told; a new epoch replaces the stream, and one that ended is opened again only when
 * told to follow after `retryMs`. What it receives is applied to `copy` and acked once on
 * disk (`receiveLog`).
 */
export class LogFollower {
  private stream: { target: LogTarget; call: FollowClientCall; close(): void; received: Promise<void> } | undefined;
  /** The target whose stream ended last, and when it may be opened again. */
  private ended: { target: LogTarget; retryAt: number } | undefined;

  constructor(private readonly options: LogFollowerOptions) {}

  /** The target followed now, if a stream is open. */
  get following(): LogTarget | undefined {
    return this.stream?.target;
  }

  /**
   * Follows `target`: nothing if its stream is open, else a new stream in its epoch (not
   * within `retryMs` of the same target's stream ending). True when a stream was opened.
   */
  follow(target: LogTarget): boolean {
    if (this.stream && same(this.stream.target, target)) return false;
    void this.stop();
    if (this.ended && same(this.ended.target, target) && Date.now() < this.ended.retryAt) return false;
    const { call, close } = this.options.open(target.address);
    const stream: NonNullable<LogFollower['stream']> = { target, call, close, received: Promise.resolve() };
    this.stream = stream;
    const still = () => this.stream === stream;
    const ended = (err?: Error) => {
      if (!still()) return;
      void this.stop();
      this.ended = { target, retryAt: Date.now() + this.options.retryMs };
      if (err) this.options.log.debug({ event: `${this.options.name}.follow-ended`, address: target.address, err: err.message }, 'stream ended');
      this.options.ended?.(err);
    };
    stream.received = receiveLog({ copy: this.options.copy, call, node: this.options.node, epoch: target.epoch, source: this.options.source, still, after: this.options.after }).then(
      () => ended(),
      (err) => ended(err as Error),
    );
    return true;
  }

  /** Ends the stream; resolves once nothing more of it is applied (a takeover claims what is on disk then). */
  async stop(): Promise<void> {
    const s = this.stream;
    this.stream = undefined;
    if (!s) return;
    s.call.cancel();
    s.close();
    await s.received;
  }
}

const same = (a: LogTarget, b: LogTarget) => a.epoch === b.epoch && a.address === b.address;
