import { Replies } from '@mailgrid/core';
import type { Database, Key } from 'lmdb';
import { LoggedLmdb, type LoggedOptions } from './logged-lmdb.js';
import { INBOX, type AccountRecord, type AppendRequest, type AppendResult, type FolderInfo, type MailStore, type MessageInfo } from './store.js';

interface Mailbox {
  nextUid: number;
  uidValidity: number;
}

const SEEN = '\\Seen';

interface IndexEntry {
  size: number;
  receivedAt: number;
  blob: number;
  flags: string[];
}

type IndexKey = [account: string, folder: string, uid: number];

/**
 * The mailbox store on LMDB, one environment per node:
 * - `mailboxes` [account, folder] → next uid, and the UIDVALIDITY given when it was made
 * - `passwords` account → its password hash (replicates and moves with the account)
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
 * - `log`, `replication`: every write transaction as an entry of an ordered log (see
 *               LoggedLmdb); a replica applies them as they are, a recovering one catches
 *               up from them. A blob is logged by reference.
 * Concurrent appends are batched by lmdb-js into one transaction and share one flush.
 */
export interface StoreOptions extends LoggedOptions {
  /**
   * Whether writes to an account are taken here now, asked inside the write transaction
   * (so once it answers no, no later write reaches the account: a move exports it after
   * that). Absent: always.
   */
  accepts?: (account: string) => boolean;
}

export class LmdbMailStore extends LoggedLmdb implements MailStore {
  private readonly mailboxes: Database<{ nextUid: number; uidValidity?: number }, [string, string]>;
  private readonly passwords: Database<{ hash: string; at: number }, string>;
  private readonly index: Database<IndexEntry, IndexKey>;
  private readonly blobs: Database<Buffer, number>;
  private readonly refs: Database<number, number>;
  private readonly dedupe: Database<{ account: string; folder: string; uid: number; at?: number }, string>;
  private readonly meta: Database<number, string>;
  private readonly rulesDb: Database<{ source: string; at: number }, string>;
  private readonly vacation: Database<number, [string, string]>;

  constructor(
    path: string,
    private readonly options: StoreOptions = {},
  ) {
    super(
      path,
      [
        { name: 'mailboxes' },
        { name: 'index' },
        { name: 'blobs', binary: true, byReference: true },
        { name: 'refs' },
        { name: 'dedupe' },
        { name: 'meta' },
        { name: 'rules' },
        { name: 'vacation' },
        { name: 'passwords' },
      ],
      options,
    );
    this.mailboxes = this.table('mailboxes');
    this.index = this.table('index');
    this.blobs = this.table('blobs');
    this.refs = this.table('refs');
    this.dedupe = this.table('dedupe');
    this.meta = this.table('meta');
    this.rulesDb = this.table('rules');
    this.vacation = this.table('vacation');
    this.passwords = this.table('passwords');
  }

  async append(request: AppendRequest): Promise<AppendResult[]> {
    const results = await this.write(() => {
      const out: AppendResult[] = [];
      let blob = 0;
      let refs = 0;
      for (const r of request.recipients) {
        const seen = this.dedupe.get(r.idempotencyKey);
        if (seen) {
          out.push({ account: seen.account, folder: seen.folder, uid: seen.uid, duplicate: true });
          continue;
        }
        if (!this.taken(r.account)) {
          out.push({ account: r.account, folder: '', uid: 0, duplicate: false, refused: true });
          continue;
        }
        let first: { folder: string; uid: number } | undefined;
        for (const folder of r.folders ?? [request.folder ?? INBOX]) {
          if (!blob) blob = this.newBlob(request.body);
          const box = this.mailbox(r.account, folder, request.receivedAt);
          const uid = box.nextUid;
          this.set('mailboxes', [r.account, folder], { ...box, nextUid: uid + 1 });
          this.set('index', [r.account, folder, uid], { size: request.body.length, receivedAt: request.receivedAt, blob, flags: [] });
          first ??= { folder, uid };
          refs++;
        }
        first ??= { folder: '', uid: 0 };
        if (r.vacation) this.set('vacation', [r.account, r.vacation.sender.toLowerCase()], r.vacation.until);
        this.set('dedupe', r.idempotencyKey, { account: r.account, ...first, at: request.receivedAt });
        out.push({ account: r.account, ...first, duplicate: false });
      }
      if (refs > 1) this.set('refs', blob, refs);
      return out;
    });
    return results;
  }

  /**
   * A folder's record; a new one's UIDVALIDITY is the time it is made in seconds (a folder
   * made again after it was removed gets a newer one). Records written before UIDVALIDITY
   * existed read as 1: their uids were never reused either.
   */
  private mailbox(account: string, folder: string, now = Date.now()): Mailbox {
    const box = this.mailboxes.get([account, folder]);
    return box ? { nextUid: box.nextUid, uidValidity: box.uidValidity ?? 1 } : { nextUid: 1, uidValidity: Math.floor(now / 1000) };
  }

  folders(account: string): FolderInfo[] {
    const out: FolderInfo[] = [];
    for (const { key, value } of this.ofAccount(this.mailboxes, account)) {
      let messages = 0;
      let unseen = 0;
      for (const m of this.index.getRange({ start: [account, key[1], 0], end: [account, key[1], Number.MAX_SAFE_INTEGER] })) {
        messages++;
        if (!m.value.flags.includes(SEEN)) unseen++;
      }
      out.push({ name: key[1], uidValidity: value.uidValidity ?? 1, uidNext: value.nextUid, messages, unseen });
    }
    if (!out.some((f) => f.name === INBOX)) out.unshift({ name: INBOX, ...this.folderIds(account, INBOX), messages: 0, unseen: 0 });
    return out;
  }

  /** UIDVALIDITY and UIDNEXT of a folder (of one not made yet: what it will get; not written by a read). */
  folderIds(account: string, folder = INBOX): { uidValidity: number; uidNext: number } {
    const box = this.mailbox(account, folder);
    return { uidValidity: box.uidValidity, uidNext: box.nextUid };
  }

  async setFlags(account: string, folder: string, uids: number[], add: string[], remove: string[]): Promise<number> {
    return this.eachMessage(account, folder, uids, (key, entry) => {
      const flags = [...new Set([...entry.flags.filter((f) => !remove.includes(f)), ...add])];
      if (flags.length === entry.flags.length && flags.every((f) => entry.flags.includes(f))) return false;
      this.set('index', key, { ...entry, flags });
      return true;
    });
  }

  passwordHash(account: string): { hash: string; at: number } | undefined {
    return this.passwords.get(account);
  }

  async setPasswordHash(account: string, hash: string): Promise<void> {
    await this.write(() => {
      this.mustTake(account);
      this.set('passwords', account, { hash, at: Date.now() });
    });
  }

  /** Stores a message body under a new id. Counted in meta (and so replicated): an id is never used twice, even after its blob went. */
  private newBlob(body: Buffer): number {
    const id = (this.meta.get('blobSeq') ?? 0) + 1;
    this.set('meta', 'blobSeq', id);
    this.set('blobs', id, body);
    return id;
  }

  private taken(account: string): boolean {
    return this.options.accepts?.(account) ?? true;
  }

  /** Inside a write: refuses one to an account not taken here now. */
  private mustTake(account: string): void {
    if (!this.taken(account)) throw Replies.accountMoving(account);
  }

  seen(idempotencyKey: string): AppendResult | undefined {
    const s = this.dedupe.get(idempotencyKey);
    return s && { account: s.account, folder: s.folder, uid: s.uid, duplicate: true };
  }

  rules(account: string): string | undefined {
    return this.rulesDb.get(account)?.source;
  }

  async setRules(account: string, source: string | undefined): Promise<void> {
    await this.write(() => {
      this.mustTake(account);
      if (source === undefined) this.unset('rules', account);
      else this.set('rules', account, { source, at: Date.now() });
    });
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
    if (old.length) await this.write(() => old.forEach((key) => this.unset('dedupe', key)));
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
    return this.eachMessage(account, folder, uids, (key, entry) => {
      this.removeMessage(key, entry);
      return true;
    });
  }

  /** One write over the messages of `uids` that exist (of an account taken here); how many `change` changed. */
  private eachMessage(account: string, folder: string, uids: number[], change: (key: IndexKey, entry: IndexEntry) => boolean): Promise<number> {
    return this.write(() => {
      this.mustTake(account);
      let n = 0;
      for (const uid of uids) {
        const key: IndexKey = [account, folder, uid];
        const entry = this.index.get(key);
        if (entry && change(key, entry)) n++;
      }
      return n;
    });
  }

  /** Inside a write: one index entry goes, and its blob with the last entry that points at it. */
  private removeMessage(key: IndexKey, entry: IndexEntry): void {
    this.unset('index', key);
    const left = (this.refs.get(entry.blob) ?? 1) - 1;
    if (left > 0) this.set('refs', entry.blob, left);
    else {
      if (this.refs.get(entry.blob) !== undefined) this.unset('refs', entry.blob);
      this.unset('blobs', entry.blob);
    }
  }

  // --- account moves ----------------------------------------------------------------------

  /** The keys of a table that start with `account` (array keys sort by their first element). */
  private ofAccount<K extends [string, ...Key[]], V>(db: Database<V, K>, account: string): { key: K; value: V }[] {
    const out: { key: K; value: V }[] = [];
    for (const e of db.getRange({ start: [account] as unknown as K })) {
      if (e.key[0] !== account) break;
      out.push(e);
    }
    return out;
  }

  /**
   * The idempotency keys recorded for an account's deliveries: a pass over the table (a
   * move is rare), read outside any write transaction so appends do not wait behind it
   * (the account takes no writes here while it is read).
   */
  private *dedupeOf(account: string) {
    for (const e of this.dedupe.getRange({})) if (e.value.account === account) yield e;
  }

  /**
   * Everything of an account, in batches of about `batchBytes`: folders first, then each
   * message (its body with the first message that uses the blob; a large body in `part`
   * records ahead of it), rules, vacation marks, idempotency keys.
   */
  *exportAccount(account: string, batchBytes = 1 << 20): Generator<AccountRecord[], void, void> {
    let batch: AccountRecord[] = [];
    let bytes = 0;
    const sent = new Set<number>();
    function* add(r: AccountRecord, size = 64): Generator<AccountRecord[], void, void> {
      batch.push(r);
      bytes += size;
      if (bytes < batchBytes) return;
      yield batch;
      batch = [];
      bytes = 0;
    }
    for (const { key, value } of this.ofAccount(this.mailboxes, account)) yield* add({ kind: 'mailbox', folder: key[1], nextUid: value.nextUid, uidValidity: value.uidValidity });
    const password = this.passwords.get(account);
    if (password) yield* add({ kind: 'password', hash: password.hash, at: password.at });
    for (const { key, value } of this.ofAccount(this.index, account)) {
      let body: Buffer | undefined;
      if (!sent.has(value.blob)) {
        sent.add(value.blob);
        body = this.blobs.get(value.blob);
        if (!body) throw new Error(`blob ${value.blob} of ${key.join('/')} is missing`);
        // A body larger than a batch travels in parts of one batch each, joined on import.
        for (let at = 0; body.length > batchBytes && at < body.length; at += batchBytes)
          yield* add({ kind: 'part', blob: value.blob, chunk: body.subarray(at, at + batchBytes) }, batchBytes);
        if (body.length > batchBytes) body = undefined;
      }
      yield* add({ kind: 'message', folder: key[1], uid: key[2], size: value.size, receivedAt: value.receivedAt, flags: value.flags, blob: value.blob, body }, 64 + (body?.length ?? 0));
    }
    const rules = this.rulesDb.get(account);
    if (rules) yield* add({ kind: 'rules', source: rules.source, at: rules.at });
    for (const { key, value } of this.ofAccount(this.vacation, account)) yield* add({ kind: 'vacation', sender: key[1], until: value });
    for (const { key, value } of [...this.dedupeOf(account)]) yield* add({ kind: 'dedupe', key, folder: value.folder, uid: value.uid, at: value.at });
    if (batch.length) yield batch;
  }

  /**
   * Takes in an account exported by another group's store, in logged writes (so this
   * group's replicas get it too), one per batch; what an earlier, unfinished import left
   * goes first. Returns how many messages and bytes came.
   */
  async importAccount(account: string, batches: AsyncIterable<AccountRecord[]>): Promise<{ messages: number; bytes: number }> {
    await this.purgeAccount(account);
    /** The exporter's blob id → the one here, and how many of the account's messages use it. */
    const blobs = new Map<number, { id: number; refs: number }>();
    const parts = new Map<number, Buffer[]>();
    let messages = 0;
    let bytes = 0;
    for await (const batch of batches) {
      await this.write(() => {
        for (const r of batch) {
          if (r.kind === 'mailbox') this.set('mailboxes', [account, r.folder], { nextUid: r.nextUid, uidValidity: r.uidValidity ?? 1 });
          else if (r.kind === 'password') this.set('passwords', account, { hash: r.hash, at: r.at });
          else if (r.kind === 'part') parts.set(r.blob, [...(parts.get(r.blob) ?? []), r.chunk]);
          else if (r.kind === 'message') {
            let b = blobs.get(r.blob);
            if (!b) {
              const body = r.body ?? (parts.has(r.blob) ? Buffer.concat(parts.get(r.blob)!) : undefined);
              if (!body) throw Replies.malformedRequest(`message ${r.folder}/${r.uid} names blob ${r.blob} before its body`);
              parts.delete(r.blob);
              blobs.set(r.blob, (b = { id: this.newBlob(body), refs: 0 }));
              bytes += body.length;
            }
            if (++b.refs > 1) this.set('refs', b.id, b.refs);
            this.set('index', [account, r.folder, r.uid], { size: r.size, receivedAt: r.receivedAt, blob: b.id, flags: r.flags });
            messages++;
          } else if (r.kind === 'rules') this.set('rules', account, { source: r.source, at: r.at });
          else if (r.kind === 'vacation') this.set('vacation', [account, r.sender], r.until);
          else this.set('dedupe', r.key, { account, folder: r.folder, uid: r.uid, at: r.at });
        }
      });
    }
    return { messages, bytes };
  }

  /** Removes everything of an account (it lives in another group now); returns how many messages went. */
  async purgeAccount(account: string): Promise<number> {
    const keys = [...this.dedupeOf(account)].map((e) => e.key);
    return this.write(() => this.purgeWithin(account, keys));
  }

  private purgeWithin(account: string, dedupeKeys: string[]): number {
    const messages = this.ofAccount(this.index, account);
    for (const { key, value } of messages) this.removeMessage(key, value);
    for (const { key } of this.ofAccount(this.mailboxes, account)) this.unset('mailboxes', key);
    for (const { key } of this.ofAccount(this.vacation, account)) this.unset('vacation', key);
    if (this.rulesDb.get(account)) this.unset('rules', account);
    if (this.passwords.get(account)) this.unset('passwords', account);
    for (const key of dedupeKeys) this.unset('dedupe', key);
    return messages.length;
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
