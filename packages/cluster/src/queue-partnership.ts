import { metrics, Replies, type Logger, type Service, type ServiceState } from '@mailgrid/core';
import {
  createQueueCopyClient,
  LogFollowers,
  proto,
  receiveLog,
  type FollowClientCall,
  type GrpcService,
  type QueueCopyClient,
  type QueueCopyHandlers,
} from '@mailgrid/protocol';
import { QueueStore, type QueueProtection } from '@mailgrid/queue';
import type { Etcd3 } from 'etcd3';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { Keys } from './keys.js';
import { queuePartner, type MemberInfo, type Membership } from './membership.js';

export interface QueuePartnershipOptions {
  client: Etcd3;
  keys: Keys;
  membership: Membership;
  node: string;
  site: string;
  /** Copies of other nodes' queues live under `<dataDir>/copies/<owner>/<store>`. */
  dataDir: string;
  /** queue.partnerCopy: off, this node's queue has no partner (its own copies of others' queues go on). */
  partnerCopy(): boolean;
  takeoverAfterMs(): number;
  /** The membership lease's TTL: how long before the others see this node gone. */
  leaseTtlMs: number;
  maxLagMs(): number;
  logRetain(): number;
  log: Logger;
}

const copiesValue = z.object({ nodes: z.array(z.string()) });
const claimValue = z.object({ by: z.string(), seq: z.number(), epoch: z.number(), at: z.number() });

/** A copy this node keeps of another node's queue. */
interface Copy {
  owner: string;
  /** The identity of the owner's queue store it copies. */
  source: string;
  store: QueueStore;
  following?: { epoch: number; client: QueueCopyClient; call: FollowClientCall; received: Promise<void> };
  /** Not before this time again after a stream ended. */
  retryAt: number;
  /** When the owner (with this store) was first seen gone. */
  goneSince?: number;
  /** Not looked at for a takeover again before this time (a claim that was not for this node). */
  nextLook: number;
  /** This node is claiming it, or claimed it (the CLAIMING marker is in its folder). */
  claiming: boolean;
  busy: boolean;
}

/** In a copy's folder: this node is claiming, or has claimed, that queue (written before the claim transaction). */
const CLAIMING = 'claiming';

/**
 * A node's queue partnership, both ways (BRIEF §4: every node keeps a copy and forwards to
 * its neighbour).
 *
 * As owner: its queue's log is followed by its partner (`queuePartner`, the next queue
 * keeper in a ring) over QueueCopy.Follow; a queue write is answered once the copies in the
 * set (`queues/<node>/<store>/copies`, written fenced by this node's membership) have it on disk.
 * With none, writes go on on the local flush and the node is unprotected. After every
 * registration it first reads whether its queue was taken over while it was gone, drops
 * what the partner took, and only then lets its runner deliver.
 *
 * As partner: follows each node whose partner it is into a copy. When such a node has been
 * gone `takeoverAfterMs` (or is back with another queue store: its disk was lost), it
 * claims that queue in an etcd transaction (the fence: the owner must still be gone, the
 * copy in its set, nobody else's claim there) and adopts the copy into its own queue.
 */
export class QueuePartnership implements Service, QueueProtection {
  readonly name = 'queue-partnership';
  private _state: ServiceState = 'new';
  private store: QueueStore | undefined;
  private wake: () => void = () => undefined;
  private own: LogFollowers | undefined;
  /** The runner may deliver: registered, and the claim read since. */
  private checked = false;
  /** The set was read from etcd once (a restart keeps waiting for the copies it had): writes wait for it. */
  private loaded = false;
  private markLoaded!: () => void;
  private readonly whenLoaded = new Promise<void>((resolve) => (this.markLoaded = resolve));
  /** Queue stores of others this node has claimed: no new copy of them is opened. */
  private readonly claimed = new Set<string>();
  private readonly kept = new Map<string, Copy>();
  private timer: NodeJS.Timeout | undefined;
  private ticks = 0;
  private readonly onRegistered = () => void this.registered();

  constructor(private readonly options: QueuePartnershipOptions) {}

  get state(): ServiceState {
    return this._state;
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
        if (!this.checked) return 'the takeover check of this queue is not done';
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
   * Delivers once the claim was read after its registration. Cut off from etcd, it goes on
   * only while its partner cannot have taken the queue over yet: the others see it gone at
   * the latest a TTL after its lease was lost here, and claim `takeoverAfterMs` after that;
   * it stops a TTL and 2 s before the earliest claim.
   */
  mayDeliver(): boolean {
    const { membership } = this.options;
    if (!this.checked) return false;
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
    const dir = join(this.options.dataDir, 'copies');
    if (existsSync(dir))
      for (const owner of readdirSync(dir))
        for (const source of readdirSync(join(dir, owner))) this.kept.set(`${owner}/${source}`, this.openCopy(owner, source));
    this.options.membership.on('registered', this.onRegistered);
    if (this.options.membership.epoch !== undefined) void this.registered();
    this.timer = setInterval(() => this.tick(), 500);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this._state = 'stopping';
    clearInterval(this.timer);
    this.options.membership.off('registered', this.onRegistered);
    this.own?.close();
    this.own?.end(Replies.backendUnavailable(new Error('stopping')));
    for (const c of this.kept.values()) {
      this.unfollow(c);
      while (c.busy) await new Promise((r) => setTimeout(r, 20));
      await c.store.close();
    }
    this.kept.clear();
    this._state = 'stopped';
  }

  // ---- owner -----------------------------------------------------------------------------

  /**
   * After each registration, before the runner delivers: was this queue taken over while
   * this node was gone? Then what the partner took leaves it, undelivered, and the queue
   * store gets a new identity (copies of the old one are the partner's business).
   */
  private async registered(): Promise<void> {
    this.checked = false;
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
        this.checked = true;
        this.wake();
        return;
      } catch (err) {
        log.warn({ event: 'queue.claim-check-failed', err: (err as Error).message }, 'could not read whether this queue was taken over; not delivering yet');
        await new Promise((r) => setTimeout(r, 1_000));
      }
    }
  }

  // ---- both ------------------------------------------------------------------------------

  private tick(): void {
    if (this._state !== 'running') return;
    this.ticks++;
    const own = this.own;
    if (own) {
      own.watchdog();
      metrics.queueProtected.set(own.members().length ? 1 : 0);
      // Other copies than the partner's are not kept up; once the partner has every write,
      // those in the set are not waited for any more either.
      const partner = this.partner();
      const set = own.members();
      const partnerHas = (partner !== undefined && set.includes(partner)) || !this.options.partnerCopy();
      const others = [...new Set([...own.connected(), ...set])].filter((n) => n !== partner && (partnerHas || !set.includes(n)));
      if (others.length) void own.drop(others, 'no longer the partner').catch(() => undefined);
    }
    const members = this.options.membership.members();
    const byId = new Map(members.map((m) => [m.id, m]));
    // Follow every live node that names this one its partner (or counts its copy).
    const mine = (m: MemberInfo) => m.partner === this.options.node || Boolean(m.copies?.includes(this.options.node));
    for (const m of members) {
      if (m.id === this.options.node || !m.queueStore || !m.grpc || m.epoch === undefined || !mine(m)) continue;
      const key = `${m.id}/${m.queueStore}`;
      if (!this.kept.has(key) && !this.claimed.has(key)) this.kept.set(key, this.openCopy(m.id, m.queueStore));
    }
    for (const [key, c] of this.kept) {
      if (c.busy) continue;
      // Claimed before a restart: finished at once, never followed again.
      if (c.claiming) {
        void this.takeOver(key, c, byId.get(c.owner));
        continue;
      }
      const m = byId.get(c.owner);
      if (m && m.queueStore === c.source) {
        c.goneSince = undefined;
        if (mine(m)) this.follow(c, m);
        else if (c.following) this.unfollow(c);
        // Its owner is back and protected by another copy: this one is of no use.
        else if (m.copies?.length && !m.copies.includes(this.options.node)) void this.discard(key, c, 'the owner has another partner copy');
        continue;
      }
      // Still followed while it may come back: it stops with the claim.
      c.goneSince ??= Date.now();
      // Back with another queue store (its disk was lost): nothing to wait for.
      if (Date.now() >= c.nextLook && (m || Date.now() - c.goneSince >= this.options.takeoverAfterMs())) void this.takeOver(key, c, m);
    }
  }

  // ---- partner ---------------------------------------------------------------------------

  private dirOf(c: Pick<Copy, 'owner' | 'source'>): string {
    return join(this.options.dataDir, 'copies', c.owner, c.source);
  }

  private openCopy(owner: string, source: string): Copy {
    const dir = this.dirOf({ owner, source });
    return { owner, source, store: new QueueStore(dir, { endOnly: true }), retryAt: 0, nextLook: 0, claiming: existsSync(join(dir, CLAIMING)), busy: false };
  }

  private follow(c: Copy, m: MemberInfo): void {
    if (c.following?.epoch === m.epoch) return;
    this.unfollow(c);
    if (Date.now() < c.retryAt) return;
    const client = createQueueCopyClient(m.grpc!);
    const call = client.Follow() as unknown as FollowClientCall;
    const following: NonNullable<Copy['following']> = { epoch: m.epoch!, client, call, received: Promise.resolve() };
    c.following = following;
    const ended = (err?: Error) => {
      if (c.following !== following) return;
      if (err) this.options.log.debug({ event: 'queue-copy.follow-ended', owner: c.owner, err: err.message }, 'queue copy stream ended');
      this.unfollow(c);
      c.retryAt = Date.now() + 1_000;
    };
    following.received = receiveLog({ copy: c.store, call, node: this.options.node, epoch: following.epoch, source: c.source, still: () => c.following === following }).then(
      () => ended(),
      (err) => ended(err as Error),
    );
  }

  private unfollow(c: Copy): void {
    const f = c.following;
    c.following = undefined;
    if (!f) return;
    f.call.cancel();
    f.client.close();
  }

  /**
   * Claims a gone node's queue and adopts the copy. The claim holds only if the owner is
   * still gone (or still the incarnation with the other store), this node is in the set of
   * copies with every answered write, and nobody claimed this store before; a claim this
   * node made before (a takeover a crash interrupted) is finished.
   */
  private async takeOver(key: string, c: Copy, live: MemberInfo | undefined): Promise<void> {
    const { client, keys, node, log } = this.options;
    c.busy = true;
    try {
      const claimKey = keys.queueClaim(c.owner, c.source);
      const marker = join(this.dirOf(c), CLAIMING);
      const [claimKv, copiesKv] = await Promise.all([this.kv(claimKey), this.kv(keys.queueCopies(c.owner, c.source))]);
      if (claimKv) {
        const claim = claimValue.parse(JSON.parse(claimKv.value));
        // Its own claim: finished if this copy is the one claimed, else (one opened after) of no use.
        if (claim.by === node && c.claiming) return await this.adopt(key, c, claim.seq);
        return await this.discard(key, c, `taken over by ${claim.by}`);
      }
      c.nextLook = Date.now() + 5_000;
      const set = copiesKv ? copiesValue.safeParse(JSON.parse(copiesKv.value)) : undefined;
      if (!set?.success || !set.data.nodes.includes(node)) {
        if (!c.store.messageCount) return await this.discard(key, c, 'an empty copy of a queue this node does not protect');
        log.warn({ event: 'queue-copy.not-in-set', owner: c.owner, store: c.source, messages: c.store.messageCount }, 'the owner is gone but its copy set does not name this copy: not taken over, kept');
        return;
      }
      // Nothing is added to the copy after the position it claims, and that position is on disk.
      const following = c.following;
      this.unfollow(c);
      await following?.received;
      await c.store.synced();
      const pos = c.store.position();
      if (pos.epoch === Number.MAX_SAFE_INTEGER) {
        log.warn({ event: 'queue-copy.not-whole', owner: c.owner, store: c.source }, 'the copy was interrupted during a full copy: not taken over, kept');
        return;
      }
      writeFileSync(marker, JSON.stringify({ at: Date.now() }));
      c.claiming = true;
      const res = await client
        .if(keys.member(c.owner), 'Create', '==', live?.epoch ?? 0)
        .and(keys.queueCopies(c.owner, c.source), 'Mod', '==', copiesKv!.mod)
        .and(claimKey, 'Create', '==', 0)
        .then(client.put(claimKey).value(JSON.stringify({ by: node, seq: pos.seq, epoch: pos.epoch, at: Date.now() })))
        .commit();
      if (!res.succeeded) {
        rmSync(marker, { force: true });
        c.claiming = false;
        return;
      }
      this.claimed.add(key);
      log.warn({ event: 'queue.claimed', owner: c.owner, store: c.source, at: pos, goneMs: Date.now() - (c.goneSince ?? Date.now()) }, `took over the queue of ${c.owner}`);
      await this.adopt(key, c, pos.seq);
    } catch (err) {
      log.warn({ event: 'queue.takeover-failed', owner: c.owner, err: (err as Error).message }, 'takeover not done; trying again');
    } finally {
      c.busy = false;
    }
  }

  private async adopt(key: string, c: Copy, seq: number): Promise<void> {
    this.claimed.add(key);
    const { messages, handing } = await this.store!.adopt(c.store);
    this.options.log.warn(
      { event: 'queue.adopted', owner: c.owner, store: c.source, seq, messages, maybeSent: handing },
      handing
        ? `adopted ${messages} message(s) of ${c.owner}; ${handing} recipient(s) were being handed to a remote MX when it died and may be sent twice`
        : `adopted ${messages} message(s) of ${c.owner}`,
    );
    this.wake();
    await this.discard(key, c, 'adopted');
  }

  private async discard(key: string, c: Copy, why: string): Promise<void> {
    c.busy = true;
    this.unfollow(c);
    await c.store.close();
    rmSync(this.dirOf(c), { recursive: true, force: true });
    this.kept.delete(key);
    this.options.log.info({ event: 'queue-copy.removed', owner: c.owner, store: c.source, why }, 'queue copy removed');
  }

  private async kv(key: string): Promise<{ value: string; mod: number } | undefined> {
    const res = await this.options.client.get(key).exec();
    const kv = res.kvs[0];
    return kv ? { value: kv.value.toString(), mod: Number(kv.mod_revision) } : undefined;
  }
}
