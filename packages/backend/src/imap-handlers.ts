import { threadKeys } from './thread-keys.js';
import type * as grpc from '@grpc/grpc-js';
import { Replies, type DiskGuard, type Logger } from '@mailgrid/core';
import { toServiceError, type MailboxHandlers } from '@mailgrid/protocol';
import { INBOX, type FolderInfo, type LmdbMailStore, type MailboxChange, type MessageInfo } from '@mailgrid/store';

export interface ImapHandlersDeps {
  store: LmdbMailStore;
  /** The account an address names here, fenced like every Mailbox call (a write also by its epoch). */
  account: (address: string, write?: { metadata: grpc.Metadata }) => Promise<string>;
  /** The store's disk floor (`backend.minFreeBytes`): APPEND and COPY stop above it, as deliveries do. */
  disk: DiskGuard;
  /** Bytes of an APPEND chunk and of the largest message taken. */
  maxMessageBytes: () => number;
  /** SEARCH, SORT and THREAD over a folder (the IMAP library's evaluation, on this member's copy). */
  search: (account: string, folder: string, request: { key: string; sort: string; thread: string; scope: number[]; saved: number[] }) => Promise<{ uids: number[]; threads: string; modseq: number }>;
  /** Ends a change feed with the epoch it began in (see MailboxHolds). */
  track: (call: grpc.ServerWritableStream<any, any>, account: string) => void;
  log: Logger;
}

type Unary<Req, Res> = (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => void;

/**
 * The IMAP part of the Mailbox service: folders, a folder's state, STORE, EXPUNGE, COPY and
 * MOVE, APPEND, SEARCH, quota, and the change feed (Watch). Reads answer what is durable
 * only (`readDurable`); writes are fenced by the caller's epoch.
 */
export function imapHandlers(deps: ImapHandlersDeps): Pick<
  MailboxHandlers,
  'Open' | 'Mailboxes' | 'CreateMailbox' | 'DeleteMailbox' | 'RenameMailbox' | 'Subscribe' | 'Select' | 'StoreFlags' | 'Expunge' | 'Copy' | 'Append' | 'Search' | 'Quota' | 'SetQuota' | 'Watch'
> {
  const { store } = deps;
  const changes = new AccountChanges(store);
  /** A unary handler: the account resolved (fenced as a write when `write`), then `work`'s answer, or the error. */
  const unary =
    <Req extends { account: string }, Res>(write: boolean, work: (account: string, req: Req) => Promise<Res>): Unary<Req, Res> =>
    (call, callback) => {
      deps
        .account(call.request.account, write ? call : undefined)
        .then((acct) => work(acct, call.request))
        .then((res) => callback(null, res))
        .catch((err) => callback(toServiceError(err)));
    };
  const mailboxes = (acct: string) => store.readDurable(() => ({ folders: store.folders(acct).map(folderWire), subscribed: store.subscribed(acct), modseq: store.modseq(acct) }), acct);

  return {
    Open: unary(true, async (acct) => {
      await store.ensureMailboxes(acct);
      return mailboxes(acct);
    }),
    Mailboxes: unary(false, mailboxes),
    CreateMailbox: unary(true, async (acct, req) => folderWire(await store.createMailbox(acct, mailboxName(req.name), req.specialUse || undefined))),
    DeleteMailbox: unary(true, async (acct, req) => {
      await store.deleteMailbox(acct, mailboxName(req.name));
      return mailboxes(acct);
    }),
    RenameMailbox: unary(true, async (acct, req) => {
      await store.renameMailbox(acct, mailboxName(req.from), mailboxName(req.to));
      return mailboxes(acct);
    }),
    Subscribe: unary(true, async (acct, req) => {
      await store.subscribe(acct, mailboxName(req.name), req.on);
      return mailboxes(acct);
    }),
    Select: unary(false, (acct, req) =>
      store.readDurable(() => {
        const folder = req.folder || INBOX;
        const info = store.folderInfo(acct, folder);
        if (!info.exists) throw Replies.noSuchMailbox(folder);
        if (!req.changedSince) return { folder: folderWire(info), messages: store.list(acct, folder).map(messageWire), vanished: [] };
        const { changed, vanished } = store.changedSince(acct, folder, Number(req.changedSince));
        return { folder: folderWire(info), messages: changed.map(messageWire), vanished };
      }, acct),
    ),
    StoreFlags: unary(true, async (acct, req) => {
      if (req.op !== 'add' && req.op !== 'remove' && req.op !== 'replace') throw Replies.malformedRequest(`STORE op ${req.op}`);
      const r = await store.storeFlags(acct, req.folder || INBOX, req.uids, req.op, req.flags, req.hasUnchangedSince ? Number(req.unchangedSince) : undefined);
      return { changed: r.changed.map((c) => ({ uid: c.uid, flags: c.flags, modseq: c.modseq })), modified: r.modified };
    }),
    Expunge: unary(true, async (acct, req) => ({ uids: await store.expunge(acct, req.folder || INBOX, req.all ? undefined : req.uids) })),
    Copy: unary(true, async (acct, req) => {
      // A copy shares its bytes (a reference, not a second blob): it only needs the floor not crossed.
      await mustHaveRoom(deps.disk, 0);
      const r = await store.copyMessages(acct, req.from || INBOX, req.to || INBOX, req.uids, req.move);
      return { uidValidity: r.uidValidity, source: r.pairs.map((p) => p[0]), target: r.pairs.map((p) => p[1]) };
    }),
    Append(call, callback) {
      let first: { account: string; folder: string; flags: string[]; receivedAtMs: number; size: number } | undefined;
      const chunks: Buffer[] = [];
      let bytes = 0;
      let failed = false;
      const fail = (err: unknown) => {
        if (failed) return;
        failed = true;
        callback(toServiceError(err));
      };
      call.on('data', (req) => {
        first ??= { account: req.account, folder: req.folder || INBOX, flags: req.flags, receivedAtMs: Number(req.receivedAtMs), size: Number(req.size) };
        bytes += req.chunk.length;
        if (bytes > deps.maxMessageBytes() || bytes > first.size) return fail(Replies.malformedRequest('APPEND larger than it said'));
        chunks.push(req.chunk);
      });
      call.on('error', fail);
      call.on('end', () => {
        if (failed) return;
        if (!first || bytes !== first.size) return fail(Replies.malformedRequest('APPEND shorter than it said'));
        const f = first;
        deps
          .account(f.account, call)
          .then(async (acct) => {
            await mustHaveRoom(deps.disk, bytes);
            const body = Buffer.concat(chunks, bytes);
            return store.appendMessage(acct, f.folder, body, f.flags, f.receivedAtMs || Date.now(), threadKeys(body));
          })
          .then((r) => callback(null, r))
          .catch(fail);
      });
    },
    Search: unary(false, (acct, req) => deps.search(acct, req.folder || INBOX, req)),
    Quota: unary(false, (acct) => store.readDurable(() => store.quota(acct), acct)),
    SetQuota: unary(true, async (acct, req) => {
      await store.setQuota(acct, Number(req.limit));
      return store.quota(acct);
    }),
    Watch(call) {
      watch(call, deps, changes).catch((err) => call.emit('error', toServiceError(err)));
    },
  };
}

/** Refuses (`NO [UNAVAILABLE]`, a passing fault) a write of `bytes` that would take the disk below its floor. */
async function mustHaveRoom(disk: DiskGuard, bytes: number): Promise<void> {
  const refused = await disk.reserve(bytes);
  if (refused) throw refused;
}

/**
 * The change feed of one account: first what changed after `fromModseq` (each folder's
 * changed messages and vanished uids, exact: expunged uids are kept), then every change as
 * it becomes durable, until the call ends or this member stops being the primary (the
 * Hold streams and the fence end it then).
 */
async function watch(call: grpc.ServerWritableStream<{ account: string; fromModseq: number }, unknown>, deps: ImapHandlersDeps, changes: AccountChanges): Promise<void> {
  const acct = await deps.account(call.request.account, call);
  deps.track(call, acct);
  const from = Number(call.request.fromModseq);
  const { store } = deps;
  const pending: MailboxChange[] = [];
  let live = false;
  const send = (c: MailboxChange) => call.write({ ...changeWire(c), atMs: live ? Date.now() : 0 });
  const stop = changes.listen(acct, (c) => {
    if (live) send(c);
    else pending.push(c);
  });
  call.on('cancelled', stop);
  call.on('close', stop);
  call.on('error', stop);
  // Caught up from `from`, folder by folder; what came meanwhile follows, past what was sent.
  const caught = await store.readDurable(() =>
    store.folders(acct).flatMap((f) => {
      if (f.highestModseq <= from) return [];
      const { changed, vanished } = store.changedSince(acct, f.name, from);
      return [{ folder: f.name, modseq: f.highestModseq, changed, vanished }];
    }),
    acct,
  );
  for (const c of caught) call.write({ folder: c.folder, modseq: c.modseq, appended: [], flags: c.changed.map(messageWire), expunged: c.vanished, mailboxes: false, resync: false });
  const sent = new Map(caught.map((c) => [c.folder, c.modseq]));
  for (const c of pending) if (c.mailboxes || c.modseq > (sent.get(c.folder) ?? from)) send(c);
  live = true;
}

/**
 * The store's changes by account: a change goes to the feeds of its own account, not past
 * every feed the primary serves (one per account and frontend: thousands), and the store
 * has one listener, not one per feed.
 */
class AccountChanges {
  private readonly feeds = new Map<string, Set<(c: MailboxChange) => void>>();

  constructor(store: LmdbMailStore) {
    store.on('change', (c: MailboxChange) => {
      const feeds = this.feeds.get(c.account);
      if (feeds) for (const f of feeds) f(c);
    });
  }

  /** `f` hears `account`'s changes until the returned function is called. */
  listen(account: string, f: (c: MailboxChange) => void): () => void {
    let feeds = this.feeds.get(account);
    if (!feeds) this.feeds.set(account, (feeds = new Set()));
    feeds.add(f);
    return () => {
      feeds.delete(f);
      if (!feeds.size && this.feeds.get(account) === feeds) this.feeds.delete(account);
    };
  }
}

function folderWire(f: FolderInfo) {
  return { ...f, highestModseq: f.highestModseq };
}

function messageWire(m: MessageInfo) {
  return { uid: m.uid, flags: m.flags, modseq: m.modseq, size: m.size, receivedAtMs: m.receivedAt, emailId: m.emailId, threadId: m.threadId };
}

function changeWire(c: MailboxChange) {
  return { folder: c.folder, modseq: c.modseq, appended: c.appended ?? [], flags: c.flags ?? [], expunged: c.expunged ?? [], mailboxes: Boolean(c.mailboxes), resync: false };
}

/** A folder name as the store keys it: INBOX in any case is INBOX; empty or with empty levels is not a name. */
function mailboxName(name: string): string {
  if (!name || name.split('/').some((level) => !level)) throw Replies.mailboxRefused(`not a mailbox name: ${JSON.stringify(name)}`);
  return name.toUpperCase() === INBOX ? INBOX : name;
}
