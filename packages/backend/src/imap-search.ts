import { bodyText, headerFields, matches, parseMime, searchNeeds, sort, sortNeeds, thread, type HeaderFields, type SearchKey, type SearchableMessage, type SortKey, toThreadData } from '@mailgrid/imap';
import type { LmdbMailStore, MessageInfo } from '@mailgrid/store';

export interface SearchRequest {
  key: string;
  sort: string;
  thread: string;
  scope: number[];
  saved: number[];
}

/**
 * SEARCH, SORT and THREAD over a folder at the primary (the IMAP library's evaluation):
 * the session's view is `scope`, its message numbers already uids. Only what the keys need
 * is read: the record alone, the header block, or the body's text.
 */
export async function searchFolder(store: LmdbMailStore, account: string, folder: string, req: SearchRequest): Promise<{ uids: number[]; threads: string; modseq: number }> {
  const key = JSON.parse(req.key, (k, v) => (k === 'modseq' && typeof v === 'number' ? BigInt(v) : v)) as SearchKey;
  const sortKeys = req.sort ? (JSON.parse(req.sort) as SortKey[]) : undefined;
  const algorithm = req.thread === 'REFERENCES' || req.thread === 'ORDEREDSUBJECT' ? req.thread : undefined;
  const scope = new Set(req.scope);
  const messages = (await store.readDurable(() => store.list(account, folder), account)).filter((m) => scope.has(m.uid));
  const maxUid = messages.length ? messages[messages.length - 1].uid : 0;
  const need = searchNeeds(key);
  const context = { now: Date.now(), maxSeq: maxUid, maxUid, saved: new Set(req.saved) };
  const found: { m: MessageInfo; header?: HeaderFields }[] = [];
  for (const m of messages) {
    let raw: Buffer | undefined;
    let header: HeaderFields | undefined;
    const bytes = () => (raw ??= store.fetch(account, folder, m.uid)?.body ?? Buffer.alloc(0));
    let text: string | undefined;
    // The body's text needs the MIME tree, worked out before the (synchronous) match.
    if (need.body) text = bodyText(bytes(), await parseMime(bytes()));
    const message: SearchableMessage = {
      seq: m.uid,
      uid: m.uid,
      flags: m.flags,
      modseq: BigInt(m.modseq),
      internalDate: m.receivedAt,
      size: m.size,
      emailId: m.emailId,
      threadId: m.threadId,
      headers: () => (header ??= headerFields(bytes())),
      bodyText: () => text ?? '',
    };
    if (matches(key, message, context)) found.push({ m, header });
  }
  const modseq = found.reduce((max, f) => Math.max(max, f.m.modseq), 0);
  const headersOf = (f: (typeof found)[number]) => (f.header ??= headerFields(store.fetch(account, folder, f.m.uid)?.body ?? Buffer.alloc(0))).parsed;

  if (algorithm) {
    const threads = thread(
      algorithm,
      found.map((f) => ({ seq: f.m.uid, internalDate: f.m.receivedAt, headers: headersOf(f) })),
    );
    return { uids: found.map((f) => f.m.uid), threads: JSON.stringify(toThreadData(threads, (m) => m.seq)), modseq };
  }
  if (sortKeys) {
    const withHeaders = sortNeeds(sortKeys).headers;
    const sorted = sort(
      found.map((f) => ({ seq: f.m.uid, internalDate: f.m.receivedAt, size: f.m.size, headers: withHeaders ? headersOf(f) : undefined })),
      sortKeys,
    );
    return { uids: sorted.map((s) => s.seq), threads: '', modseq };
  }
  return { uids: found.map((f) => f.m.uid), threads: '', modseq };
}
