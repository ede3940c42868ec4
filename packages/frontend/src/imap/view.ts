import type { SequenceSet } from '@mailgrid/imap';
import type { MessageState__Output } from '@mailgrid/protocol';

/** What a session knows of one message. */
export interface MessageMeta {
  uid: number;
  flags: string[];
  modseq: number;
  size: number;
  receivedAt: number;
  emailId: string;
  threadId: string;
}

/** What the view has to tell the client, and may only when the protocol allows (RFC 9051 §7.4.1). */
export interface Untold {
  /** Message numbers to expunge, in the order to say them (each `* n EXPUNGE` renumbers the rest). */
  expunged: { seq: number; uid: number }[];
  /** The new message count, when messages came. */
  exists?: number;
  /** Messages whose flags changed (by another session), with their number now. */
  flags: { seq: number; meta: MessageMeta }[];
}

/**
 * One session's message-number view of the selected folder (go-imap v2's idea): the client
 * numbers messages as it was told, so changes made elsewhere are held back and told at the
 * points the protocol allows. Expunged messages keep their number until the expunge is
 * told; new ones are numbered after the last as soon as they are known.
 *
 * An idling session keeps its view for hours, and a frontend keeps thousands: the view is
 * two arrays (uids, and the state of each, shared with the frontend's other views by
 * `MessageMetas`), a message found by its uid in the sorted uids; the sets of what is not
 * told yet exist only while there is some.
 */
export class MailboxView {
  /** The uids in message-number order (number = index + 1), told expunges excluded. */
  private uids: number[];
  /** What is known of each message, at its uid's index. */
  private metas: MessageMeta[];
  /** Expunged where the client has not been told yet: still numbered, no longer there. */
  private gone: Set<number> | undefined;
  /** Flag changes not yet told. */
  private changed: Set<number> | undefined;
  /** How many messages the client was last told exist. */
  private toldExists = 0;
  /** The mod-sequence the view is current with: the next look asks for changes after it. */
  highestModseq = 0;

  constructor(messages: MessageMeta[], highestModseq: number) {
    this.metas = [...messages].sort((a, b) => a.uid - b.uid);
    this.uids = this.metas.map((m) => m.uid);
    this.toldExists = this.uids.length;
    this.highestModseq = highestModseq;
  }

  get exists(): number {
    return this.uids.length;
  }

  /** The largest uid the client can see (`*` in a UID set), 0 for none. */
  get maxUid(): number {
    return this.uids.length ? this.uids[this.uids.length - 1] : 0;
  }

  /** A message the client can still see and use (not expunged meanwhile). */
  get(uid: number): MessageMeta | undefined {
    if (this.gone?.has(uid)) return undefined;
    const i = binarySearch(this.uids, uid);
    return i < 0 ? undefined : this.metas[i];
  }

  /** Its message number now, or 0. */
  seqOf(uid: number): number {
    const i = binarySearch(this.uids, uid);
    return i < 0 ? 0 : i + 1;
  }

  uidOf(seq: number): number | undefined {
    return this.uids[seq - 1];
  }

  /**
   * The uids a sequence set names, ascending, without duplicates. `*` is the last number (or
   * uid); a UID range names the uids between that exist here. Messages expunged meanwhile are
   * left out of UID sets and kept in number sets (the caller decides what to say of them).
   */
  resolve(set: SequenceSet, byUid: boolean, saved: number[] = []): number[] {
    if (set.saved) return saved.filter((u) => binarySearch(this.uids, u) >= 0 && !(byUid && this.gone?.has(u)));
    const out = new Set<number>();
    if (byUid) {
      const max = this.maxUid;
      for (const [a, b] of set.ranges) {
        let [lo, hi] = [a === Infinity ? max : a, b === Infinity ? max : b];
        if (lo > hi) [lo, hi] = [hi, lo];
        for (let i = lowerBound(this.uids, lo); i < this.uids.length && this.uids[i] <= hi; i++) if (!this.gone?.has(this.uids[i])) out.add(this.uids[i]);
      }
    } else {
      const max = this.uids.length;
      for (const [a, b] of set.ranges) {
        let [lo, hi] = [a === Infinity ? max : a, b === Infinity ? max : b];
        if (lo > hi) [lo, hi] = [hi, lo];
        for (let s = Math.max(1, lo); s <= Math.min(hi, max); s++) out.add(this.uids[s - 1]);
      }
    }
    return [...out].sort((x, y) => x - y);
  }

  /** A number set that goes past the messages there is (`BAD`, RFC 9051 §9 seq-number). */
  outOfRange(set: SequenceSet): boolean {
    if (set.saved) return false;
    return set.ranges.some(([a, b]) => (a !== Infinity && a > this.uids.length) || (b !== Infinity && b > this.uids.length) || a < 1 || b < 1);
  }

  /**
   * What the folder is now, after `highestModseq`: changed (or new) messages and uids
   * expunged since. New ones are numbered at once; expunges and flag changes wait to be told.
   */
  update(changed: MessageMeta[], vanished: number[], highestModseq: number, own = false): void {
    for (const uid of vanished) if (binarySearch(this.uids, uid) >= 0) (this.gone ??= new Set()).add(uid);
    for (const m of [...changed].sort((a, b) => a.uid - b.uid)) {
      const i = binarySearch(this.uids, m.uid);
      if (i < 0) {
        // A new message: after every one the client knows (uids only grow).
        if (m.uid > this.maxUid) {
          this.uids.push(m.uid);
          this.metas.push(m);
        }
        continue;
      }
      if (m.modseq <= this.metas[i].modseq) continue;
      this.metas[i] = m;
      if (!own && !this.gone?.has(m.uid)) (this.changed ??= new Set()).add(m.uid);
    }
    this.highestModseq = Math.max(this.highestModseq, highestModseq);
  }

  /** The session's own change: its state noted, nothing to tell of it (the command answered). */
  own(m: MessageMeta): void {
    const i = binarySearch(this.uids, m.uid);
    if (i >= 0) this.metas[i] = m;
    this.changed?.delete(m.uid);
  }

  /**
   * What may be told now, taken off the view: expunges only when `expunges` (not during a
   * FETCH, STORE or SEARCH by number). Numbers are those the client holds when it reads them.
   */
  untold(expunges: boolean): Untold {
    const out: Untold = { expunged: [], flags: [] };
    const gone = this.gone;
    if (expunges && gone?.size) {
      // From the highest number down, so each number said is right when the client reads it.
      for (let i = this.uids.length - 1; i >= 0 && gone.size; i--) {
        const uid = this.uids[i];
        if (!gone.has(uid)) continue;
        out.expunged.push({ seq: i + 1, uid });
        this.uids.splice(i, 1);
        this.metas.splice(i, 1);
        gone.delete(uid);
        this.changed?.delete(uid);
      }
      this.toldExists -= out.expunged.length;
      if (!gone.size) this.gone = undefined;
    }
    if (this.uids.length !== this.toldExists) {
      out.exists = this.uids.length;
      this.toldExists = this.uids.length;
    }
    if (this.changed?.size) {
      for (const uid of [...this.changed].sort((a, b) => a - b)) {
        if (this.gone?.has(uid)) continue;
        const i = binarySearch(this.uids, uid);
        out.flags.push({ seq: i + 1, meta: this.metas[i] });
        this.changed.delete(uid);
      }
      if (!this.changed.size) this.changed = undefined;
    }
    return out;
  }

  /** Every message the client can see (for SEARCH's scope). */
  visible(): number[] {
    const gone = this.gone;
    return gone?.size ? this.uids.filter((u) => !gone.has(u)) : [...this.uids];
  }
}

/**
 * The message states a frontend's views hold, each one object: a view takes its messages
 * from its folder's table here, so a message at one mod-sequence is one object however many
 * sessions have the folder selected (an account's phone, laptop and webmail, idling all
 * day), and messages with the same flags share one list of them. A folder's table lives
 * while a view holds it (it is kept here weakly).
 */
export class MessageMetas {
  private readonly folders = new Map<string, WeakRef<FolderMetas>>();
  private readonly collected = new FinalizationRegistry<string>((key) => {
    if (!this.folders.get(key)?.deref()) this.folders.delete(key);
  });
  private readonly lists = new FlagLists();

  /** The table of an account's folder, by the folder's MAILBOXID (a folder made anew has another). */
  folder(account: string, id: string): FolderMetas {
    const key = `${account}\0${id}`;
    let table = this.folders.get(key)?.deref();
    if (!table) {
      table = new FolderMetas(this.lists);
      this.folders.set(key, new WeakRef(table));
      this.collected.register(table, key);
    }
    return table;
  }

  /** Folders with a table now (views of them may be gone, and not collected yet). */
  get size(): number {
    return this.folders.size;
  }
}

/** One folder's message states, the latest known of each message (see MessageMetas). */
export class FolderMetas {
  private readonly latest = new Map<number, MessageMeta>();

  constructor(private readonly lists: FlagLists) {}

  /** A message's state from the primary, as the object views share: the one here when it is the same (same uid, same mod-sequence). */
  of(m: MessageState__Output): MessageMeta {
    const modseq = Number(m.modseq);
    const known = this.latest.get(m.uid);
    if (known && known.modseq === modseq) return known;
    const meta: MessageMeta = {
      uid: m.uid,
      flags: this.lists.of(m.flags),
      modseq,
      size: Number(m.size),
      receivedAt: Number(m.receivedAtMs),
      emailId: m.emailId,
      threadId: m.threadId,
    };
    if (!known || modseq > known.modseq) this.latest.set(m.uid, meta);
    return meta;
  }

  /** Messages expunged: the views that still number them keep their own. */
  forget(uids: number[]): void {
    for (const uid of uids) this.latest.delete(uid);
  }
}

/** One list per set of flags in the same order (most messages have one of a few): lists are read, never changed. */
class FlagLists {
  /** Past this many different lists, new ones are not kept (keywords are the client's to make up). */
  private static readonly MAX = 4_096;
  private readonly lists = new Map<string, string[]>();

  of(flags: string[]): string[] {
    const key = flags.join(' ');
    const known = this.lists.get(key);
    if (known) return known;
    if (this.lists.size < FlagLists.MAX) this.lists.set(key, flags);
    return flags;
  }
}

function binarySearch(a: number[], x: number): number {
  const i = lowerBound(a, x);
  return a[i] === x ? i : -1;
}

function lowerBound(a: number[], x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
