/**
 * SEARCH keys (RFC 9051 §6.4.4, CONDSTORE's MODSEQ, WITHIN's OLDER/YOUNGER, SEARCHRES's `$`,
 * OBJECTID's EMAILID/THREADID) against one message. Strings match as substrings under
 * i;unicode-casemap. The header and body are read only when a key needs them: `searchNeeds`
 * says which, so the caller loads no more than it must.
 */
import { casemap } from './collation.js';
import type { Flag, MessageHeaders, SearchKey, SequenceSet } from './types.js';

/** What SEARCH reads of a header (mime.ts's HeaderFields is one). */
export interface SearchHeaders {
  readonly parsed: MessageHeaders;
  /** A field's values, unfolded, encoded-words decoded. */
  decoded(name: string): string[];
  /** The whole header as text, for TEXT. */
  text(): string;
}

export interface SearchableMessage {
  seq: number;
  uid: number;
  flags: Iterable<Flag>;
  modseq: bigint;
  /** INTERNALDATE, ms. */
  internalDate: number;
  size: number;
  emailId: string;
  threadId: string;
  /** Called at most once, and only for keys that need it (searchNeeds(key).headers). */
  headers?: () => SearchHeaders;
  /** The decoded text of the text parts (mime.ts's bodyText); called at most once, only when searchNeeds(key).body. */
  bodyText?: () => string;
}

export interface SearchContext {
  /** For OLDER/YOUNGER, ms. */
  now: number;
  /** The largest message number and UID in the mailbox, what `*` stands for. */
  maxSeq: number;
  maxUid: number;
  /** The saved result `$` stands for (SEARCHRES), as UIDs; absent: none saved, `$` is empty. */
  saved?: ReadonlySet<number>;
  /** IANA zone the server dates INTERNALDATE in for BEFORE/ON/SINCE. Default UTC. */
  timeZone?: string;
}

/** Whether a key reads the header and the body (TEXT reads both). */
export function searchNeeds(key: SearchKey): { headers: boolean; body: boolean } {
  switch (key.kind) {
    case 'AND':
      return key.keys.map(searchNeeds).reduce((a, b) => ({ headers: a.headers || b.headers, body: a.body || b.body }), { headers: false, body: false });
    case 'OR': {
      const a = searchNeeds(key.a);
      const b = searchNeeds(key.b);
      return { headers: a.headers || b.headers, body: a.body || b.body };
    }
    case 'NOT':
      return searchNeeds(key.key);
    case 'HEADER':
      return { headers: true, body: false };
    case 'DATE':
      return { headers: key.field === 'sent', body: false };
    case 'BODY':
      return { headers: false, body: true };
    case 'TEXT':
      return { headers: true, body: true };
    default:
      return { headers: false, body: false };
  }
}

/** Whether a number is in a set; `*` (Infinity) is the largest in use, and `n:m` is `m:n` too. */
export function inSequenceSet(set: SequenceSet, n: number, max: number): boolean {
  if (set.saved) return false;
  for (const [a, b] of set.ranges) {
    const x = a === Infinity ? max : a;
    const y = b === Infinity ? max : b;
    if (n >= Math.min(x, y) && n <= Math.max(x, y)) return true;
  }
  return false;
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAY = 86_400_000;

/** A search date (`1-Feb-1994`) as days since the epoch; NaN when it is none. */
function searchDay(date: string): number {
  const m = /^"?(\d{1,2})-([A-Za-z]{3})-(\d{4})"?$/.exec(date.trim());
  const month = m ? MONTHS.indexOf(m[2].toLowerCase()) : -1;
  return m && month >= 0 ? Date.UTC(Number(m[3]), month, Number(m[1])) / DAY : NaN;
}

const dayFormats = new Map<string, Intl.DateTimeFormat>();

/** The calendar day (days since the epoch) of a time in an IANA zone. */
function dayIn(time: number, timeZone: string | undefined): number {
  if (!timeZone || timeZone === 'UTC') return Math.floor(time / DAY);
  let f = dayFormats.get(timeZone);
  if (!f) dayFormats.set(timeZone, (f = new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: 'numeric', day: 'numeric' })));
  const parts = Object.fromEntries(f.formatToParts(time).map((p) => [p.type, p.value]));
  return Date.UTC(Number(parts.year), Number(parts.month) - 1, Number(parts.day)) / DAY;
}

const cheapKeys = new WeakMap<SearchKey, boolean>();

/** Keys that read nothing but the message's record go first in an AND. */
function cheap(key: SearchKey): boolean {
  let c = cheapKeys.get(key);
  if (c === undefined) {
    const n = searchNeeds(key);
    cheapKeys.set(key, (c = !n.headers && !n.body));
  }
  return c;
}

/** Whether the message matches the key. */
export function matches(key: SearchKey, message: SearchableMessage, context: SearchContext): boolean {
  let headers: SearchHeaders | undefined;
  let headerText: string | undefined;
  let body: string | undefined;
  let flags: Set<string> | undefined;
  const header = () => {
    if (!message.headers) throw new TypeError('this search needs the message header (searchNeeds)');
    return (headers ??= message.headers());
  };
  const bodyFolded = () => {
    if (!message.bodyText) throw new TypeError('this search needs the message body (searchNeeds)');
    return (body ??= casemap(message.bodyText()));
  };

  const test = (k: SearchKey): boolean => {
    switch (k.kind) {
      case 'ALL':
        return true;
      case 'AND':
        return k.keys.every((x) => !cheap(x) || test(x)) && k.keys.every((x) => cheap(x) || test(x));
      case 'OR':
        return test(k.a) || test(k.b);
      case 'NOT':
        return !test(k.key);
      case 'SEQ':
        return k.set.saved ? (context.saved?.has(message.uid) ?? false) : inSequenceSet(k.set, message.seq, context.maxSeq);
      case 'UID':
        return k.set.saved ? (context.saved?.has(message.uid) ?? false) : inSequenceSet(k.set, message.uid, context.maxUid);
      case 'FLAG':
        flags ??= new Set(Array.from(message.flags, (f) => f.toLowerCase()));
        return flags.has(k.flag.toLowerCase()) === k.set;
      case 'DATE': {
        const target = searchDay(k.date);
        let day: number;
        if (k.field === 'internal') day = dayIn(message.internalDate, context.timeZone);
        else {
          // The date as written in the Date: header, in its own zone (RFC 9051 disregards time and zone).
          const { sent, sentZone } = header().parsed;
          if (sent === undefined) return false;
          day = Math.floor((sent + (sentZone ?? 0) * 60_000) / DAY);
        }
        if (Number.isNaN(target)) return false;
        return k.op === 'before' ? day < target : k.op === 'on' ? day === target : day >= target;
      }
      case 'WITHIN': {
        const age = context.now - message.internalDate;
        return k.op === 'older' ? age > k.seconds * 1000 : age <= k.seconds * 1000;
      }
      case 'SIZE':
        return k.op === 'larger' ? message.size > k.size : message.size < k.size;
      case 'HEADER': {
        const values = header().decoded(k.name);
        if (k.value === '') return values.length > 0;
        const needle = casemap(k.value);
        return values.some((v) => casemap(v).includes(needle));
      }
      case 'BODY':
        return bodyFolded().includes(casemap(k.value));
      case 'TEXT': {
        const needle = casemap(k.value);
        return (headerText ??= casemap(header().text())).includes(needle) || bodyFolded().includes(needle);
      }
      case 'MODSEQ':
        return message.modseq >= k.modseq;
      case 'EMAILID':
        return message.emailId === k.id;
      case 'THREADID':
        return message.threadId === k.id;
    }
  };
  return test(key);
}
