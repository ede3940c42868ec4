import { metrics, type Logger, type Service, type ServiceState } from '@mailgrid/core';
import type { Etcd3, IKeyValue, Lease } from 'etcd3';
import { EventEmitter } from 'node:events';
import { z } from 'zod';
import type { Keys } from './keys.js';
import { jsonValue, PrefixWatch } from './prefix-watch.js';

export type Role = 'frontend' | 'backend';

/** What a node publishes about itself under its lease. */
export interface MemberInfo {
  id: string;
  role: Role;
  site: string;
  /** Hosting group served (backends). */
  group?: string;
  /** A frontend's access listeners by the registry's names (`smtp`, `pop3s`, ...): `host:port`. */
  access?: Record<string, string>;
  /** The member's one gRPC address; `services` says what it offers there. */
  grpc?: string;
  http?: string;
  /** gRPC service names offered at `grpc`. */
  services?: string[];
  /**
   * The etcd create revision of the member's entry: new at every registration, the same
   * while it stays registered. Set by the reader, not published.
   */
  epoch?: number;
  queueDepth?: number;
  queueOldestAt?: number;
  /** Bytes its queue may still take. */
  queueFreeBytes?: number;
  /** Its effective submit mode (auto resolved). */
  submitMode?: string;
  /** Listed as a queue taker: local-for-others with room in its queue. */
  takes?: boolean;
  /** A backend's place in its hosting group, and where its store's log ends. */
  groupRole?: 'primary' | 'replica';
  logSeq?: number;
  /** Its queue store's identity, the queue partner it computes, and the nodes whose copy of its queue has every answered write (empty: unprotected). */
  queueStore?: string;
  partner?: string;
  copies?: string[];
  /** Messages it acknowledged and recipients it stored since it started (core's `totals`), and when it read them (ms): the dashboard's throughput. */
  accepted?: number;
  delivered?: number;
  countedAt?: number;
  state: 'up' | 'draining';
  pid: number;
  startedAt: string;
}

// Loose: fields a newer member adds must not make it invisible to older ones.
const memberValue = z.looseObject({
  id: z.string().min(1),
  role: z.enum(['frontend', 'backend']),
  site: z.string(),
  group: z.string().optional(),
  access: z.record(z.string(), z.string()).optional(),
  grpc: z.string().optional(),
  http: z.string().optional(),
  services: z.array(z.string()).optional(),
  queueDepth: z.number().optional(),
  queueOldestAt: z.number().optional(),
  queueFreeBytes: z.number().optional(),
  submitMode: z.string().optional(),
  takes: z.boolean().optional(),
  groupRole: z.enum(['primary', 'replica']).optional(),
  logSeq: z.number().optional(),
  queueStore: z.string().optional(),
  partner: z.string().optional(),
  copies: z.array(z.string()).optional(),
  accepted: z.number().optional(),
  delivered: z.number().optional(),
  countedAt: z.number().optional(),
  state: z.enum(['up', 'draining']),
  pid: z.number().int(),
  startedAt: z.string(),
});

export interface MembershipOptions {
  /** Fields only known at run time (bound addresses, services, queue depth), read at every publish. */
  describe?: () => Partial<MemberInfo>;
  /** How often the entry is published again with fresh `describe()` fields. */
  publishEveryMs?: number;
  /**
   * What others must hear about at once (taking queued mail or not, the submit mode):
   * looked at every second, and the entry is published as soon as it changes.
   */
  urgent?: () => string;
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
  private _epoch: number | undefined;
  private _lastEpoch: number | undefined;
  private _lostAt: number | undefined;
  private readonly live = new Map<string, MemberInfo>();
  private readonly watch: PrefixWatch;
  private retryTimer: NodeJS.Timeout | undefined;
  private publishTimer: NodeJS.Timeout | undefined;
  private unobserve: (() => void) | undefined;

  constructor(
    private readonly client: Etcd3,
    private readonly keys: Keys,
    private self: MemberInfo,
    private readonly ttlSec: number,
    private readonly log: Logger,
    private readonly options: MembershipOptions = {},
  ) {
    super();
    this.watch = new PrefixWatch({
      client,
      prefix: keys.members,
      name: 'members',
      log,
      auditEveryMs: 3_000,
      handler: {
        reset: () => this.live.clear(),
        put: (kv) => {
          const id = this.idOf(kv);
          const m = parseMember(kv);
          if (m.id !== id) throw new Error(`id ${m.id} does not match the key`);
          this.live.set(id, m);
        },
        delete: (kv) => this.live.delete(this.idOf(kv)),
        invalid: (kv) => this.live.delete(this.idOf(kv)),
      },
    });
    this.watch.on('change', () => this.emit('change', this.members()));
  }

  get state(): ServiceState {
    return this._state;
  }

  /** This node's registration revision in etcd; undefined while not registered. */
  get epoch(): number | undefined {
    return this._epoch;
  }

  /** The epoch of its last registration, kept while the lease is lost (what it was to the others when they last saw it). */
  get lastEpoch(): number | undefined {
    return this._lastEpoch;
  }

  /** When the lease was lost (undefined while registered, or never registered). */
  get lostAt(): number | undefined {
    return this._lostAt;
  }

  members(): MemberInfo[] {
    return [...this.live.values()];
  }

  /** Registers and starts following the member list; retries in the background if etcd is down. */
  async start(): Promise<void> {
    this._state = 'running';
    this.unobserve = metrics.observe.lease(() => this.lease !== undefined);
    await this.watch.start();
    try {
      await this.register();
    } catch (err) {
      this.log.warn({ event: 'membership.register-failed', err: (err as Error).message }, 'could not register yet, retrying');
      this.retry();
    }
    const every = this.options.publishEveryMs ?? 10_000;
    let last = Date.now();
    let urgent = this.options.urgent?.();
    this.publishTimer = setInterval(() => {
      const now = this.options.urgent?.();
      if (now === urgent && Date.now() - last < every) return;
      urgent = now;
      last = Date.now();
      this.publish().catch((err) => this.log.debug({ event: 'membership.publish-failed', err: (err as Error).message }, 'member entry not published'));
    }, Math.min(1_000, every));
    this.publishTimer.unref();
  }

  /** Publishes a change of this node's entry (state, queue depth, ...). */
  async update(patch: Partial<MemberInfo>): Promise<void> {
    this.self = { ...this.self, ...patch };
    await this.publish();
  }

  /** Says it is draining, then revokes the lease so it leaves the member list at once. */
  async stop(): Promise<void> {
    if (this._state !== 'running') return;
    this._state = 'stopping';
    this.unobserve?.();
    clearTimeout(this.retryTimer);
    clearInterval(this.publishTimer);
    const lease = this.lease;
    this.lease = undefined;
    this._epoch = undefined;
    await lease?.put(this.memberKey).value(JSON.stringify({ ...this.entry(), state: 'draining' })).catch(() => undefined);
    await lease?.revoke().catch((err) => this.log.warn({ event: 'membership.revoke-failed', err: (err as Error).message }, 'lease not revoked; it will expire'));
    await this.watch.stop();
    this._state = 'stopped';
  }

  private get memberKey(): string {
    return this.keys.member(this.self.id);
  }

  private entry(): MemberInfo {
    return { ...this.self, ...this.options.describe?.() };
  }

  private async register(): Promise<void> {
    const lease = this.client.lease(this.ttlSec, { autoKeepAlive: true });
    lease.on('lost', (err) => {
      if (this.lease !== lease) return;
      this.lease = undefined;
      this._epoch = undefined;
      this._lostAt = Date.now();
      metrics.leaseLost.inc();
      this.log.warn({ event: 'membership.lease-lost', err: err.message }, 'lease lost, registering again');
      this.retry();
    });
    let epoch: number;
    try {
      await lease.grant();
      // A previous incarnation's entry may still be held by its lease: remove it, so the put
      // below creates the key and this registration gets an epoch of its own.
      await this.client.delete().key(this.memberKey).exec();
      epoch = await this.put(lease);
      if (this.self.role === 'backend' && this.self.group) {
        // The group exists from its first backend on; accounts can be placed in it.
        await this.client.if(this.keys.group(this.self.group), 'Create', '==', 0).then(this.client.put(this.keys.group(this.self.group)).value('{}')).commit();
      }
    } catch (err) {
      // Or its keep-alives would go on for nothing.
      await lease.revoke().catch(() => undefined);
      throw err;
    }
    if (this._state !== 'running') {
      // Stopped meanwhile: leave at once.
      await lease.revoke().catch(() => undefined);
      return;
    }
    this.lease = lease;
    this._epoch = epoch;
    this._lastEpoch = epoch;
    this._lostAt = undefined;
    this.log.info({ event: 'membership.registered', id: this.self.id, role: this.self.role, group: this.self.group, epoch: this._epoch }, 'registered');
    this.emit('registered', epoch);
  }

  /** Puts the entry again while registered, with fresh `describe()` fields. */
  private async publish(): Promise<void> {
    const lease = this.lease;
    if (!lease) return;
    const epoch = await this.put(lease);
    if (this.lease === lease) this._epoch = this._lastEpoch = epoch;
  }

  /** Returns the key's create revision: this put's own when it created the key. */
  private async put(lease: Lease): Promise<number> {
    const prev = await lease.put(this.memberKey).value(JSON.stringify(this.entry())).getPrevious();
    return Number(prev.create_revision ?? prev.header.revision);
  }

  private idOf(kv: IKeyValue): string {
    return kv.key.toString().slice(this.keys.members.length);
  }

  private retry(): void {
    if (this._state !== 'running' || this.retryTimer) return;
    this.retryTimer = setTimeout(async () => {
      this.retryTimer = undefined;
      try {
        if (!this.lease) await this.register();
      } catch (err) {
        this.log.debug({ event: 'membership.retry-failed', err: (err as Error).message }, 'membership retry failed');
        this.retry();
      }
    }, 1_000);
    this.retryTimer.unref();
  }
}

/** A member entry as read from etcd, validated, with its epoch (the key's create revision). Throws when malformed. */
export function parseMember(kv: IKeyValue): MemberInfo {
  return { ...jsonValue(memberValue, kv), epoch: Number(kv.create_revision) };
}

/**
 * The controller's list of queue takers in a member list: live members in local-for-others
 * mode whose queue has room and that offer Submit. A draining member, a full queue or a
 * lapsed lease leaves it.
 */
export function queueTakers(members: MemberInfo[]): MemberInfo[] {
  return members.filter((m) => offersSubmit(m) && m.submitMode === 'local-for-others' && m.takes);
}

const offersSubmit = (m: MemberInfo) => m.state === 'up' && Boolean(m.grpc) && Boolean(m.services?.includes('Submit'));

/** The queue takers (and the frontends, for relay via frontends) as this node's member list shows them, itself left out. */
export class MemberQueueTakers {
  constructor(
    private readonly membership: Membership,
    private readonly self: string,
  ) {}

  takers(): { id: string; address: string; queueDepth: number }[] {
    return queueTakers(this.others()).map(takerOf);
  }

  /** Live frontends that offer Submit, queue takers first. */
  frontends(): { id: string; address: string; queueDepth: number }[] {
    return this.others()
      .filter((m) => m.role === 'frontend' && offersSubmit(m))
      .sort((a, b) => Number(Boolean(b.takes)) - Number(Boolean(a.takes)))
      .map(takerOf);
  }

  subscribe(listener: () => void): void {
    this.membership.on('change', listener);
  }

  private others(): MemberInfo[] {
    return this.membership.members().filter((m) => m.id !== this.self);
  }
}

/**
 * The queue partner of `owner`: the next in a ring, ordered by id, of the live members that
 * keep their own queue (any submit mode but remote) and offer QueueCopy, on the owner's site
 * when one is there. Every node computes the same from the same member list.
 */
export function queuePartner(members: MemberInfo[], owner: Pick<MemberInfo, 'id' | 'site'>): string | undefined {
  const candidates = members.filter((m) => m.id !== owner.id && m.state === 'up' && m.submitMode !== 'remote' && m.services?.includes('QueueCopy'));
  const local = candidates.filter((m) => m.site === owner.site);
  const ring = (local.length ? local : candidates).map((m) => m.id).sort();
  return ring.find((id) => id > owner.id) ?? ring[0];
}

const takerOf = (m: MemberInfo) => ({ id: m.id, address: m.grpc!, queueDepth: m.queueDepth ?? 0 });
