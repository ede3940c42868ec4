import type { Service, ServiceState } from '@mailgrid/core';
import type { MemberEntry } from './cluster-snapshots.js';

/**
 * What the dashboard shows, as `/api/cluster` serves it: the cluster as the node serving the
 * page sees it (its own watches of etcd, or a single node's view of itself).
 */

/** ok; warn (see `notes`); draining (stopping, leaves at once); gone (its lease lapsed or it left, kept a while). */
export type MemberHealth = 'ok' | 'warn' | 'draining' | 'gone';

/** A member as the page shows it: its entry, its place in its group, and its health. */
export interface MemberRow extends Omit<MemberEntry, 'groupRole' | 'state' | 'countedAt' | 'epoch'> {
  place?: 'primary' | 'replica';
  state: 'up' | 'draining' | 'gone';
  /** When a gone member was last seen live. */
  goneAt?: number;
  health: MemberHealth;
  /** Why the health is `warn`. */
  notes: string[];
}

export interface GroupRow {
  name: string;
  primary?: string;
  epoch?: number;
  /** The members that may be elected (the primary and the replicas that have every write). */
  inSync: string[];
  /** Each replica's lag behind the primary, in log entries, as the primary last published it. */
  lag: Record<string, number>;
  /** The group's live backends. */
  members: string[];
  lastFailoverAt?: number;
}

export interface FailoverRow {
  group: string;
  at: number;
  /** The primary elected, and the one before it (when known). */
  to: string;
  from?: string;
  epoch: number;
}

/** Messages per second over the interval that ends at `at`, summed over the members. */
export interface ThroughputSample {
  at: number;
  accepted: number;
  delivered: number;
}

/** The cluster's state as a snapshot builder makes it. */
export interface ClusterView {
  /** The node that made it (the one serving the page). */
  node: string;
  at: number;
  members: MemberRow[];
  groups: GroupRow[];
  /** The queue takers: live members in local-for-others mode with room that offer Submit. */
  takers: string[];
  /** Oldest first, one sample every few seconds over the last 10 minutes. */
  throughput: ThroughputSample[];
  /** Newest first. */
  failovers: FailoverRow[];
}

/** What `/api/cluster` answers: the view, and what the page may offer an operator. */
export interface ClusterSnapshot extends ClusterView {
  /** An admin token is configured on this node: an operator who has it may change settings. */
  admin: boolean;
  /** The live settings this node can set (empty: it cannot set any, e.g. a single node). */
  settable: string[];
}

/** A source's counters as it read them at `at` (ms). */
export interface CounterReading {
  id: string;
  accepted: number;
  delivered: number;
  at: number;
}

/**
 * The throughput chart's data: a ring of samples (10 minutes by default), each the sum of
 * every source's rate. A source's rate is taken between two of its readings (its counters and
 * when it read them): a member publishes its counters with its membership entry every 10 s,
 * so its rate holds for that long; the node serving the page reads its own at every sample.
 * A counter that went down belongs to a restarted source: its new value is what it counted.
 * A source with no new reading for `staleMs` counts 0; one no longer listed is forgotten.
 */
export class ThroughputRing {
  private readonly samples: ThroughputSample[] = [];
  private readonly sources = new Map<string, { last: CounterReading; accepted: number; delivered: number }>();

  constructor(
    private readonly keepMs = 10 * 60_000,
    private readonly staleMs = 25_000,
  ) {}

  /** Takes one sample at `now` from every source's latest reading. */
  sample(now: number, readings: CounterReading[]): ThroughputSample {
    const seen = new Set<string>();
    let accepted = 0;
    let delivered = 0;
    for (const r of readings) {
      seen.add(r.id);
      const s = this.sources.get(r.id);
      if (!s) {
        this.sources.set(r.id, { last: r, accepted: 0, delivered: 0 });
        continue;
      }
      if (r.at > s.last.at) {
        const secs = (r.at - s.last.at) / 1000;
        const delta = (value: number, before: number) => (value >= before ? value - before : value);
        s.accepted = delta(r.accepted, s.last.accepted) / secs;
        s.delivered = delta(r.delivered, s.last.delivered) / secs;
        s.last = r;
      }
      if (now - s.last.at > this.staleMs) continue;
      accepted += s.accepted;
      delivered += s.delivered;
    }
    for (const id of [...this.sources.keys()]) if (!seen.has(id)) this.sources.delete(id);
    const sample = { at: now, accepted: round(accepted), delivered: round(delivered) };
    this.samples.push(sample);
    while (this.samples.length && this.samples[0].at < now - this.keepMs) this.samples.shift();
    return sample;
  }

  list(): ThroughputSample[] {
    return [...this.samples];
  }
}

const round = (n: number) => Math.round(n * 100) / 100;

/** Samples a ring every `everyMs` from `readings`: a node's own counters (the single node), or every member's (a cluster member's ClusterSnapshots). */
export class ThroughputSampler implements Service {
  readonly name = 'throughput';
  private _state: ServiceState = 'new';
  private readonly ring = new ThroughputRing();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly readings: (now: number) => CounterReading[],
    private readonly everyMs = 2_000,
  ) {}

  get state(): ServiceState {
    return this._state;
  }

  async start(): Promise<void> {
    this._state = 'running';
    this.sample();
    this.timer = setInterval(() => this.sample(), this.everyMs);
    this.timer.unref();
  }

  /** One sample now (the timer takes one every `everyMs`). */
  sample(now = Date.now()): void {
    this.ring.sample(now, this.readings(now));
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this._state = 'stopped';
  }

  list(): ThroughputSample[] {
    return this.ring.list();
  }
}
