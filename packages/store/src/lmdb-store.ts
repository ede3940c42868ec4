import { MAX_FOLDER_NAME_BYTES, Replies } from '@mailgrid/core';
import type { Database, Key } from 'lmdb';
import { randomBytes } from 'node:crypto';
import { LoggedLmdb, type LoggedOptions } from './logged-lmdb.js';
import {
  INBOX,
  type AccountRecord,
  type Op,
  type AppendRequest,
  type AppendResult,
  type FolderInfo,
  type MailboxChange,
  type MailStore,
  type MessageInfo,
  type StoreFlagsResult,
  type ThreadKeys,
} from './store.js';

/** A folder's record. Fields a record written by an older version lacks read as their defaults. */
interface Mailbox {
  nextUid: number;
  uidValidity: number;
  /** The highest mod-sequence of a change in it (its HIGHESTMODSEQ). */
  modseq: number;
  /** RFC 8474 MAILBOXID. */
  id: string;
  /** RFC 6154: `\Sent`, `\Drafts`, ... */
  specialUse?: string;
}

/** An account's own counters: its mod-sequence (one order for all its folders), its quota and what it uses. */
interface AccountMeta {
  modseq: number;
  /** Bytes; absent or 0: no limit. */
  quota?: number;
  /** Bytes of its messages (each copy counted); absent until first counted. */
  used?: number;
  /** The last UIDVALIDITY given: a folder made again in the same second still gets a newer one. */
  uidValidity?: number;
}

const SEEN = '\\Seen';
const DELETED = '\\Deleted';

/** The folders every account has (RFC 6154 special use), made at its first access session. */
export const DEFAULT_MAILBOXES: { name: string; specialUse?: string }[] = [
  { name: INBOX },
  { name: 'Sent', specialUse: '\\Sent' },
  { name: 'Drafts', specialUse: '\\Drafts' },
  { name: 'Trash', specialUse: '\\Trash' },
  { name: 'Junk', specialUse: '\\Junk' },
  { name: 'Archive', specialUse: '\\Archive' },
];

interface IndexEntry {
  size: number;
  receivedAt: number;
  blob: number;
  flags: string[];
  modseq?: number;
  emailId?: string;
  threadId?: string;
}

type IndexKey = [account: string, folder: string, uid: number];

/** A folder's figures, kept with every change of its index so that STATUS, LIST and SELECT never count. */
interface FolderCounts {
  messages: number;
  unseen: number;
  deleted: number;
  size: number;
}
type ModseqKey = [account: string, folder: string, modseq: number, uid: number];

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
 * - `accounts`  account → its mod-sequence counter, quota and usage, last UIDVALIDITY
 * - `modseqs`   [account, folder, mod-sequence, uid] → 1 for a message there now (its
 *               last change), 0 for one expunged then: what changed after a mod-sequence is
 *               a range read, however large the folder (QRESYNC, the change feed, every
 *               session's look), and VANISHED (EARLIER) is exact (kept until the folder goes)
 * - `threads`   [account, message-id] → THREADID, so replies join their thread
 * - `subscriptions` [account, folder] → true (a name may be subscribed before it exists)
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
  private readonly mailboxes: Database<Partial<Mailbox> & { nextUid: number }, [string, string]>;
  private readonly passwords: Database<{ hash: string; at: number }, string>;
  private readonly index: Database<IndexEntry, IndexKey>;
  private readonly blobs: Database<Buffer, number>;
  private readonly refs: Database<number, number>;
  private readonly dedupe: Database<{ account: string; folder: string; uid: number; at?: number }, string>;
  private readonly meta: Database<number, string>;
  private readonly rulesDb: Database<{ source: string; at: number }, string>;
  private readonly vacation: Database<number, [string, string]>;
  private readonly accounts: Database<AccountMeta, string>;
  private readonly modseqs: Database<0 | 1, ModseqKey>;
  private readonly counts: Database<FolderCounts, [string, string]>;
  /** The seq of each account's last write (as long as it may not be durable yet). */
  private readonly written = new Map<string, number>();
  /** The seq of the last write that changed a table not kept by account. */
  private unattributed = 0;
  private start = { epoch: NaN, seq: 0 };
  /** Inside a write: the figures of each folder it changed so far, by account and folder (NUL between). */
  private readonly counting = new Map<string, { key: [string, string]; counts: FolderCounts }>();
  private readonly threads: Database<string, [string, string]>;
  private readonly subscriptions: Database<true, [string, string]>;

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
        { name: 'accounts' },
        { name: 'modseqs' },
        { name: 'threads' },
        { name: 'subscriptions' },
        { name: 'counts' },
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
    this.accounts = this.table('accounts');
    this.modseqs = this.table('modseqs');
    this.counts = this.table('counts');
    this.threads = this.table('threads');
    this.subscriptions = this.table('subscriptions');
  }

  async append(request: AppendRequest): Promise<AppendResult[]> {
    const changes: MailboxChange[] = [];
    const results = await this.write(() => {
      const out: AppendResult[] = [];
      let blob = 0;
      let refs = 0;
      const emailId = newId('M');
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
        const folders = r.folders ?? [request.folder ?? INBOX];
        const account = this.accountMeta(r.account);
        if (account.quota && account.used! + request.body.length * folders.length > account.quota) {
          out.push({ account: r.account, folder: '', uid: 0, duplicate: false, overQuota: true });
          continue;
        }
        let first: { folder: string; uid: number } | undefined;
        const threadId = folders.length ? this.threadOf(r.account, request.thread) : '';
        for (const folder of folders) {
          if (!blob) blob = this.newBlob(request.body);
          const uid = this.put(r.account, account, folder, { size: request.body.length, receivedAt: request.receivedAt, blob, flags: request.flags ?? [], emailId, threadId }, changes);
          first ??= { folder, uid };
          refs++;
        }
        this.setAccount(r.account, account);
        first ??= { folder: '', uid: 0 };
        if (r.vacation) this.set('vacation', [r.account, r.vacation.sender.toLowerCase()], r.vacation.until);
        this.set('dedupe', r.idempotencyKey, { account: r.account, ...first, at: request.receivedAt });
        out.push({ account: r.account, ...first, duplicate: false });
      }
      if (refs > 1) this.set('refs', blob, refs);
      return out;
    });
    this.announce(changes);
    return results;
  }

  /**
   * Inside a write: one new message in a folder (made on first use) under its next uid, at
   * the account's next mod-sequence; counted in `account.used` (written by the caller).
   */
  private put(account: string, meta: AccountMeta, folder: string, entry: Omit<IndexEntry, 'modseq'>, changes: MailboxChange[]): number {
    const box = this.mailbox(account, folder, meta);
    const uid = box.nextUid;
    const modseq = this.nextModseq(meta);
    this.set('mailboxes', [account, folder], { ...box, nextUid: uid + 1, modseq });
    this.setEntry([account, folder, uid], { ...entry, modseq });
    this.changedAt(account, folder, uid, modseq, 1);
    meta.used! += entry.size;
    changes.push({ account, folder, modseq, appended: [uid] });
    return uid;
  }

  /** The account's counters, its usage counted once if an older version never did. */
  private accountMeta(account: string): AccountMeta {
    const meta = { ...(this.accounts.get(account) ?? { modseq: 0 }) };
    if (meta.used === undefined) {
      meta.used = 0;
      for (const { value } of this.ofAccount(this.index, account)) meta.used += value.size;
    }
    return meta;
  }

  private setAccount(account: string, meta: AccountMeta): void {
    this.set('accounts', account, meta);
  }

  /** The next mod-sequence of an account (inside its write; the caller writes `meta`). */
  private nextModseq(meta: AccountMeta): number {
    return ++meta.modseq;
  }

  /** Inside a write: a message's last change is at `modseq` now (1: it is there, 0: expunged); its entry at `before` goes. */
  private changedAt(account: string, folder: string, uid: number, modseq: number, live: 0 | 1, before?: number): void {
    if (before !== undefined && this.modseqs.get([account, folder, before, uid]) !== undefined) this.unset('modseqs', [account, folder, before, uid]);
    this.set('modseqs', [account, folder, modseq, uid], live);
  }

  /** A folder's figures: as kept, or counted once if an older version never kept them. */
  private countsOf(account: string, folder: string): FolderCounts {
    const kept = this.counts.get([account, folder]);
    if (kept) return { ...kept };
    const c: FolderCounts = { messages: 0, unseen: 0, deleted: 0, size: 0 };
    for (const { value } of this.ofFolder(this.index, account, folder)) count(c, value, 1);
    return c;
  }

  /**
   * Inside a write: a message's index entry set (or gone: `entry` undefined), `before` being
   * what it was; its folder's figures change with it (counted before the entry changes).
   */
  private setEntry(key: IndexKey, entry: IndexEntry | undefined, before?: IndexEntry): void {
    const id = `${key[0]}\0${key[1]}`;
    let kept = this.counting.get(id);
    if (!kept) this.counting.set(id, (kept = { key: [key[0], key[1]], counts: this.countsOf(key[0], key[1]) }));
    const c = kept.counts;
    if (before) count(c, before, -1);
    if (entry) count(c, entry, 1);
    if (entry) this.set('index', key, entry);
    else this.unset('index', key);
  }

  /** The figures of the folders this write changed, written once at its end. */
  protected override workEnded(ok: boolean): void {
    try {
      if (ok) for (const { key, counts } of this.counting.values()) this.set('counts', key, counts);
    } finally {
      this.counting.clear();
    }
  }

  /** The `modseqs` entries of a folder, or of those after a mod-sequence. */
  private modseqsOf(account: string, folder: string, after = -1): { key: ModseqKey; value: 0 | 1 }[] {
    return [...this.modseqs.getRange({ start: [account, folder, after + 1, 0], end: [account, folder, Number.MAX_SAFE_INTEGER, 0] })];
  }

  /**
   * The THREADID of a message with these keys: that of a message it answers, or of an
   * earlier copy of itself, else a new one; its keys are remembered for the replies to come.
   */
  private threadOf(account: string, keys: ThreadKeys | undefined): string {
    const ids = [keys?.messageId, ...(keys?.parents ?? [])].filter((k): k is string => Boolean(k)).map((k) => k.toLowerCase());
    let thread: string | undefined;
    for (const id of ids) if ((thread = this.threads.get([account, id]))) break;
    thread ??= newId('T');
    for (const id of ids) if (!this.threads.get([account, id])) this.set('threads', [account, id], thread);
    return thread;
  }

  /**
   * A folder's record; a new one's UIDVALIDITY is the time it is made in seconds, and never
   * one the account gave before (a folder made again at once still gets a newer one).
   * Records written before UIDVALIDITY existed read as 1: their uids were never reused either.
   */
  private mailbox(account: string, folder: string, meta?: AccountMeta, now = Date.now()): Mailbox {
    const box = this.mailboxes.get([account, folder]);
    if (box) return { nextUid: box.nextUid, uidValidity: box.uidValidity ?? 1, modseq: box.modseq ?? 1, id: box.id ?? `F${account}/${folder}`, specialUse: box.specialUse };
    const uidValidity = Math.max(Math.floor(now / 1000), (meta?.uidValidity ?? 0) + 1);
    if (meta) meta.uidValidity = uidValidity;
    return { nextUid: 1, uidValidity, modseq: 0, id: newId('F'), specialUse: DEFAULT_MAILBOXES.find((d) => d.name === folder)?.specialUse };
  }

  folders(account: string): FolderInfo[] {
    const out: FolderInfo[] = [];
    for (const { key } of this.ofAccount(this.mailboxes, account)) out.push(this.folderInfo(account, key[1]));
    if (!out.some((f) => f.name === INBOX)) out.unshift(this.folderInfo(account, INBOX));
    return out;
  }

  /** A folder's figures (counted from its messages); of one not made yet, what it will start with. */
  folderInfo(account: string, folder: string): FolderInfo {
    const box = this.mailbox(account, folder, this.accounts.get(account));
    return {
      name: folder,
      uidValidity: box.uidValidity,
      uidNext: box.nextUid,
      ...this.countsOf(account, folder),
      highestModseq: box.modseq,
      id: box.id,
      specialUse: box.specialUse ?? '',
      exists: this.mailboxes.get([account, folder]) !== undefined || folder === INBOX,
      subscribed: this.subscriptions.get([account, folder]) === true,
    };
  }

  /** UIDVALIDITY and UIDNEXT of a folder (of one not made yet: what it will get; not written by a read). */
  folderIds(account: string, folder = INBOX): { uidValidity: number; uidNext: number } {
    const box = this.mailbox(account, folder, this.accounts.get(account));
    return { uidValidity: box.uidValidity, uidNext: box.nextUid };
  }

  async setFlags(account: string, folder: string, uids: number[], add: string[], remove: string[]): Promise<number> {
    const changed = new Set<number>();
    if (add.length) for (const c of (await this.storeFlags(account, folder, uids, 'add', add)).changed) changed.add(c.uid);
    if (remove.length) for (const c of (await this.storeFlags(account, folder, uids, 'remove', remove)).changed) changed.add(c.uid);
    return changed.size;
  }

  // --- IMAP: folders, flags with mod-sequences, expunge, copy and move, append ------------

  /** Makes the account's default folders (INBOX and the special-use ones) that are missing; true if it made any. */
  async ensureMailboxes(account: string): Promise<boolean> {
    if (DEFAULT_MAILBOXES.every((d) => this.mailboxes.get([account, d.name]))) return false;
    const changes: MailboxChange[] = [];
    const made = await this.write(() => {
      this.mustTake(account);
      const meta = this.accountMeta(account);
      let any = false;
      for (const d of DEFAULT_MAILBOXES) {
        if (this.mailboxes.get([account, d.name])) continue;
        this.set('mailboxes', [account, d.name], this.mailbox(account, d.name, meta));
        any = true;
      }
      if (any) this.setAccount(account, meta);
      return any;
    });
    if (made) changes.push({ account, folder: '', modseq: 0, mailboxes: true });
    this.announce(changes);
    return made;
  }

  async createMailbox(account: string, folder: string, specialUse?: string): Promise<FolderInfo> {
    await this.write(() => {
      this.mustTake(account);
      mustFit(folder);
      if (folder === INBOX || this.mailboxes.get([account, folder])) throw Replies.mailboxExists(folder);
      const meta = this.accountMeta(account);
      this.set('mailboxes', [account, folder], { ...this.mailbox(account, folder, meta), ...(specialUse ? { specialUse } : {}) });
      this.setAccount(account, meta);
    });
    this.announce([{ account, folder, modseq: 0, mailboxes: true }]);
    return this.folderInfo(account, folder);
  }

  /** Removes a folder with its messages (INBOX cannot go); its name may be made again, with a newer UIDVALIDITY. */
  async deleteMailbox(account: string, folder: string): Promise<void> {
    await this.write(() => {
      this.mustTake(account);
      if (folder === INBOX) throw Replies.mailboxRefused('INBOX cannot be deleted');
      if (!this.mailboxes.get([account, folder])) throw Replies.noSuchMailbox(folder);
      const meta = this.accountMeta(account);
      for (const { key, value } of this.ofFolder(this.index, account, folder)) {
        this.removeMessage(key, value);
        meta.used! -= value.size;
      }
      for (const { key } of this.modseqsOf(account, folder)) this.unset('modseqs', key);
      if (this.counts.get([account, folder])) this.unset('counts', [account, folder]);
      this.unset('mailboxes', [account, folder]);
      this.setAccount(account, meta);
    });
    this.announce([{ account, folder, modseq: 0, mailboxes: true }]);
  }

  /**
   * Renames a folder and those under it (`/`), keeping their UIDVALIDITY, uids and
   * mod-sequences. INBOX is special (RFC 9051 §6.3.6): its messages move to the new
   * folder and INBOX stays, empty, with its uids going on.
   */
  async renameMailbox(account: string, from: string, to: string): Promise<void> {
    const changes: MailboxChange[] = [{ account, folder: '', modseq: 0, mailboxes: true }];
    await this.write(() => {
      this.mustTake(account);
      if (!this.mailboxes.get([account, from]) && from !== INBOX) throw Replies.noSuchMailbox(from);
      if (to === INBOX || this.mailboxes.get([account, to])) throw Replies.mailboxExists(to);
      const meta = this.accountMeta(account);
      const moves = from === INBOX ? [[INBOX, to]] : this.ofAccount(this.mailboxes, account).map((e) => e.key[1]).filter((n) => n === from || n.startsWith(`${from}/`)).map((n) => [n, to + n.slice(from.length)]);
      // Every new name is checked before anything moves: lmdb-js keeps what a transaction wrote before a throw.
      for (const [, now] of moves) {
        mustFit(now);
        if (this.mailboxes.get([account, now])) throw Replies.mailboxExists(now);
      }
      for (const [old, now] of moves) {
        const box = this.mailbox(account, old, meta);
        const moved = old === INBOX ? { ...this.mailbox(account, now, meta), nextUid: box.nextUid, modseq: box.modseq } : box;
        // INBOX stays, with its UIDVALIDITY: what leaves it has vanished from it (its sessions and QRESYNC clients are told).
        const left: number[] = [];
        const modseq = old === INBOX ? this.nextModseq(meta) : 0;
        for (const { key, value } of this.ofFolder(this.index, account, old)) {
          this.setEntry(key, undefined, value);
          this.setEntry([account, now, key[2]], value);
          if (old === INBOX) left.push(key[2]);
        }
        if (this.counts.get([account, old])) this.unset('counts', [account, old]);
        for (const { key, value } of this.modseqsOf(account, old)) {
          // INBOX's expunges stay with INBOX (its UIDVALIDITY stays); everything else goes with the name.
          if (old === INBOX && value === 0) continue;
          this.unset('modseqs', key);
          this.set('modseqs', [account, now, key[2], key[3]], value);
        }
        for (const uid of left) this.set('modseqs', [account, INBOX, modseq, uid], 0);
        this.set('mailboxes', [account, now], moved);
        if (old === INBOX) {
          this.set('mailboxes', [account, INBOX], { ...box, modseq });
          if (left.length) changes.push({ account, folder: INBOX, modseq, expunged: left });
        } else this.unset('mailboxes', [account, old]);
        // Subscriptions follow the folders they name (as Dovecot's do); INBOX's stays with INBOX.
        if (old !== INBOX && this.subscriptions.get([account, old])) {
          this.unset('subscriptions', [account, old]);
          this.set('subscriptions', [account, now], true);
        }
      }
      this.setAccount(account, meta);
    });
    this.announce(changes);
  }

  async subscribe(account: string, folder: string, on: boolean): Promise<void> {
    await this.write(() => {
      this.mustTake(account);
      mustFit(folder);
      if (on) this.set('subscriptions', [account, folder], true);
      else if (this.subscriptions.get([account, folder])) this.unset('subscriptions', [account, folder]);
    });
  }

  /** The names an account subscribed to (some may not exist). */
  subscribed(account: string): string[] {
    return this.ofAccount(this.subscriptions, account).map((e) => e.key[1]);
  }

  /**
   * STORE (RFC 9051, with CONDSTORE's UNCHANGEDSINCE): flags added, removed or replaced on
   * each of `uids` that exists. A message whose mod-sequence is past `unchangedSince` is
   * left as it is and named in `modified`; one whose flags change gets the account's next
   * mod-sequence (one for the whole command).
   */
  async storeFlags(account: string, folder: string, uids: number[], op: 'add' | 'remove' | 'replace', flags: string[], unchangedSince?: number): Promise<StoreFlagsResult> {
    const result: StoreFlagsResult = { changed: [], modified: [] };
    await this.write(() => {
      this.mustTake(account);
      this.mustExist(account, folder);
      const meta = this.accountMeta(account);
      let modseq = 0;
      for (const uid of uids) {
        const key: IndexKey = [account, folder, uid];
        const entry = this.index.get(key);
        if (!entry) continue;
        if (unchangedSince !== undefined && (entry.modseq ?? 1) > unchangedSince) {
          result.modified.push(uid);
          continue;
        }
        const next = op === 'replace' ? [...new Set(flags)] : op === 'add' ? [...new Set([...entry.flags, ...flags])] : entry.flags.filter((f) => !flags.includes(f));
        if (next.length === entry.flags.length && next.every((f) => entry.flags.includes(f))) continue;
        modseq ||= this.nextModseq(meta);
        this.setEntry(key, { ...entry, flags: next, modseq }, entry);
        this.changedAt(account, folder, uid, modseq, 1, entry.modseq);
        result.changed.push({ uid, flags: next, modseq });
      }
      if (modseq) {
        this.set('mailboxes', [account, folder], { ...this.mailbox(account, folder, meta), modseq });
        this.setAccount(account, meta);
      }
    });
    if (result.changed.length) this.announce([{ account, folder, modseq: result.changed[0].modseq, flags: result.changed }]);
    return result;
  }

  /** Expunges the messages flagged \Deleted (of `uids` only, when given: UID EXPUNGE); returns their uids. */
  async expunge(account: string, folder: string, uids?: number[]): Promise<number[]> {
    const changes: MailboxChange[] = [];
    const gone = await this.write(() => {
      this.mustTake(account);
      this.mustExist(account, folder);
      const only = uids && new Set(uids);
      const doomed = this.ofFolder(this.index, account, folder).filter((e) => e.value.flags.includes(DELETED) && (!only || only.has(e.key[2])));
      return this.removeFrom(account, folder, doomed, changes);
    });
    this.announce(changes);
    return gone;
  }

  /** Inside a write: messages leave a folder, each remembered as vanished at one new mod-sequence. */
  private removeFrom(account: string, folder: string, entries: { key: IndexKey; value: IndexEntry }[], changes: MailboxChange[]): number[] {
    if (!entries.length) return [];
    const meta = this.accountMeta(account);
    const modseq = this.nextModseq(meta);
    for (const { key, value } of entries) {
      this.removeMessage(key, value);
      this.changedAt(account, folder, key[2], modseq, 0, value.modseq);
      meta.used! -= value.size;
    }
    this.set('mailboxes', [account, folder], { ...this.mailbox(account, folder, meta), modseq });
    this.setAccount(account, meta);
    const gone = entries.map((e) => e.key[2]);
    changes.push({ account, folder, modseq, expunged: gone });
    return gone;
  }

  /**
   * COPY or MOVE (RFC 6851) of `uids` to another folder of the account, in one write: each
   * copy shares its body, keeps its flags, EMAILID and THREADID and gets the next uid there;
   * a move expunges the originals. Returns the pairs of uids (UIDPLUS's COPYUID) and the
   * target's UIDVALIDITY. A copy that would go over the quota is refused whole.
   */
  async copyMessages(account: string, from: string, to: string, uids: number[], move: boolean): Promise<{ uidValidity: number; pairs: [number, number][] }> {
    const changes: MailboxChange[] = [];
    const out = await this.write(() => {
      this.mustTake(account);
      this.mustExist(account, from);
      this.mustExist(account, to);
      const meta = this.accountMeta(account);
      const entries = [...new Set(uids)].sort((a, b) => a - b).flatMap((uid) => {
        const value = this.index.get([account, from, uid]);
        return value ? [{ key: [account, from, uid] as IndexKey, value }] : [];
      });
      const adds = move ? 0 : entries.reduce((n, e) => n + e.value.size, 0);
      if (meta.quota && meta.used! + adds > meta.quota) throw Replies.overQuota(account);
      const pairs: [number, number][] = [];
      for (const { key, value } of entries) {
        this.set('refs', value.blob, (this.refs.get(value.blob) ?? 1) + 1);
        pairs.push([key[2], this.put(account, meta, to, { ...value, emailId: value.emailId ?? `B${value.blob}`, threadId: value.threadId ?? `B${value.blob}` }, changes)]);
      }
      this.setAccount(account, meta);
      if (move) this.removeFrom(account, from, entries, changes);
      return { uidValidity: this.mailbox(account, to, meta).uidValidity, pairs };
    });
    this.announce(changes);
    return out;
  }

  /** APPEND: a message into a folder that exists, with its flags and date; refused over the quota (`[OVERQUOTA]`). */
  async appendMessage(account: string, folder: string, body: Buffer, flags: string[], receivedAt: number, thread?: ThreadKeys): Promise<{ uid: number; uidValidity: number }> {
    const changes: MailboxChange[] = [];
    const out = await this.write(() => {
      this.mustTake(account);
      this.mustExist(account, folder);
      const meta = this.accountMeta(account);
      if (meta.quota && meta.used! + body.length > meta.quota) throw Replies.overQuota(account);
      const uid = this.put(account, meta, folder, { size: body.length, receivedAt, blob: this.newBlob(body), flags, emailId: newId('M'), threadId: this.threadOf(account, thread) }, changes);
      this.setAccount(account, meta);
      return { uid, uidValidity: this.mailbox(account, folder, meta).uidValidity };
    });
    this.announce(changes);
    return out;
  }

  /** The account's quota (bytes, 0: none) and what it uses. */
  quota(account: string): { limit: number; used: number } {
    const meta = this.accountMeta(account);
    return { limit: meta.quota ?? 0, used: meta.used! };
  }

  async setQuota(account: string, limit: number): Promise<void> {
    await this.write(() => {
      this.mustTake(account);
      const meta = this.accountMeta(account);
      this.setAccount(account, { ...meta, quota: limit });
    });
  }

  /**
   * What changed in a folder after mod-sequence `since` (CONDSTORE's CHANGEDSINCE, QRESYNC's
   * resync): messages with a newer mod-sequence, and uids expunged after it.
   */
  changedSince(account: string, folder: string, since: number): { changed: MessageInfo[]; vanished: number[] } {
    const changed: MessageInfo[] = [];
    const vanished: number[] = [];
    for (const { key, value } of this.modseqsOf(account, folder, since)) {
      const uid = key[3];
      if (value === 0) {
        vanished.push(uid);
        continue;
      }
      const entry = this.index.get([account, folder, uid]);
      if (entry) changed.push(info([account, folder, uid], entry));
    }
    changed.sort((a, b) => a.uid - b.uid);
    vanished.sort((a, b) => a - b);
    return { changed, vanished };
  }

  /** The account's mod-sequence now (the change feed resumes from one). */
  modseq(account: string): number {
    return this.accounts.get(account)?.modseq ?? 0;
  }

  /** Inside a write: an IMAP command on a folder that is not there is refused (`[NONEXISTENT]`). */
  private mustExist(account: string, folder: string): void {
    if (folder !== INBOX && !this.mailboxes.get([account, folder])) throw Replies.noSuchMailbox(folder);
  }

  /** Changes are announced once written and durable: a session never sees what a failover could undo. */
  private announce(changes: MailboxChange[]): void {
    for (const c of changes) this.emit('change', c);
  }

  /**
   * A read of what is durable: `read` runs on one snapshot, and its answer waits until the
   * log's end at that snapshot is on the in-sync replicas, so a client never sees a uid or
   * mod-sequence that a failover could take back (and hand out again). A read of one
   * `account` waits only for that account's last write (and what this store holds from
   * before it began writing in its epoch), not for every write after it.
   */
  async readDurable<T>(read: () => T, account?: string): Promise<T> {
    const out = read();
    const end = this.position().seq;
    await this.durableUpTo(account === undefined ? end : Math.min(end, Math.max(this.written.get(account) ?? 0, this.unattributed, this.startSeq())));
    return out;
  }

  /** The log's end when this store began writing in its epoch: what it holds from before is known durable by no write here. */
  private startSeq(): number {
    if (this.start.epoch !== this.epoch) this.start = { epoch: this.epoch, seq: this.position().seq };
    return this.start.seq;
  }

  /** Inside a write: each account its ops touch last changed at `seq`. */
  protected override logging(seq: number, ops: readonly Op[]): void {
    for (const op of ops) {
      const account = accountOf(op[1], op[2]);
      if (account === null) continue;
      if (account === undefined) this.unattributed = seq;
      else this.written.set(account, seq);
    }
    // Forgetting what is durable already keeps the map to the accounts written lately.
    if (this.written.size > 100_000) for (const [a, s] of this.written) if (this.knownDurable(s)) this.written.delete(a);
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

  /** Removes messages at once, whatever their flags (POP3's QUIT, the CLI); how many were there. */
  async delete(account: string, folder: string, uids: number[]): Promise<number> {
    const changes: MailboxChange[] = [];
    const n = await this.write(() => {
      this.mustTake(account);
      const entries = uids.flatMap((uid) => {
        const value = this.index.get([account, folder, uid]);
        return value ? [{ key: [account, folder, uid] as IndexKey, value }] : [];
      });
      return this.removeFrom(account, folder, entries, changes).length;
    });
    this.announce(changes);
    return n;
  }

  /** Inside a write: one index entry goes, and its blob with the last entry that points at it. */
  private removeMessage(key: IndexKey, entry: IndexEntry): void {
    this.setEntry(key, undefined, entry);
    const left = (this.refs.get(entry.blob) ?? 1) - 1;
    if (left > 0) this.set('refs', entry.blob, left);
    else {
      if (this.refs.get(entry.blob) !== undefined) this.unset('refs', entry.blob);
      this.unset('blobs', entry.blob);
    }
  }

  // --- account moves ----------------------------------------------------------------------

  /** The entries of one folder of a table keyed [account, folder, uid]. */
  private ofFolder<V>(db: Database<V, IndexKey>, account: string, folder: string): { key: IndexKey; value: V }[] {
    return [...db.getRange({ start: [account, folder, 0], end: [account, folder, Number.MAX_SAFE_INTEGER] })];
  }

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
    const meta = this.accounts.get(account);
    if (meta) yield* add({ kind: 'account', modseq: meta.modseq, quota: meta.quota });
    for (const { key } of this.ofAccount(this.mailboxes, account)) {
      const box = this.mailbox(account, key[1]);
      yield* add({ kind: 'mailbox', folder: key[1], nextUid: box.nextUid, uidValidity: box.uidValidity, modseq: box.modseq, id: box.id, specialUse: box.specialUse });
    }
    for (const { key } of this.ofAccount(this.subscriptions, account)) yield* add({ kind: 'subscription', folder: key[1] });
    for (const { key, value } of this.ofAccount(this.modseqs, account)) if (value === 0) yield* add({ kind: 'vanished', folder: key[1], uid: key[3], modseq: key[2] });
    for (const { key, value } of this.ofAccount(this.threads, account)) yield* add({ kind: 'thread', messageId: key[1], threadId: value });
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
      const m = info(key, value);
      yield* add({ kind: 'message', folder: key[1], uid: key[2], size: value.size, receivedAt: value.receivedAt, flags: value.flags, blob: value.blob, body, modseq: m.modseq, emailId: m.emailId, threadId: m.threadId }, 64 + (body?.length ?? 0));
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
          if (r.kind === 'account') this.set('accounts', account, { modseq: r.modseq, ...(r.quota ? { quota: r.quota } : {}) });
          else if (r.kind === 'mailbox')
            this.set('mailboxes', [account, r.folder], { nextUid: r.nextUid, uidValidity: r.uidValidity ?? 1, modseq: r.modseq ?? 1, id: r.id ?? `F${account}/${r.folder}`, ...(r.specialUse ? { specialUse: r.specialUse } : {}) });
          else if (r.kind === 'subscription') this.set('subscriptions', [account, r.folder], true);
          else if (r.kind === 'vanished') this.set('modseqs', [account, r.folder, r.modseq, r.uid], 0);
          else if (r.kind === 'thread') this.set('threads', [account, r.messageId], r.threadId);
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
            this.setEntry([account, r.folder, r.uid], { size: r.size, receivedAt: r.receivedAt, blob: b.id, flags: r.flags, modseq: r.modseq ?? 1, emailId: r.emailId ?? `B${r.blob}`, threadId: r.threadId ?? `B${r.blob}` });
            this.set('modseqs', [account, r.folder, r.modseq ?? 1, r.uid], 1);
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
    for (const { key } of this.ofAccount(this.modseqs, account)) this.unset('modseqs', key);
    for (const { key } of this.ofAccount(this.threads, account)) this.unset('threads', key);
    for (const { key } of this.ofAccount(this.subscriptions, account)) this.unset('subscriptions', key);
    for (const { key } of this.ofAccount(this.counts, account)) this.unset('counts', key);
    if (this.accounts.get(account)) this.unset('accounts', account);
    if (this.rulesDb.get(account)) this.unset('rules', account);
    if (this.passwords.get(account)) this.unset('passwords', account);
    for (const key of dedupeKeys) this.unset('dedupe', key);
    return messages.length;
  }
}

/**
 * Tables whose keys are not an account's: a message's bytes and reference count (read only
 * through an account's index), idempotency keys and the blob counter (never read for one).
 */
const SHARED_TABLES = new Set(['blobs', 'refs', 'dedupe', 'meta']);

/** The account a logged op's key belongs to; null for a shared table; undefined when not known (counts for every account). */
function accountOf(table: string, key: unknown): string | null | undefined {
  if (SHARED_TABLES.has(table)) return null;
  if (Array.isArray(key) && typeof key[0] === 'string') return key[0];
  if (typeof key === 'string' && (table === 'accounts' || table === 'passwords' || table === 'rules')) return key;
  return undefined;
}

/** Adds (`sign` 1) or takes away (-1) one message from a folder's figures. */
function count(c: FolderCounts, e: IndexEntry, sign: 1 | -1): void {
  c.messages += sign;
  c.size += sign * e.size;
  if (!e.flags.includes(SEEN)) c.unseen += sign;
  if (e.flags.includes(DELETED)) c.deleted += sign;
}

/**
 * A message as callers see it; entries written before mod-sequences and object ids existed
 * read as mod-sequence 1 and ids from their blob (kept as they are by a move).
 */
function info([, folder, uid]: IndexKey, e: IndexEntry): MessageInfo {
  return { folder, uid, size: e.size, receivedAt: e.receivedAt, flags: e.flags, modseq: e.modseq ?? 1, emailId: e.emailId ?? `B${e.blob}`, threadId: e.threadId ?? `B${e.blob}` };
}

/** A folder name the store's keys can hold, or a refusal (`[CANNOT]`), not a failed write. */
function mustFit(folder: string): void {
  if (Buffer.byteLength(folder) > MAX_FOLDER_NAME_BYTES) throw Replies.mailboxRefused(`mailbox name longer than ${MAX_FOLDER_NAME_BYTES} bytes`);
}

/** A new object id (RFC 8474: letters, digits, `-`, `_`): a prefix and 96 random bits. */
function newId(prefix: string): string {
  return prefix + randomBytes(12).toString('base64url');
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
