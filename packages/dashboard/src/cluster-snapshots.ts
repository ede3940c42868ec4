import type { Service, ServiceState } from '@mailgrid/core';
import { ThroughputSampler, type ClusterView, type CounterReading, type FailoverRow, type GroupRow, type MemberRow } from './snapshot.js';

/** What the dashboard reads of a member's entry (the cluster's membership entry, or a single node's own). */
export interface MemberEntry {
  id: string;
  /** frontend, backend, or single (`mailgrid start`). */
  role: string;
  site: string;
  /** A backend's hosting group, and its place in it. */
  group?: string;
  groupRole?: 'primary' | 'replica';
  state: 'up' | 'draining';
  /** Its effective submit mode (auto resolved). */
  submitMode?: string;
  queueDepth?: number;
  queueOldestAt?: number;
  /** Listed as a queue taker. */
  takes?: boolean;
  /** Its queue partner, and the nodes whose copy of its queue has every answered write (empty: unprotected). */
  partner?: string;
  copies?: string[];
  /** Messages acknowledged and recipients stored since it started, as last published, and when they were read (ms). */
  accepted?: number;
  delivered?: number;
  countedAt?: number;
  /** Its registration (the etcd create revision): a member back after a restart counts anew. */
  epoch?: number;
  /** Its HTTP address (`host:port`): every node serves the dashboard. */
  http?: string;
  startedAt?: string;
}

/** What the dashboard reads of a hosting group. */
export interface GroupEntry {
  name: string;
  leader?: { id: string; epoch: number };
  inSync?: string[];
  status?: { epoch: number; lag: Record<string, number>; failovers?: { at: number; epoch: number; to: string; from?: string }[] };
}

export interface ClusterSnapshotsOptions {
  node: string;
  /** The live members, and a `change` event when the list changes (a cluster member's Membership; a single node's one entry). */
  membership: { members(): MemberEntry[]; on(event: 'change', listener: () => void): unknown; off(event: 'change', listener: () => void): unknown };
  groups: { list(): GroupEntry[] };
  /** The queue takers among the members, by id. */
  takers: (members: MemberEntry[]) => string[];
  /** This node's own counters, read live (the others' come with their membership entries). */
  counters: () => { accepted: number; delivered: number };
  /** This node's own run-time fields (queue, submit mode, partner), read live: its published entry may be 10 s old. */
  describe?: () => Partial<MemberEntry>;
  sampleEveryMs?: number;
  /** How long a member that left is still shown, as gone. */
  keepGoneMs?: number;
}

/**
 * The dashboard's view of the cluster from this member's own watches of etcd: members with
 * their role, site, submit mode, health and queue; hosting groups with their primary, in-sync
 * set and lag; queue takers and partners; the failovers each group's primaries carried over
 * in its status; and the throughput, sampled every 2 s into a 10-minute ring from the counters
 * members publish. Members that left stay listed as gone for a while (10 minutes).
 */
export class ClusterSnapshots implements Service {
  readonly name = 'dashboard';
  private _state: ServiceState = 'new';
  private readonly throughput: ThroughputSampler;
  /** Members as last seen live, and those seen leave since. */
  private seen = new Map<string, MemberEntry>();
  private readonly gone = new Map<string, { info: MemberEntry; at: number }>();
  private readonly onChange = () => this.track();

  constructor(private readonly options: ClusterSnapshotsOptions) {
    this.throughput = new ThroughputSampler((now) => this.readings(now), options.sampleEveryMs);
  }

  get state(): ServiceState {
    return this._state;
  }

  async start(): Promise<void> {
    this._state = 'running';
    this.options.membership.on('change', this.onChange);
    await this.throughput.start();
  }

  async stop(): Promise<void> {
    await this.throughput.stop();
    this.options.membership.off('change', this.onChange);
    this._state = 'stopped';
  }

  /** One throughput sample (the sampler takes one every 2 s). */
  sample(now = Date.now()): void {
    this.throughput.sample(now);
  }

  /** This node's counters now, the others' as they last published them. */
  private readings(now: number): CounterReading[] {
    const readings: CounterReading[] = [];
    for (const m of this.track(now)) {
      if (m.id === this.options.node) readings.push({ id: m.id, ...this.options.counters(), at: now });
      else if (m.accepted !== undefined && m.delivered !== undefined && m.countedAt !== undefined)
        readings.push({ id: `${m.id}/${m.epoch ?? 0}`, accepted: m.accepted, delivered: m.delivered, at: m.countedAt });
    }
    return readings;
  }

  view(now = Date.now()): ClusterView {
    const members = this.track(now);
    const groups = this.options.groups.list();
    const own = (m: MemberEntry): MemberEntry => ({ ...m, ...this.options.describe?.(), ...this.options.counters() });
    const live = members.map((m) => memberRow(m.id === this.options.node ? own(m) : m, groups));
    const left = [...this.gone.values()].map(({ info, at }) => ({ ...memberRow(info, groups), state: 'gone' as const, health: 'gone' as const, notes: [], goneAt: at }));
    const order = (a: MemberRow, b: MemberRow) => a.role.localeCompare(b.role) || (a.group ?? '').localeCompare(b.group ?? '') || a.id.localeCompare(b.id);
    return {
      node: this.options.node,
      at: now,
      members: [...live, ...left].sort(order),
      groups: groups.map((g) => groupRow(g, members)),
      takers: this.options.takers(members).sort(),
      throughput: this.throughput.list(),
      failovers: groups
        .flatMap((g) => (g.status?.failovers ?? []).map((f): FailoverRow => ({ group: g.name, ...f })))
        .sort((a, b) => b.at - a.at),
    };
  }

  /** The live members; a member no longer listed is gone from now (forgotten after `keepGoneMs`, or when it is back). */
  private track(now = Date.now()): MemberEntry[] {
    const members = this.options.membership.members();
    const next = new Map(members.map((m) => [m.id, m]));
    for (const [id, info] of this.seen) if (!next.has(id) && !this.gone.has(id)) this.gone.set(id, { info, at: now });
    for (const id of next.keys()) this.gone.delete(id);
    const keep = this.options.keepGoneMs ?? 10 * 60_000;
    for (const [id, g] of this.gone) if (now - g.at > keep) this.gone.delete(id);
    this.seen = next;
    return members;
  }
}

function memberRow(m: MemberEntry, groups: GroupEntry[]): MemberRow {
  const notes: string[] = [];
  if (m.role === 'backend' && m.group) {
    const g = groups.find((x) => x.name === m.group);
    if (!g?.leader) notes.push('its group has no primary');
    else if (m.groupRole === 'replica' && !g.inSync?.includes(m.id)) notes.push('not in sync');
  }
  if (m.partner !== undefined && !m.copies?.length) notes.push('queue unprotected');
  if (m.submitMode === 'local-for-others' && m.takes === false) notes.push('queue full');
  return {
    id: m.id,
    role: m.role,
    site: m.site,
    group: m.group,
    place: m.groupRole,
    state: m.state,
    submitMode: m.submitMode,
    queueDepth: m.queueDepth,
    queueOldestAt: m.queueOldestAt,
    takes: m.takes,
    partner: m.partner,
    copies: m.copies,
    accepted: m.accepted,
    delivered: m.delivered,
    http: m.http,
    startedAt: m.startedAt,
    health: m.state === 'draining' ? 'draining' : notes.length ? 'warn' : 'ok',
    notes,
  };
}

function groupRow(g: GroupEntry, members: MemberEntry[]): GroupRow {
  // The lag is the current primary's; a status left by an earlier one says nothing of now.
  const status = g.status && g.status.epoch === g.leader?.epoch ? g.status : undefined;
  return {
    name: g.name,
    primary: g.leader?.id,
    epoch: g.leader?.epoch,
    inSync: g.inSync ?? [],
    lag: status?.lag ?? {},
    members: members.filter((m) => (m.role === 'backend' || m.role === 'single') && m.group === g.name).map((m) => m.id).sort(),
    lastFailoverAt: g.status?.failovers?.at(-1)?.at,
  };
}
