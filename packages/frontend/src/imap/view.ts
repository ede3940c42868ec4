import type { SequenceSet } from '@mailgrid/imap';

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
 */
export class MailboxView {
  /** The uids in message-number order (number = index + 1), told expunges excluded. */
  private uids: number[] = [];
  private readonly meta = new Map<number, MessageMeta>();
  /** Expunged where the client has not been told yet: still numbered, no longer there. */
  private readonly gone = new Set<number>();
  /** Flag changes not yet told. */
  private readonly changed = new Set<number>();
  /** How many messages the client was last told exist. */
  private toldExists = 0;
  /** The mod-sequence the view is current with: the next look asks for changes after it. */
  highestModseq = 0;

  constructor(messages: MessageMeta[], highestModseq: number) {
    for (const m of [...messages].sort((a, b) => a.uid - b.uid)) {
      this.uids.push(m.uid);
      this.meta.set(m.uid, m);
    }
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
    return this.gone.has(uid) ? undefined : this.meta.get(uid);
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
    if (set.saved) return saved.filter((u) => this.meta.has(u) && !(byUid && this.gone.has(u)));
    const out = new Set<number>();
    if (byUid) {
      const max = this.maxUid;
      for (const [a, b] of set.ranges) {
        let [lo, hi] = [a === Infinity ? max : a, b === Infinity ? max : b];
        if (lo > hi) [lo, hi] = [hi, lo];
        for (let i = lowerBound(this.uids, lo); i < this.uids.length && this.uids[i] <= hi; i++) if (!this.gone.has(this.uids[i])) out.add(this.uids[i]);
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
    for (const uid of vanished) if (this.meta.has(uid) && !this.gone.has(uid)) this.gone.add(uid);
    for (const m of [...changed].sort((a, b) => a.uid - b.uid)) {
      const known = this.meta.get(m.uid);
      if (!known) {
        // A new message: after every one the client knows (uids only grow).
        if (m.uid > this.maxUid) {
          this.uids.push(m.uid);
          this.meta.set(m.uid, m);
        }
        continue;
      }
      if (m.modseq <= known.modseq) continue;
      this.meta.set(m.uid, m);
      if (!own && !this.gone.has(m.uid)) this.changed.add(m.uid);
    }
    this.highestModseq = Math.max(this.highestModseq, highestModseq);
  }

  /** The session's own change: its state noted, nothing to tell of it (the command answered). */
  own(m: MessageMeta): void {
    this.meta.set(m.uid, m);
    this.changed.delete(m.uid);
  }

  /**
   * What may be told now, taken off the view: expunges only when `expunges` (not during a
   * FETCH, STORE or SEARCH by number). Numbers are those the client holds when it reads them.
   */
  untold(expunges: boolean): Untold {
    const out: Untold = { expunged: [], flags: [] };
    if (expunges && this.gone.size) {
      // From the highest number down, so each number said is right when the client reads it.
      for (let i = this.uids.length - 1; i >= 0; i--) {
        const uid = this.uids[i];
        if (!this.gone.has(uid)) continue;
        out.expunged.push({ seq: i + 1, uid });
        this.uids.splice(i, 1);
        this.meta.delete(uid);
        this.gone.delete(uid);
        this.changed.delete(uid);
      }
      this.toldExists -= out.expunged.length;
    }
    if (this.uids.length !== this.toldExists) {
      out.exists = this.uids.length;
      this.toldExists = this.uids.length;
    }
    for (const uid of [...this.changed].sort((a, b) => a - b)) {
      if (this.gone.has(uid)) continue;
      out.flags.push({ seq: this.seqOf(uid), meta: this.meta.get(uid)! });
      this.changed.delete(uid);
    }
    return out;
  }

  /** Every message the client can see (for SEARCH's scope). */
  visible(): number[] {
    return this.uids.filter((u) => !this.gone.has(u));
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
