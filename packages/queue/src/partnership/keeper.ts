import type { Logger, Service, ServiceState } from '@mailgrid/core';
import type { Keys, MemberInfo, Membership } from '@mailgrid/cluster';
import { createQueueCopyClient, LogFollower, type FollowClientCall } from '@mailgrid/protocol';
import type { Etcd3 } from 'etcd3';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { QueueStore } from '../queue-store.js';
import { claimValue, copiesValue } from './keys.js';

export interface QueueKeeperOptions {
  client: Etcd3;
  keys: Keys;
  membership: Membership;
  node: string;
  /** Copies of other nodes' queues live under `<dataDir>/copies/<owner>/<store>`. */
  dataDir: string;
  takeoverAfterMs(): number;
  /** Takes a claimed copy into this node's own queue. */
  adopt(copy: QueueStore): Promise<{ messages: number; handing: number }>;
  log: Logger;
}

/**
 * Where one kept copy is:
 * - `kept`: its owner is live with this queue store: followed while the owner names this
 *   node its partner (or counts the copy), else kept until the owner has another copy;
 * - `orphaned`: its owner is gone (or back with another store: its disk was lost), since
 *   `goneSince`; claimed once `takeoverAfterMs` has passed (at once for a lost disk);
 * - `claiming`: this node is claiming it or has claimed it (the marker is in its folder,
 *   so a restart finishes the adoption); never followed again.
 */
type CopyPhase = 'kept' | 'orphaned' | 'claiming';

/** A copy this node keeps of another node's queue. */
interface Copy {
  owner: string;
  /** The identity of the owner's queue store it copies. */
  source: string;
  store: QueueStore;
  follower: LogFollower;
  phase: CopyPhase;
  goneSince?: number;
  /** Not looked at for a takeover again before this time (a claim that was not for this node). */
  nextLook: number;
  /** An etcd transaction or a disk operation on it is under way. */
  busy: boolean;
}

/** In a copy's folder: this node is claiming, or has claimed, that queue (written before the claim transaction). */
const CLAIMING = 'claiming';

/**
 * The copies this node keeps of other nodes' queues (it is their queue partner). It follows
 * each node whose partner it is into a copy. When such a node has been gone
 * `takeoverAfterMs` (or is back with another queue store: its disk was lost), it claims that
 * queue in an etcd transaction (the fence: the owner must still be gone, the copy in its
 * set, nobody else's claim there) and adopts the copy into its own queue.
 */
export class QueueKeeper implements Service {
  readonly name = 'queue-keeper';
  private _state: ServiceState = 'new';
  /** Queue stores of others this node has claimed: no new copy of them is opened. */
  private readonly claimed = new Set<string>();
  private readonly kept = new Map<string, Copy>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: QueueKeeperOptions) {}

  get state(): ServiceState {
    return this._state;
  }

  async start(): Promise<void> {
    this._state = 'running';
    const dir = join(this.options.dataDir, 'copies');
    if (existsSync(dir))
      for (const owner of readdirSync(dir))
        for (const source of readdirSync(join(dir, owner))) this.kept.set(`${owner}/${source}`, this.openCopy(owner, source));
    this.timer = setInterval(() => this.tick(), 500);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this._state = 'stopping';
    clearInterval(this.timer);
    for (const c of this.kept.values()) {
      await c.follower.stop();
      while (c.busy) await new Promise((r) => setTimeout(r, 20));
      await c.store.close();
    }
    this.kept.clear();
    this._state = 'stopped';
  }

  private tick(): void {
    if (this._state !== 'running') return;
    const { node } = this.options;
    const members = this.options.membership.members();
    const byId = new Map(members.map((m) => [m.id, m]));
    // Follow every live node that names this one its partner (or counts its copy).
    const mine = (m: MemberInfo) => m.partner === node || Boolean(m.copies?.includes(node));
    for (const m of members) {
      if (m.id === node || !m.queueStore || !m.grpc || m.epoch === undefined || !mine(m)) continue;
      const key = `${m.id}/${m.queueStore}`;
      if (!this.kept.has(key) && !this.claimed.has(key)) this.kept.set(key, this.openCopy(m.id, m.queueStore));
    }
    for (const [key, c] of this.kept) {
      if (c.busy) continue;
      const m = byId.get(c.owner);
      // Claimed before a restart: finished at once, never followed again.
      if (c.phase === 'claiming') {
        void this.takeOver(key, c, m);
        continue;
      }
      if (m && m.queueStore === c.source) {
        c.phase = 'kept';
        c.goneSince = undefined;
        if (mine(m)) c.follower.follow({ address: m.grpc!, epoch: m.epoch! });
        else if (c.follower.following) void c.follower.stop();
        // Its owner is back and protected by another copy: this one is of no use.
        else if (m.copies?.length && !m.copies.includes(node)) void this.discard(key, c, 'the owner has another partner copy');
        continue;
      }
      // Still followed while it may come back: it stops with the claim.
      c.phase = 'orphaned';
      c.goneSince ??= Date.now();
      // Back with another queue store (its disk was lost): nothing to wait for.
      if (Date.now() >= c.nextLook && (m || Date.now() - c.goneSince >= this.options.takeoverAfterMs())) void this.takeOver(key, c, m);
    }
  }

  private dirOf(c: Pick<Copy, 'owner' | 'source'>): string {
    return join(this.options.dataDir, 'copies', c.owner, c.source);
  }

  private openCopy(owner: string, source: string): Copy {
    const dir = this.dirOf({ owner, source });
    const store = new QueueStore(dir, { endOnly: true });
    const follower = new LogFollower({
      copy: store,
      node: this.options.node,
      name: 'queue-copy',
      source,
      open: (address) => {
        const client = createQueueCopyClient(address);
        return { call: client.Follow() as unknown as FollowClientCall, close: () => client.close() };
      },
      retryMs: 1_000,
      log: this.options.log.child({ owner }),
    });
    return { owner, source, store, follower, phase: existsSync(join(dir, CLAIMING)) ? 'claiming' : 'kept', nextLook: 0, busy: false };
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
        if (claim.by === node && c.phase === 'claiming') return await this.adopt(key, c, claim.seq);
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
      await c.follower.stop();
      await c.store.synced();
      const pos = c.store.position();
      if (pos.epoch === Number.MAX_SAFE_INTEGER) {
        log.warn({ event: 'queue-copy.not-whole', owner: c.owner, store: c.source }, 'the copy was interrupted during a full copy: not taken over, kept');
        return;
      }
      writeFileSync(marker, JSON.stringify({ at: Date.now() }));
      c.phase = 'claiming';
      const res = await client
        .if(keys.member(c.owner), 'Create', '==', live?.epoch ?? 0)
        .and(keys.queueCopies(c.owner, c.source), 'Mod', '==', copiesKv!.mod)
        .and(claimKey, 'Create', '==', 0)
        .then(client.put(claimKey).value(JSON.stringify({ by: node, seq: pos.seq, epoch: pos.epoch, at: Date.now() })))
        .commit();
      if (!res.succeeded) {
        rmSync(marker, { force: true });
        c.phase = 'orphaned';
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
    const { messages, handing } = await this.options.adopt(c.store);
    this.options.log.warn(
      { event: 'queue.adopted', owner: c.owner, store: c.source, seq, messages, maybeSent: handing },
      handing
        ? `adopted ${messages} message(s) of ${c.owner}; ${handing} recipient(s) were being handed to a remote MX when it died and may be sent twice`
        : `adopted ${messages} message(s) of ${c.owner}`,
    );
    await this.discard(key, c, 'adopted');
  }

  private async discard(key: string, c: Copy, why: string): Promise<void> {
    c.busy = true;
    await c.follower.stop();
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
