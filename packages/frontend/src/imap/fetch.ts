import { binary, binarySize, bodyStructure, dateTime, envelope, fetchNeeds, formatBodyStructure, formatEnvelope, literal, MimeCache, section, sequenceSet, type FetchItem, type MimeTree, type Section, type SequenceSet } from '@mailgrid/imap';
import { Tagged, type ImapSession } from './session.js';
import type { MessageMeta } from './view.js';

/** Messages one Fetch call at the primary brings, at most. */
const BATCH = { count: 128, bytes: 8 * 1024 * 1024 };

/** MIME trees by EMAILID (the same bytes in every folder): clients ask for BODYSTRUCTURE again and again, and a cached tree needs no read at the primary. */
const trees = new MimeCache();

/** What one message needs read at the primary for these items: nothing, its header block, or its bytes. */
type Load = 'none' | 'header' | 'body';

function loadFor(needs: ReturnType<typeof fetchNeeds>, meta: MessageMeta): Load {
  if (needs.message || (needs.tree && !trees.get(meta.emailId))) return 'body';
  return needs.header ? 'header' : 'none';
}

/** Items that set \Seen when the folder is open for writing (RFC 9051 §6.4.5). */
function marksSeen(items: FetchItem[]): boolean {
  return items.some((i) => ((i.kind === 'BODY[]' || i.kind === 'BINARY[]') && !i.peek) || i.kind === 'RFC822' || i.kind === 'RFC822.TEXT');
}

function sectionName(s: Section): string {
  const parts = [...s.part.map(String), ...(s.specifier ? [s.specifier] : [])].join('.');
  return s.fields ? `${parts} (${s.fields.join(' ')})` : parts;
}

/**
 * FETCH and UID FETCH (with CHANGEDSINCE and VANISHED): what the view knows is answered at
 * once; bodies, headers and structure come from the primary in batches, and MIME is worked
 * out here, on the frontend.
 */
export async function fetch(
  s: ImapSession,
  cmd: { uid: boolean; set: SequenceSet; items: FetchItem[]; changedSince?: bigint; vanished: boolean },
): Promise<string | void> {
  const sel = s.selected!;
  const { view } = sel;
  const { account, calls } = s.mailbox;
  if (!cmd.uid && view.outOfRange(cmd.set)) throw new Tagged('BAD', 'Message number out of range');
  if (cmd.vanished && !(cmd.uid && s.qresync && cmd.changedSince !== undefined)) throw new Tagged('BAD', 'VANISHED needs UID FETCH, QRESYNC and CHANGEDSINCE');
  const items = [...cmd.items];
  if (cmd.uid && !items.some((i) => i.kind === 'UID')) items.unshift({ kind: 'UID' });
  if (cmd.changedSince !== undefined || items.some((i) => i.kind === 'MODSEQ')) s.condstore = true;
  if (cmd.changedSince !== undefined && !items.some((i) => i.kind === 'MODSEQ')) items.push({ kind: 'MODSEQ' });

  let uids = view.resolve(cmd.set, cmd.uid, sel.saved);
  const resolved = uids.length;
  uids = uids.filter((u) => view.get(u));
  const expungeIssued = uids.length < resolved;
  if (cmd.changedSince !== undefined) {
    const since = Number(cmd.changedSince);
    if (cmd.vanished) {
      const earlier = (await calls.select(account, sel.folder, since)).vanished.filter((u) => !view.get(u) && inSet(u, cmd.set));
      if (earlier.length) s.out(`* VANISHED (EARLIER) ${sequenceSet(earlier)}`);
    }
    uids = uids.filter((u) => view.get(u)!.modseq > since);
  }

  // \Seen first, so the answer shows it (and includes FLAGS for the messages it changed).
  const flagsChanged = new Set<number>();
  if (!sel.readOnly && marksSeen(items)) {
    const unseen = uids.filter((u) => !view.get(u)!.flags.includes('\\Seen'));
    if (unseen.length) {
      const res = await calls.storeFlags(account, sel.folder, unseen, 'add', ['\\Seen']);
      for (const c of res.changed) {
        const known = view.get(c.uid);
        if (!known) continue;
        view.own({ ...known, flags: c.flags, modseq: Number(c.modseq) });
        flagsChanged.add(c.uid);
      }
    }
  }

  const needs = fetchNeeds(items);
  for (const batch of batches(uids, (u) => view.get(u)!.size)) {
    // What the primary must send of each message: its header block, its bytes, or nothing (the view and the cache know the rest).
    const want = { header: [] as number[], body: [] as number[] };
    for (const uid of batch) {
      const load = loadFor(needs, view.get(uid)!);
      if (load !== 'none') want[load].push(uid);
    }
    const got = new Map<number, Buffer>();
    for (const load of ['header', 'body'] as const)
      if (want[load].length) for (const r of await calls.fetchMany(account, sel.folder, want[load], load === 'header')) got.set(r.info.uid, r.body);
    for (const uid of batch) {
      const meta = view.get(uid);
      const raw = got.get(uid);
      // Expunged between the view and the read: nothing to say of it.
      if (!meta || (raw === undefined && loadFor(needs, meta) !== 'none')) continue;
      await respond(s, view.seqOf(uid), meta, items, flagsChanged.has(uid), needs.tree ? await trees.tree(meta.emailId, raw!) : undefined, raw);
    }
  }
  if (expungeIssued) return '[EXPUNGEISSUED] Some messages were expunged meanwhile';
}

function inSet(uid: number, set: SequenceSet): boolean {
  return !set.saved && set.ranges.some(([a, b]) => uid >= Math.min(a, b) && uid <= Math.max(a, b));
}

/** A FETCH of a big folder goes in batches, each written out before the next is read: bounded by count and by bytes. */
function* batches(uids: number[], size: (uid: number) => number): Generator<number[]> {
  let batch: number[] = [];
  let bytes = 0;
  for (const uid of uids) {
    batch.push(uid);
    bytes += size(uid);
    if (batch.length >= BATCH.count || bytes >= BATCH.bytes) {
      yield batch;
      batch = [];
      bytes = 0;
    }
  }
  if (batch.length) yield batch;
}

/** One `* n FETCH (...)`, written out (a slow reader holds the next back). */
async function respond(s: ImapSession, seq: number, meta: MessageMeta, items: FetchItem[], withFlags: boolean, tree: MimeTree | undefined, raw: Buffer | undefined): Promise<void> {
  const out: Buffer[] = [];
  let text = '';
  const put = (item: string, data?: Buffer | null, binaryData = false) => {
    text += (text || out.length ? ' ' : '') + item;
    if (data === undefined) return;
    // A part the message does not have is NIL.
    if (data === null) text += ' NIL';
    else {
      out.push(Buffer.from(text + ' '), literal(data, binaryData && data.includes(0)));
      text = '';
    }
  };
  const partial = (data: Buffer | null, p: { start: number; length: number } | undefined) => (data && p ? data.subarray(p.start, p.start + p.length) : data);
  if (withFlags && !items.some((i) => i.kind === 'FLAGS')) items = [...items, { kind: 'FLAGS' }];
  for (const item of items) {
    switch (item.kind) {
      case 'UID':
        put(`UID ${meta.uid}`);
        break;
      case 'FLAGS':
        put(`FLAGS (${meta.flags.join(' ')})`);
        break;
      case 'INTERNALDATE':
        put(`INTERNALDATE ${dateTime(new Date(meta.receivedAt))}`);
        break;
      case 'RFC822.SIZE':
        put(`RFC822.SIZE ${meta.size}`);
        break;
      case 'MODSEQ':
        put(`MODSEQ (${meta.modseq})`);
        break;
      case 'EMAILID':
        put(`EMAILID (${meta.emailId})`);
        break;
      case 'THREADID':
        put(`THREADID ${meta.threadId ? `(${meta.threadId})` : 'NIL'}`);
        break;
      case 'ENVELOPE':
        put(`ENVELOPE ${formatEnvelope(envelope(tree ? tree.root.header : raw!), s.utf8)}`);
        break;
      case 'BODYSTRUCTURE':
      case 'BODY':
        put(`${item.kind} ${formatBodyStructure(bodyStructure(tree!), item.kind === 'BODYSTRUCTURE', s.utf8)}`);
        break;
      case 'RFC822':
        put('RFC822', raw!);
        break;
      case 'RFC822.HEADER':
        put('RFC822.HEADER', section(raw!, { part: [], specifier: 'HEADER' }));
        break;
      case 'RFC822.TEXT':
        put('RFC822.TEXT', section(raw!, { part: [], specifier: 'TEXT' }));
        break;
      case 'BODY[]':
        put(`BODY[${sectionName(item.section)}]${item.partial ? `<${item.partial.start}>` : ''}`, partial(section(raw!, item.section, tree), item.partial));
        break;
      case 'BINARY[]':
      case 'BINARY.SIZE': {
        const r = item.kind === 'BINARY[]' ? binary(raw!, item.section.part, tree) : binarySize(raw!, item.section.part, tree);
        if ('reason' in r && r.reason === 'unknown-cte') throw new Tagged('NO', `[UNKNOWN-CTE] Cannot decode ${r.encoding}`);
        const name = `${item.kind === 'BINARY[]' ? 'BINARY' : 'BINARY.SIZE'}[${item.section.part.join('.')}]`;
        if ('size' in r) put(`${name} ${r.size}`);
        else if (item.kind === 'BINARY.SIZE') put(`${name} 0`);
        else put(`${name}${item.partial ? `<${item.partial.start}>` : ''}`, partial(r.data, item.partial), true);
        break;
      }
    }
  }
  s.outBytes(Buffer.concat([Buffer.from(`* ${seq} FETCH (`), ...out, Buffer.from(`${text})\r\n`)]));
  await s.waitFlushed();
}
