import { commit, flushed } from '@mailgrid/core';
import { open, type Database, type RootDatabase } from 'lmdb';
import { mkdirSync } from 'node:fs';
import { INBOX, type AppendRequest, type AppendResult, type MailStore, type MessageInfo } from './store.js';

interface IndexEntry {
  size: number;
  receivedAt: number;
  blob: number;
  flags: string[];
}

type IndexKey = [account: string, folder: string, uid: number];

/**
 * The mailbox store on LMDB, one environment per node:
 * - `mailboxes` [account, folder] → next uid
 * - `index`     [account, folder, uid] → size, arrival, flags, blob id
 * - `blobs`     blob id → message bytes, stored once however many local recipients
 * - `refs`      blob id → number of index entries pointing at it, when more than one (a
 *               blob without is referenced once: a message for one account writes no count)
 * - `rules`     account → its Sieve source (kept with the account's mail, so it moves and
 *               replicates with it)
 * - `vacation`  [account, sender] → until when no other vacation reply goes to that sender
 * - `dedupe`    idempotency key → where it was stored, and when the message arrived (old
 *               ones are forgotten by a pass over the table: an index by age cost every
 *               append a second B-tree write and ~12 MB of peak RSS under load)
 * Concurrent appends are batched by lmdb-js into one transaction and share one flush.
 */
export class LmdbMailStore implements MailStore {
  private readonly root: RootDatabase;
  private readonly mailboxes: Database<{ nextUid: number }, [string, string]>;
  private readonly index: Database<IndexEntry, IndexKey>;
  private readonly blobs: Database<Buffer, number>;
  private readonly refs: Database<number, number>;
  private readonly dedupe: Database<{ account: string; folder: string; uid: number; at?: number }, string>;
  private readonly meta: Database<number, string>;
  private readonly rulesDb: Database<{ source: string; at: number }, string>;
  private readonly vacation: Database<number, [string, string]>;
  /** The last blob id handed out: read once, then counted here (a gap after a failed commit is harmless). */
  private blobSeq: number | undefined;

  constructor(path: string) {
    mkdirSync(path, { recursive: true });
    // With overlappingSync (lmdb-js's default on Linux) a write resolves at commit and the
    // flush overlaps the next transaction; append and delete await `flushed` before they
    // return, so "stored" always means on disk.
    // mapSize: lmdb-js otherwise starts with a small map and doubles it as the file grows,
    // keeping every old map (readers may point into them), so the same resident file pages
    // were counted up to ten times in RSS. Reserving address space once avoids that; it is
    // virtual only, the file does not grow to it, and LMDB still grows past it.
    this.root = open({ path, maxDbs: 16, mapSize: 64 * 1024 ** 3 });
    this.mailboxes = this.root.openDB({ name: 'mailboxes' });
    this.index = this.root.openDB({ name: 'index' });
    this.blobs = this.root.openDB({ name: 'blobs', encoding: 'binary' });
    this.refs = this.root.openDB({ name: 'refs' });
    this.dedupe = this.root.openDB({ name: 'dedupe' });
    this.meta = this.root.openDB({ name: 'meta' });
    this.rulesDb = this.root.openDB({ name: 'rules' });
    this.vacation = this.root.openDB({ name: 'vacation' });
  }

  async append(request: AppendRequest): Promise<AppendResult[]> {
    const results = await commit(this.root, () => {
      const out: AppendResult[] = [];
      let blob = 0;
      let refs = 0;
      for (const r of request.recipients) {
        const seen = this.dedupe.get(r.idempotencyKey);
        if (seen) {
          out.push({ account: seen.account, folder: seen.folder, uid: seen.uid, duplicate: true });
          continue;
        }
        let first: { folder: string; uid: number } | undefined;
        for (const folder of r.folders ?? [request.folder ?? INBOX]) {
          if (!blob) {
            // Ids from before the in-memory count was kept in meta; later ones are above every stored blob.
            this.blobSeq ??= Math.max(this.meta.get('blobSeq') ?? 0, ...this.blobs.getKeys({ reverse: true, limit: 1 }));
            blob = ++this.blobSeq;
            this.blobs.put(blob, request.body);
          }
          const uid = this.mailboxes.get([r.account, folder])?.nextUid ?? 1;
          this.mailboxes.put([r.account, folder], { nextUid: uid + 1 });
          this.index.put([r.account, folder, uid], { size: request.body.length, receivedAt: request.receivedAt, blob, flags: [] });
          first ??= { folder, uid };
          refs++;
        }
        first ??= { folder: '', uid: 0 };
        if (r.vacation) this.vacation.put([r.account, r.vacation.sender.toLowerCase()], r.vacation.until);
        this.dedupe.put(r.idempotencyKey, { account: r.account, ...first, at: request.receivedAt });
        out.push({ account: r.account, ...first, duplicate: false });
      }
      if (refs > 1) this.refs.put(blob, refs);
      return out;
    });
    await flushed(this.root);
    return results;
  }

  seen(idempotencyKey: string): AppendResult | undefined {
    const s = this.dedupe.get(idempotencyKey);
    return s && { account: s.account, folder: s.folder, uid: s.uid, duplicate: true };
  }

  rules(account: string): string | undefined {
    return this.rulesDb.get(account)?.source;
  }

  async setRules(account: string, source: string | undefined): Promise<void> {
    await commit(this.root, () => (source === undefined ? this.rulesDb.remove(account) : this.rulesDb.put(account, { source, at: Date.now() })));
    await flushed(this.root);
  }

  vacationAnswered(account: string, sender: string, now: number): boolean {
    return (this.vacation.get([account, sender.toLowerCase()]) ?? 0) > now;
  }

  /**
   * Forgets the idempotency keys of messages that arrived before `before`: by then no sender
   * still retries them (the queue lifetime is over), so the table does not grow for ever.
   * Looks at up to `limit` keys from `from` on, in key order; returns how many went and where
   * the next batch starts (undefined: the pass is done). Not flushed: a lost prune is redone.
   */
  async prune(before: number, from?: string, limit = 10_000): Promise<{ pruned: number; next?: string }> {
    const batch = [...this.dedupe.getRange({ start: from, limit: limit + 1 })];
    const next = batch.length > limit ? batch.pop()!.key : undefined;
    const old = batch.filter(({ value }) => value.at !== undefined && value.at < before).map(({ key }) => key);
    if (old.length) await commit(this.root, () => old.forEach((key) => this.dedupe.remove(key)));
    return { pruned: old.length, next };
  }

  /** How many idempotency keys are kept. */
  get dedupeSize(): number {
    return (this.dedupe.getStats() as { entryCount: number }).entryCount;
  }

  list(account: string, folder = INBOX): MessageInfo[] {
    const out: MessageInfo[] = [];
    for (const { key, value } of this.index.getRange({ start: [account, folder, 0], end: [account, folder, Number.MAX_SAFE_INTEGER] })) {
      out.push(info(key, value));
    }
    return out;
  }

  fetch(account: string, folder: string, uid: number): { info: MessageInfo; body: Buffer } | undefined {
    const entry = this.index.get([account, folder, uid]);
    if (!entry) return undefined;
    const body = this.blobs.get(entry.blob);
    if (!body) throw new Error(`blob ${entry.blob} of ${account}/${folder}/${uid} is missing`);
    return { info: info([account, folder, uid], entry), body };
  }

  async delete(account: string, folder: string, uids: number[]): Promise<number> {
    const deleted = await commit(this.root, () => {
      let n = 0;
      for (const uid of uids) {
        const key: IndexKey = [account, folder, uid];
        const entry = this.index.get(key);
        if (!entry) continue;
        this.index.remove(key);
        const left = (this.refs.get(entry.blob) ?? 1) - 1;
        if (left > 0) this.refs.put(entry.blob, left);
        else {
          this.refs.remove(entry.blob);
          this.blobs.remove(entry.blob);
        }
        n++;
      }
      return n;
    });
    await flushed(this.root);
    return deleted;
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}

function info([, folder, uid]: IndexKey, e: IndexEntry): MessageInfo {
  return { folder, uid, size: e.size, receivedAt: e.receivedAt, flags: e.flags };
}

/**
 * One pass over the whole idempotency table, forgetting the keys of messages that arrived
 * before `before` (see `prune`); `between` runs between batches (the backend yields to its
 * deliveries there) and ends the pass early by answering false. Returns how many went.
 */
export async function pruneDedupe(store: Pick<MailStore, 'prune'>, before: number, between: () => Promise<boolean> = async () => true): Promise<number> {
  let pruned = 0;
  let from: string | undefined;
  do {
    const batch = await store.prune(before, from);
    pruned += batch.pruned;
    from = batch.next;
  } while (from !== undefined && (await between()));
  return pruned;
}
