import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, register, type MetricObjectWithValues, type MetricValue } from 'prom-client';

/**
 * The node's Prometheus metrics, served at `/metrics` on its HTTP port (prom-client's
 * default registry). Names follow Prometheus conventions; every one is described in
 * docs/metrics.md. Gauges of state (queue depth, replication, lease) are read when scraped,
 * from the sources a role registers with `metrics.observe`.
 */
const sources = {
  queue: [] as (() => { messages: number; bytes: number; oldestAt?: number })[],
  replication: [] as (() => { group: string; primary: boolean; epoch: number; inSync: number; lag: Record<string, number> } | undefined)[],
  lease: [] as (() => boolean)[],
  diskGuards: [] as { guard: string; active: () => boolean }[],
};

const replyTally = new Map<string, number>();

/** Messages a node acknowledged and recipients it stored, as plain numbers too: the dashboard's throughput, published with the membership entry. */
export const totals = { accepted: 0, delivered: 0 };

const counter = <T extends string>(name: string, help: string, labelNames: readonly T[] = []) => new Counter<T>({ name, help, labelNames });

export const metrics = {
  registry: register,

  /** Sessions of every access protocol, by the registry's names (`smtp`, `submission`, `submissions`, `pop3`, `pop3s`, ...). */
  sessions: counter('mailgrid_sessions_total', 'Access sessions started (connections handed to a protocol), by protocol and listener', ['protocol', 'listener']),
  sessionsActive: new Gauge({ name: 'mailgrid_sessions_active', help: 'Access sessions open now, by protocol and listener', labelNames: ['protocol', 'listener'] }),
  /** Every reply line a frontend sent, by its class (2xx, 3xx, 4xx, 5xx): tallied where smtp-server sends it (`countReply`), added up when scraped. */
  smtpReplies: new Counter({
    name: 'mailgrid_smtp_replies_total',
    help: 'SMTP replies sent, by listener and code class (2xx, 3xx, 4xx, 5xx)',
    labelNames: ['listener', 'class'],
    collect() {
      for (const [key, n] of replyTally) {
        const [listener, cls] = key.split(' ');
        this.inc({ listener, class: cls }, n);
      }
      replyTally.clear();
    },
  }),
  /** One SMTP reply sent: a plain count (a counter's inc on every reply was a percent of the MX path's CPU). */
  countReply(listener: string, code: number): void {
    const key = `${listener} ${Math.floor(code / 100)}xx`;
    replyTally.set(key, (replyTally.get(key) ?? 0) + 1);
  },

  accepted: counter('mailgrid_messages_accepted_total', 'Messages acknowledged (250 after DATA, or a Submit hand-over), by where they came in', ['listener']),
  delivered: counter('mailgrid_messages_delivered_total', "Recipients stored in their mailbox at their group's primary"),
  relayed: counter('mailgrid_messages_relayed_total', 'Recipients handed to another mail server (an MX, the smarthost) that took them'),
  bounced: counter('mailgrid_messages_bounced_total', 'Recipients given up on (a permanent failure, or the queue lifetime passed)', ['reason']),
  deliveryDuration: new Histogram({
    name: 'mailgrid_delivery_duration_seconds',
    help: 'From a message coming in to a recipient being stored (local) or taken by the next server (remote)',
    labelNames: ['route'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 900, 3600, 14400, 86400],
  }),

  queueMessages: new Gauge({ name: 'mailgrid_queue_messages', help: "Messages in this node's durable queue", collect() { this.set(sum(sources.queue, (q) => q().messages)); } }),
  queueBytes: new Gauge({ name: 'mailgrid_queue_bytes', help: "Bytes of message bodies in this node's durable queue", collect() { this.set(sum(sources.queue, (q) => q().bytes)); } }),
  queueOldestAge: new Gauge({
    name: 'mailgrid_queue_oldest_age_seconds',
    help: "Age of the oldest message in this node's queue (0 when empty)",
    collect() {
      const oldest = Math.min(...sources.queue.map((q) => q().oldestAt ?? Infinity));
      this.set(Number.isFinite(oldest) ? Math.max(0, (Date.now() - oldest) / 1000) : 0);
    },
  }),
  /** 1 while a partner's copy has every message acknowledged into this node's queue, 0 while unprotected. */
  queueProtected: new Gauge({ name: 'mailgrid_queue_protected', help: "1 while a queue partner's copy has every acknowledged message of this node's queue, else 0" }),

  groupPrimary: new Gauge({
    name: 'mailgrid_group_primary',
    help: "1 while this backend is its hosting group's elected primary, 0 while a replica",
    labelNames: ['group'],
    collect() {
      this.reset();
      for (const r of replications()) this.set({ group: r.group }, r.primary ? 1 : 0);
    },
  }),
  replicationEpoch: new Gauge({
    name: 'mailgrid_replication_epoch',
    help: 'The epoch (etcd revision of the election) this backend follows or leads in',
    labelNames: ['group'],
    collect() {
      this.reset();
      for (const r of replications()) this.set({ group: r.group }, r.epoch);
    },
  }),
  replicationInSync: new Gauge({
    name: 'mailgrid_replication_in_sync_members',
    help: "Members of the group's in-sync set (the primary and the replicas that have every write), as the primary sees it",
    labelNames: ['group'],
    collect() {
      this.reset();
      for (const r of replications()) if (r.primary) this.set({ group: r.group }, r.inSync);
    },
  }),
  replicationLag: new Gauge({
    name: 'mailgrid_replication_lag_entries',
    help: 'Log entries a replica is behind its primary (reported by the primary)',
    labelNames: ['group', 'replica'],
    collect() {
      this.reset();
      for (const r of replications()) for (const [replica, lag] of Object.entries(r.lag)) this.set({ group: r.group, replica }, lag);
    },
  }),
  failovers: counter('mailgrid_failovers_total', 'Times this backend took over as primary from another member of its group', ['group']),

  leaseHeld: new Gauge({
    name: 'mailgrid_lease_held',
    help: "1 while this node's membership lease in etcd is held (it is a live member), else 0",
    collect() {
      if (sources.lease.length) this.set(sources.lease.every((held) => held()) ? 1 : 0);
    },
  }),
  leaseLost: counter('mailgrid_lease_lost_total', "Times this node's membership lease was lost (etcd unreachable past the TTL); it registers again"),
  diskGuardActive: new Gauge({
    name: 'mailgrid_disk_guard_active',
    help: '1 while a store refuses mail because its disk is below the free-space floor (452 4.3.1)',
    labelNames: ['guard'],
    collect() {
      this.reset();
      for (const g of sources.diskGuards) this.set({ guard: g.guard }, g.active() ? 1 : 0);
    },
  }),

  /** Successful logins a frontend had checked, answered from the group's credential cache (`hit`) or with a slow hash (`miss`). */
  authCache: counter('mailgrid_auth_cache_lookups_total', "Successful logins, checked from the owning group's credential cache (hit) or by hashing (miss)", ['result']),
  /** Failed logins a frontend answered (every access protocol), and logins refused because the client address was locked out. */
  authFailures: counter('mailgrid_auth_failures_total', 'Failed logins (wrong user or password), and refusals while the client address is locked out', ['protocol', 'reason']),

  /** IMAP commands answered, by command and tagged result (ok, no, bad, bye); unparseable ones as BAD. */
  imapCommands: counter('mailgrid_imap_commands_total', 'IMAP commands answered, by command and result (ok, no, bad, bye)', ['command', 'result']),
  imapIdle: new Gauge({ name: 'mailgrid_imap_idle_sessions', help: 'IMAP sessions in IDLE now' }),
  /** From a change's durable commit at the primary to its untagged answer to an idling client. */
  imapNotifySeconds: new Histogram({
    name: 'mailgrid_imap_notify_seconds',
    help: "Time from a change's commit at the primary to an idling IMAP client being told",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
  }),

  nodeInfo: new Gauge({ name: 'mailgrid_node_info', help: 'Always 1; labels name the node, its role and site', labelNames: ['node', 'role', 'site'] }),

  /** Where a role's state gauges read from: each registered function is called at every scrape, until the returned remover is called. */
  observe: {
    queue: (f: (typeof sources.queue)[number]) => track(sources.queue, f),
    replication: (f: (typeof sources.replication)[number]) => track(sources.replication, f),
    lease: (f: () => boolean) => track(sources.lease, f),
    diskGuard: (guard: string, active: () => boolean) => track(sources.diskGuards, { guard, active }),
  },

  /** Node and process metrics (CPU, memory, event loop lag, heap, handles): once per process, on its main thread. */
  describeNode(node: string, role: string, site: string): void {
    metrics.nodeInfo.set({ node, role, site }, 1);
    if (!processMetrics) {
      processMetrics = true;
      collectDefaultMetrics({ register });
    }
  },

  /**
   * The text of this registry with others' (a single node's backend thread) added: counters
   * and histograms summed, gauges summed too (each thread reports only what it owns).
   */
  async merged(others: MetricObjectWithValues<MetricValue<string>>[][]): Promise<string> {
    if (!others.length) return register.metrics();
    return AggregatorRegistry.aggregate([await register.getMetricsAsJSON(), ...others] as never).metrics();
  },
};

let processMetrics = false;
// Known label values start at 0, so a rate over them exists before the first event.
for (const reason of ['permanent', 'expired']) metrics.bounced.inc({ reason }, 0);

function track<T>(list: T[], item: T): () => void {
  list.push(item);
  return () => {
    const i = list.indexOf(item);
    if (i >= 0) list.splice(i, 1);
  };
}

function replications() {
  return sources.replication.map((r) => r()).filter((r) => r !== undefined);
}

function sum<T>(list: T[], value: (x: T) => number): number {
  return list.reduce((n, x) => n + value(x), 0);
}
