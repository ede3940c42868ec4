import { formatThreads, fromThreadData, sequenceSet, type SearchKey, type ThreadData, type SearchReturn, type SequenceSet } from '@mailgrid/imap';
import { fetch } from './fetch.js';
import { tryCreate } from './mailboxes.js';
import { Tagged, type Handlers, type ImapSession } from './session.js';
import type { MailboxView } from './view.js';

const CHARSETS = /^(UTF-8|US-ASCII)$/i;

/** The commands on the selected folder's messages. */
export const messageCommands: Handlers = {
  FETCH: (s, cmd) => fetch(s, cmd),

  STORE: async (s, cmd) => {
    const sel = writable(s);
    const { view } = sel;
    if (!cmd.uid && view.outOfRange(cmd.set)) throw new Tagged('BAD', 'Message number out of range');
    if (cmd.flags.some((f) => f.toLowerCase() === '\\recent')) throw new Tagged('BAD', '\\Recent cannot be stored');
    if (cmd.unchangedSince !== undefined) s.condstore = true;
    const uids = view.resolve(cmd.set, cmd.uid, sel.saved).filter((u) => view.get(u));
    if (!uids.length) return;
    const res = await s.mailbox.calls.storeFlags(s.mailbox.account, sel.folder, uids, cmd.op, cmd.flags, cmd.unchangedSince === undefined ? undefined : Number(cmd.unchangedSince));
    const changed = new Set<number>();
    for (const c of res.changed) {
      const known = view.get(c.uid);
      if (!known) continue;
      view.own({ ...known, flags: c.flags, modseq: Number(c.modseq) });
      changed.add(c.uid);
    }
    const modified = new Set(res.modified);
    for (const uid of uids) {
      if (modified.has(uid)) continue;
      const m = view.get(uid);
      if (!m) continue;
      // .SILENT still says the new mod-sequence of what changed once CONDSTORE is on (RFC 7162 §3.1.3).
      if (cmd.silent && !(s.condstore && changed.has(uid))) continue;
      const parts = [...(cmd.uid || s.qresync ? [`UID ${uid}`] : []), ...(cmd.silent ? [] : [`FLAGS (${m.flags.join(' ')})`]), ...(s.condstore ? [`MODSEQ (${m.modseq})`] : [])];
      s.out(`* ${view.seqOf(uid)} FETCH (${parts.join(' ')})`);
    }
    if (modified.size) {
      const set = cmd.uid ? [...modified] : [...modified].map((u) => view.seqOf(u));
      return `[MODIFIED ${sequenceSet(set)}] Conditional STORE failed`;
    }
  },

  COPY: (s, cmd) => copy(s, cmd.uid, cmd.set, cmd.mailbox, false),
  MOVE: (s, cmd) => copy(s, cmd.uid, cmd.set, cmd.mailbox, true),

  EXPUNGE: async (s, cmd) => {
    const sel = writable(s);
    const uids = cmd.uid ? sel.view.resolve(cmd.set!, true, sel.saved) : undefined;
    const gone = await s.mailbox.calls.expunge(s.mailbox.account, sel.folder, uids);
    // Told by the session's announcement before the tagged OK (the highest mod-sequence stays: others' changes may be before it).
    sel.view.update([], gone, 0, true);
  },

  SEARCH: async (s, cmd, tag) => {
    if (cmd.charset && !CHARSETS.test(cmd.charset)) throw new Tagged('NO', '[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset');
    const ret = cmd.return ?? (s.rev2 ? ['ALL'] : undefined);
    const res = await search(s, cmd.key, {});
    answer(s, tag, cmd.uid, ret, res.uids, res.modseq, hasModseq(cmd.key), 'SEARCH');
  },

  SORT: async (s, cmd, tag) => {
    if (!CHARSETS.test(cmd.charset)) throw new Tagged('NO', '[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset');
    const res = await search(s, cmd.key, { sort: JSON.stringify(cmd.sort) });
    answer(s, tag, cmd.uid, cmd.return, res.uids, res.modseq, hasModseq(cmd.key), 'SORT');
  },

  THREAD: async (s, cmd) => {
    if (!CHARSETS.test(cmd.charset)) throw new Tagged('NO', '[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset');
    const res = await search(s, cmd.key, { thread: cmd.algorithm });
    const view = s.selected!.view;
    const threads = fromThreadData(JSON.parse(res.threads || '[]') as ThreadData[]);
    s.out(`* THREAD ${formatThreads(threads, (uid) => (cmd.uid ? uid : view.seqOf(uid)))}`.trimEnd());
  },
};

function writable(s: ImapSession) {
  const sel = s.selected!;
  if (sel.readOnly) throw new Tagged('NO', '[READ-ONLY] The mailbox was opened with EXAMINE');
  return sel;
}

/** COPY and MOVE (RFC 6851), with UIDPLUS's COPYUID. */
async function copy(s: ImapSession, byUid: boolean, set: SequenceSet, target: string, move: boolean): Promise<string | void> {
  const sel = move ? writable(s) : s.selected!;
  const { view } = sel;
  if (!byUid && view.outOfRange(set)) throw new Tagged('BAD', 'Message number out of range');
  const uids = view.resolve(set, byUid, sel.saved).filter((u) => view.get(u));
  if (!uids.length) return;
  const res = await s.mailbox.calls.copy(s.mailbox.account, sel.folder, target, uids, move).catch(tryCreate);
  const copyUid = res.source.length ? `[COPYUID ${res.uidValidity} ${sequenceSet(res.source)} ${sequenceSet(res.target)}]` : '';
  if (target === sel.folder) sel.stale();
  if (!move) return `${copyUid} COPY completed`.trim();
  // MOVE: the COPYUID first, untagged; then the expunges of the moved messages, then OK.
  if (copyUid) s.out(`* OK ${copyUid} Moved`);
  view.update([], res.source, 0, true);
}

/**
 * SEARCH, SORT and THREAD run at the primary over the messages this session sees (its
 * view's uids); message numbers, `*` and `$` are turned into uids here first.
 */
async function search(s: ImapSession, key: SearchKey, extra: { sort?: string; thread?: string }) {
  const sel = s.selected!;
  if (hasModseq(key)) s.condstore = true;
  const byUid = toUids(key, sel.view);
  try {
    const res = await s.mailbox.calls.search(s.mailbox.account, sel.folder, { key: JSON.stringify(byUid, (_k, v) => (typeof v === 'bigint' ? Number(v) : v)), scope: sel.view.visible(), saved: sel.saved, ...extra });
    return { uids: res.uids, threads: res.threads, modseq: Number(res.modseq) };
  } catch (err) {
    // A failed search empties `$` (RFC 5182 §2.1).
    sel.saved = [];
    throw err;
  }
}

function toUids(key: SearchKey, view: MailboxView): SearchKey {
  switch (key.kind) {
    case 'SEQ':
      return key.set.saved ? { kind: 'UID', set: key.set } : { kind: 'UID', set: { ranges: view.resolve(key.set, false).map((u) => [u, u] as [number, number]) } };
    case 'UID':
      return key.set.saved ? key : { kind: 'UID', set: { ranges: key.set.ranges.map(([a, b]) => [a === Infinity ? view.maxUid : a, b === Infinity ? view.maxUid : b] as [number, number]) } };
    case 'AND':
      return { kind: 'AND', keys: key.keys.map((k) => toUids(k, view)) };
    case 'OR':
      return { kind: 'OR', a: toUids(key.a, view), b: toUids(key.b, view) };
    case 'NOT':
      return { kind: 'NOT', key: toUids(key.key, view) };
    default:
      return key;
  }
}

function hasModseq(key: SearchKey): boolean {
  switch (key.kind) {
    case 'MODSEQ':
      return true;
    case 'AND':
      return key.keys.some(hasModseq);
    case 'OR':
      return hasModseq(key.a) || hasModseq(key.b);
    case 'NOT':
      return hasModseq(key.key);
    default:
      return false;
  }
}

/** The plain `* SEARCH`/`* SORT` answer, or ESEARCH (RFC 4731) with RETURN, and SEARCHRES's SAVE. */
function answer(s: ImapSession, tag: string, byUid: boolean, ret: SearchReturn[] | undefined, uids: number[], modseq: number, withModseq: boolean, name: 'SEARCH' | 'SORT'): void {
  const sel = s.selected!;
  const numbers = byUid ? uids : uids.map((u) => sel.view.seqOf(u));
  const mod = withModseq && uids.length ? modseq : 0;
  if (!ret) {
    s.out(`* ${name}${numbers.map((n) => ` ${n}`).join('')}${mod ? ` (MODSEQ ${mod})` : ''}`);
    return;
  }
  const opts = ret.length ? ret : ['ALL'];
  const ordered = name === 'SEARCH' ? [...numbers].sort((a, b) => a - b) : numbers;
  if (opts.includes('SAVE')) {
    const min = Math.min(...uids);
    const max = Math.max(...uids);
    const onlyEnds = opts.includes('MIN') || opts.includes('MAX');
    sel.saved = !uids.length ? [] : onlyEnds ? [...new Set([...(opts.includes('MIN') ? [min] : []), ...(opts.includes('MAX') ? [max] : [])])] : [...uids].sort((a, b) => a - b);
    // SAVE alone answers nothing but the tagged OK (RFC 5182 §2.4).
    if (opts.length === 1) return;
  }
  const parts = [`(TAG ${JSON.stringify(tag)})`, ...(byUid ? ['UID'] : [])];
  if (ordered.length) {
    if (opts.includes('MIN')) parts.push(`MIN ${Math.min(...ordered)}`);
    if (opts.includes('MAX')) parts.push(`MAX ${Math.max(...ordered)}`);
    if (opts.includes('ALL')) parts.push(`ALL ${name === 'SORT' ? ordered.join(',') : sequenceSet(ordered)}`);
  }
  if (opts.includes('COUNT')) parts.push(`COUNT ${ordered.length}`);
  if (mod) parts.push(`MODSEQ ${mod}`);
  s.out(`* ESEARCH ${parts.join(' ')}`);
}
