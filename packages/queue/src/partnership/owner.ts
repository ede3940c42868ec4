import { metrics, Replies, type Logger, type Service, type ServiceState } from '@mailgrid/core';
import { queuePartner, type Keys, type MemberInfo, type Membership } from '@mailgrid/cluster';
import { LogFollowers, proto, type GrpcService, type QueueCopyHandlers } from '@mailgrid/protocol';
import type { Etcd3 } from 'etcd3';
import type { QueueProtection } from '../mail-queue.js';
import type { QueueStore } from '../queue-store.js';
import { claimValue, copiesValue } from './keys.js';

export interface QueueOwnerOptions {
  client: Etcd3;
  keys: Keys;
  membership: Membership;
  node: string;
  site: string;
  /** queue.partnerCopy: off, this node's queue has no partner (its copies of others' queues go on). */
  partnerCopy(): boolean;
  takeoverAfterMs(): number;
  /** The membership lease's TTL: how long before the others see this node gone. */
  leaseTtlMs: number;
  maxLagMs(): number;
  logRetain(): number;
  log: Logger;
}

/**
 * Where the owner of a queue is:
 * - `checking`: registered (again), reading whether its queue was taken over while it was
 *   gone; its runner does not deliver and no copy is served;
 * - `serving`: the claim was read (and what a partner took dropped): copies are served and
 *   the runner delivers (while the membership holds, or not long after it lapsed).
 */
export type OwnerPhase = 'checking' | 'serving';

/**
 * A node's own queue, protected by a partner's copy (BRIEF §4: every node keeps a copy and
 * forwards to its neighbour). Its log is followed by its partner (`queuePartner`, the next
 * queue keeper in a ring) over QueueCopy.Follow; a queue write is answered once the copies
 * in the set (`queues/<node>/<store>/copies`, written fenced by this node's membership) have
 * it on disk. With none, writes go on with the local flush and the node is unprotected.
 * After every registration it first reads whether its queue was taken over while it was
 * gone, drops what the partner took, and only then lets its runner deliver.
 */
export class QueueOwner implements Service, QueueProtection {
  readonly name = 'queue-owner';
  private _state: ServiceState = 'new';
  private _phase: OwnerPhase = 'checking';
  private store: QueueStore | undefined;
  private wake: () => void = () => undefined;
  private own: LogFollowers | undefined;
  /** The set was read from etcd once (a restart keeps waiting for the copies it had): writes wait for it. */
  private loaded = false;
  private markLoaded!: () => void;
  private readonly whenLoaded = new Promise<void>((resolve) => (this.markLoaded = resolve));
  private timer: NodeJS.Timeout | undefined;
  private readonly onRegistered = () => void this.registered();

  constructor(private readonly options: QueueOwnerOptions) {}

  get state(): ServiceState {
    return this._state;
  }

  get phase(): OwnerPhase {
    return this._phase;
  }

  attach(store: QueueStore, wake: () => void): void {
    const { client, keys, membership, node } = this.options;
    this.store = store;
    this.wake = wake;
    this.own = new LogFollowers({
      source: store,
      name: 'queue-copy',
      // Its last registration's: the copy goes on while this node is cut off from etcd (the
      // partner stops following when it claims the queue, and writes then wait in vain).
      epoch: () => membership.lastEpoch,
      refusal: (req) => {
        // Not before the claim was read: a queue that was taken over is never followed again.
        if (this._phase !== 'serving') return 'the takeover check of this queue is not done';
        if (!this.options.partnerCopy()) return 'queue.partnerCopy is off here';
        if (req.source !== store.identity) return `copies queue store ${req.source}, this one is ${store.identity}`;
        if (req.node !== this.partner() && !this.own!.members().includes(req.node)) return `${req.node} is not this queue's partner`;
        return undefined;
      },
      writeSet: async (nodes) => {
        const epoch = membership.epoch;
        if (epoch === undefined) return false;
        const res = await client
          .if(keys.member(node), 'Create', '==', epoch)
          .then(client.put(keys.queueCopies(node, store.identity)).value(JSON.stringify({ nodes })))
          .commit();
        return res.succeeded;
      },
      maxLagMs: this.options.maxLagMs,
      log: this.options.log,
    });
  }

  /**
   * A write is answered once the set has it: not before the set was read at start (etcd
   * still names the copies it had), and never after stop (the copies no longer follow).
   */
  async durable(seq: number): Promise<void> {
    const own = this.own;
    if (!own) return;
    if (this._state === 'stopping' || this._state === 'stopped') throw Replies.backendUnavailable(new Error('the queue partnership is stopping'));
    if (!this.loaded) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(Replies.timeout('queue-copy')), 10_000)));
      try {
        await Promise.race([this.whenLoaded, late]);
      } finally {
        clearTimeout(timer);
      }
    }
    return own.durable(seq);
  }

  copies(): string[] {
    return this.own?.members() ?? [];
  }

  trimPoint(): number {
    return this.own ? this.own.trimPoint(this.options.logRetain()) : 0;
  }

  /**
   * Delivers once serving. Cut off from etcd, it goes on only while its partner cannot have
   * taken the queue over yet: the others see it gone at the latest a TTL after its lease was
   * lost here, and claim `takeoverAfterMs` after that; it stops a TTL and 2 s before the
   * earliest claim.
   */
  mayDeliver(): boolean {
    const { membership } = this.options;
    if (this._phase !== 'serving') return false;
    if (membership.epoch !== undefined) return true;
    const lostAt = membership.lostAt ?? 0;
    return Date.now() - lostAt < this.options.takeoverAfterMs() - this.options.leaseTtlMs - 2_000;
  }

  /** The partner this node computes for itself now (and publishes: the partner follows what its owner names). */
  partner(): string | undefined {
    if (!this.options.partnerCopy()) return undefined;
    return queuePartner(this.options.membership.members(), { id: this.options.node, site: this.options.site });
  }

  /** What membership publishes: the queue store, its partner, the copies that protect it. */
  describe(): Pick<MemberInfo, 'queueStore' | 'partner' | 'copies'> {
    return { queueStore: this.store?.identity, partner: this.partner(), copies: this.copies() };
  }

  /** The QueueCopy service: the partner's Follow stream. */
  service(): GrpcService {
    const handlers: QueueCopyHandlers = {
      Follow: (call) => {
        if (this.own) this.own.follow(call);
        else call.emit('error', { code: 14, details: 'no queue here yet' });
      },
    };
    return { name: 'QueueCopy', definition: proto.QueueCopy.service, handlers: handlers as never };
  }

  async start(): Promise<void> {
    this._state = 'running';
    this.options.membership.on('registered', this.onRegistered);
    if (this.options.membership.epoch !== undefined) void this.registered();
    this.timer = setInterval(() => this.watchdog(), 500);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this._state = 'stopping';
    clearInterval(this.timer);
    this.options.membership.off('registered', this.onRegistered);
    this.own?.close();
    this.own?.end(Replies.backendUnavailable(new Error('stopping')));
    this._state = 'stopped';
  }

  /**
   * After each registration, before the runner delivers: was this queue taken over while
   * this node was gone? Then what the partner took leaves it, undelivered, and the queue
   * store gets a new identity (copies of the old one are the partner's business).
   */
  private async registered(): Promise<void> {
    this._phase = 'checking';
    const { client, keys, node, log } = this.options;
    const store = this.store;
    if (!store || !this.own) return;
    for (;;) {
      if (this._state !== 'running' || this.options.membership.epoch === undefined) return;
      try {
        const raw = await client.get(keys.queueClaim(node, store.identity)).string();
        if (raw) {
          const claim = claimValue.parse(JSON.parse(raw));
          if (claim.by !== node) {
            // The copies of this store are the claimer's business: the drop and what follows wait for none.
            this.own.end(Replies.backendUnavailable(new Error('queue taken over')));
            this.loaded = true;
            this.markLoaded();
            const dropped = await store.dropTakenOver({ seq: claim.seq, epoch: claim.epoch });
            const old = store.identity;
            await store.renew();
            log.warn(
              { event: 'queue.taken-over', by: claim.by, store: old, dropped: dropped ?? 'none: the log does not reach the claim, everything stays', left: store.messageCount },
              `queue was taken over by ${claim.by} while this node was gone; what it took is dropped here`,
            );
          }
        }
        if (!this.loaded) {
          const copies = await client.get(keys.queueCopies(node, store.identity)).string();
          const set = copies ? copiesValue.safeParse(JSON.parse(copies)) : undefined;
          if (set?.success) this.own.load(set.data.nodes);
          this.loaded = true;
          this.markLoaded();
        }
        this._phase = 'serving';
        this.wake();
        return;
      } catch (err) {
        log.warn({ event: 'queue.claim-check-failed', err: (err as Error).message }, 'could not read whether this queue was taken over; not delivering yet');
        await new Promise((r) => setTimeout(r, 1_000));
      }
    }
  }

  /** The followers' watchdog; copies other than the partner's are let go once the partner has every write. */
  private watchdog(): void {
    const own = this.own;
    if (this._state !== 'running' || !own) return;
    own.watchdog();
    metrics.queueProtected.set(own.members().length ? 1 : 0);
    const partner = this.partner();
    const set = own.members();
    const partnerHas = (partner !== undefined && set.includes(partner)) || !this.options.partnerCopy();
    const others = [...new Set([...own.connected(), ...set])].filter((n) => n !== partner && (partnerHas || !set.includes(n)));
    if (others.length) void own.drop(others, 'no longer the partner').catch(() => undefined);
  }

  /** Takes a claimed copy of another node's queue into this one (the keeper's takeover). */
  adopt(copy: QueueStore): Promise<{ messages: number; handing: number }> {
    const store = this.store!;
    return store.adopt(copy).finally(() => this.wake());
  }
}
