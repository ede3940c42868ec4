import type * as grpc from '@grpc/grpc-js';
import { AdminError, hashPassword, normalizeHash, Replies, verifyPassword, type Logger, type Service, type ServiceState } from '@mailgrid/core';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Router } from '@mailgrid/mailflow';
import { proto, toServiceError, traceFromMetadata, type GrpcService, type MailboxHandlers } from '@mailgrid/protocol';
import { INBOX, type LmdbMailStore, type MessageInfo } from '@mailgrid/store';
import { imapHandlers, type ImapHandlersDeps } from './imap-handlers.js';

export interface MailboxServiceDeps {
  group: string;
  router: Router;
  store: LmdbMailStore;
  chunkBytes: number;
  maxMessageBytes: () => number;
  search: ImapHandlersDeps['search'];
  /** The epoch while this member is its group's primary (a cluster member); absent: not fenced. */
  epoch?: () => number | undefined;
  /** How long a verified password is trusted without hashing it again (0: never). */
  cacheMs: () => number;
  holds: MailboxHolds;
  disk: ImapHandlersDeps['disk'];
  log: Logger;
}

/**
 * A fenced member (`epoch`) serves only while it is its group's primary, and a write (`call`)
 * only when the call carries its current epoch.
 */
export function fence(group: string, epoch: (() => number | undefined) | undefined, write?: { metadata: grpc.Metadata }): void {
  if (!epoch) return;
  const current = epoch();
  if (current === undefined) throw Replies.notPrimary(group);
  const sent = write && Number(traceFromMetadata(write.metadata).epoch);
  if (write && sent !== current) throw Replies.staleEpoch(Number(sent) || 0, current);
}

/**
 * The account an address names, if this backend's group holds it; else the admin answer why
 * not. A fenced member (`epoch`) answers only while it is the primary, and a write only when
 * the call carries its epoch: a replica or a deposed primary never serves what could diverge.
 */
export function ownedAccount(router: Router, group: string, epoch?: () => number | undefined): (address: string, call?: { metadata: grpc.Metadata }) => Promise<string> {
  return async (address, write) => {
    fence(group, epoch, write);
    const route = await router.route(address);
    if (route.kind === 'tempfail') throw route.reason;
    if (route.kind !== 'local') throw route.kind === 'unknown' && route.reason.code === 'BAD_ADDRESS' ? Replies.invalidAddress(address) : Replies.noSuchAccount(address);
    if (route.group !== group) throw Replies.accountInOtherGroup(route.account, route.group, group);
    return route.account;
  };
}

/** An account's mail and credentials (the CLI; POP3, IMAP and SMTP AUTH on the frontends). */
export function mailboxService(deps: MailboxServiceDeps): GrpcService {
  const account = ownedAccount(deps.router, deps.group, deps.epoch);
  const wire = (m: MessageInfo) => ({ folder: m.folder, uid: m.uid, size: m.size, receivedAtMs: m.receivedAt, flags: m.flags, modseq: m.modseq, emailId: m.emailId, threadId: m.threadId });
  const credentials = new CredentialCache(deps.cacheMs);

  const handlers: MailboxHandlers = {
    ...imapHandlers({ store: deps.store, disk: deps.disk, account, maxMessageBytes: deps.maxMessageBytes, search: deps.search, track: (call, acct) => deps.holds.track(call, acct), log: deps.log }),
    List(call, callback) {
      account(call.request.account)
        .then((acct) => {
          const folder = call.request.folder || INBOX;
          const ids = deps.store.folderIds(acct, folder);
          callback(null, { messages: deps.store.list(acct, folder).map(wire), uidValidity: ids.uidValidity, uidNext: ids.uidNext });
        })
        .catch((err) => callback(toServiceError(err)));
    },

    Folders(call, callback) {
      account(call.request.account)
        .then((acct) => callback(null, { folders: deps.store.folders(acct) }))
        .catch((err) => callback(toServiceError(err)));
    },

    SetFlags(call, callback) {
      const { folder, uids, add, remove } = call.request;
      account(call.request.account, call)
        .then((acct) => deps.store.setFlags(acct, folder || INBOX, uids, add, remove))
        .then((changed) => callback(null, { changed }))
        .catch((err) => callback(toServiceError(err)));
    },

    Authenticate(call, callback) {
      const { user, password } = call.request;
      account(user)
        .catch((err) => {
          // Unknown or not here: the same answer as a wrong password, after as long.
          if (AdminError.is(err) && (err.code === 'NOT_FOUND' || err.code === 'INVALID_ARGUMENT')) return undefined;
          throw err;
        })
        .then(async (acct) => {
          // No such account here, or no password: no (the frontend answers every failure after the same delay).
          const stored = acct === undefined ? undefined : deps.store.passwordHash(acct);
          const { ok, cached } = stored ? await credentials.verify(acct!, stored.hash, password) : { ok: false, cached: false };
          callback(null, { ok, account: ok ? acct! : '', cached });
          // An imported hash is checked once in its own scheme (bcrypt, argon2id and SHA512-CRYPT block the thread), then kept as scrypt.
          if (ok && !cached && !stored!.hash.startsWith('$scrypt$'))
            hashPassword(password)
              .then((hash) => deps.store.setPasswordHash(acct!, hash))
              .then(() => deps.log.info({ event: 'password.rehashed', account: acct }, 'imported password hash replaced by scrypt'))
              .catch((err) => deps.log.warn({ event: 'password.rehash-failed', account: acct, err: (err as Error).message }, 'imported password hash kept'));
        })
        .catch((err) => callback(toServiceError(err)));
    },

    SetPassword(call, callback) {
      const hash = normalizeHash(call.request.hash);
      if (!hash) return callback(toServiceError(Replies.badPasswordHash()));
      account(call.request.account, call)
        .then((acct) => deps.store.setPasswordHash(acct, hash))
        .then(() => callback(null, {}))
        .catch((err) => callback(toServiceError(err)));
    },

    Release(call, callback) {
      callback(null, { released: deps.holds.release(call.request.account, call.request.holder) });
    },

    Hold(call: grpc.ServerWritableStream<any, any>) {
      // Fenced like a write: only the primary of the caller's epoch grants it.
      account(call.request.account, call)
        .then((acct) => deps.holds.hold(acct, call.request.holder || 'unnamed', Boolean(call.request.shared), call))
        .catch((err) => call.emit('error', toServiceError(err)));
    },

    /**
     * One message, or several (`uids`: each as its info then its chunks; one gone since is
     * left out), whole or only its header block.
     */
    Fetch(call: grpc.ServerWritableStream<any, any>) {
      const { folder, uid, uids, headerOnly } = call.request as { folder: string; uid: number; uids: number[]; headerOnly: boolean };
      account(call.request.account)
        .then(async (acct) => {
          const many = uids.length > 0;
          for (const u of many ? uids : [uid]) {
            const found = deps.store.fetch(acct, folder || INBOX, u);
            if (!found) {
              if (many) continue;
              throw Replies.noSuchMessage(acct, folder || INBOX, u);
            }
            const body = headerOnly ? headerBlock(found.body) : found.body;
            call.write({ info: wire(found.info) });
            for (let i = 0; i < body.length; i += deps.chunkBytes) {
              // A large answer waits for the client to read what was written.
              if (!call.write({ chunk: body.subarray(i, i + deps.chunkBytes) })) await new Promise((r) => call.once('drain', r));
            }
          }
          call.end();
        })
        .catch((err) => call.emit('error', toServiceError(err)));
    },

    Delete(call, callback) {
      account(call.request.account, call)
        .then((acct) => deps.store.delete(acct, call.request.folder || INBOX, call.request.uids))
        .then((deleted) => callback(null, { deleted }))
        .catch((err) => callback(toServiceError(err)));
    },
  };
  return { name: 'Mailbox', definition: proto.Mailbox.service, handlers: handlers as never };
}

/** A message's header block, with the blank line that ends it (all of it when there is none). */
function headerBlock(body: Buffer): Buffer {
  const end = body.indexOf('\r\n\r\n');
  return end < 0 ? body : body.subarray(0, end + 4);
}

/**
 * Verified passwords, trusted for `ttlMs` without hashing again (as Dovecot's auth_cache):
 * a POP3 check every few minutes would otherwise spend a slow hash each time. Keyed by the
 * stored hash, so a changed password takes effect at once; the password itself is kept only
 * as an HMAC under a key made at start (never written anywhere). Only successes are kept, so
 * a wrong password is always hashed (and slow).
 */
export class CredentialCache {
  private readonly key = randomBytes(32);
  private readonly entries = new Map<string, { hash: string; digest: Buffer; until: number }>();

  constructor(
    private readonly ttlMs: () => number,
    private readonly max = 200_000,
  ) {}

  async verify(account: string, hash: string, password: string): Promise<{ ok: boolean; cached: boolean }> {
    const digest = createHmac('sha256', this.key).update(password).digest();
    const e = this.entries.get(account);
    if (e && e.hash === hash && e.until > Date.now() && timingSafeEqual(e.digest, digest)) return { ok: true, cached: true };
    const ok = await verifyPassword(password, hash);
    const ttl = this.ttlMs();
    if (ok && ttl > 0) {
      this.entries.delete(account);
      if (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value!);
      // Up to a tenth earlier: accounts that logged in together do not all expire together.
      this.entries.set(account, { hash, digest, until: Date.now() + ttl * (0.9 + Math.random() / 10) });
    }
    return { ok, cached: false };
  }
}

/**
 * The access sessions that hold a mailbox, each an open Hold stream: at most one exclusive
 * holder per account (RFC 1939's maildrop, POP3), and any number of shared ones (IMAP). A
 * session whose frontend dies lets go when its stream breaks. Every hold ends when this
 * member stops being the primary or stops, so the session goes on at the new primary,
 * never on two.
 */
export class MailboxHolds implements Service {
  readonly name = 'mailbox-holds';
  private _state: ServiceState = 'new';
  /** Per account: its holders by name. */
  private readonly held = new Map<string, Map<string, Hold>>();
  /** Change feeds (Watch), ended like the holds: they live in one epoch, for an account of this group. */
  private readonly watches = new Map<grpc.ServerWritableStream<any, any>, { epoch: number | undefined; account: string }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    /** The epoch while this member is its group's primary (absent: the single node, never fenced). */
    private readonly epoch: (() => number | undefined) | undefined,
    private readonly log: Logger,
    /** Whether an account is still this group's (false once it has moved away): its sessions then end, and the next go to its new group. */
    private readonly owns: (account: string) => boolean = () => true,
  ) {}

  get state(): ServiceState {
    return this._state;
  }

  /** Ends `holder`'s hold of `account` (the stream ends from this side); false if it held none. */
  release(account: string, holder: string): boolean {
    const h = this.held.get(account)?.get(holder);
    if (!h) return false;
    this.forget(account, holder, h.call);
    h.call.end();
    return true;
  }

  hold(account: string, holder: string, shared: boolean, call: grpc.ServerWritableStream<any, any>): void {
    if (this._state !== 'running') throw Replies.notPrimary('');
    const holders = this.held.get(account) ?? new Map<string, Hold>();
    const live = (h: Hold) => !h.call.cancelled && !h.call.destroyed;
    if (!shared && [...holders.values()].some((h) => !h.shared && live(h))) throw Replies.mailboxInUse(account);
    holders.get(holder)?.call.end();
    holders.set(holder, { shared, epoch: this.epoch?.(), call });
    this.held.set(account, holders);
    const release = () => this.forget(account, holder, call);
    call.on('cancelled', release);
    call.on('close', release);
    call.on('error', release);
    call.write({ held: true });
  }

  /** A change feed, ended when this member stops being the primary of this epoch, or stops. */
  track(call: grpc.ServerWritableStream<any, any>, account: string): void {
    if (this._state !== 'running') throw Replies.notPrimary('');
    this.watches.set(call, { epoch: this.epoch?.(), account });
    const forget = () => this.watches.delete(call);
    call.on('cancelled', forget);
    call.on('close', forget);
    call.on('error', forget);
  }

  private forget(account: string, holder: string, call: grpc.ServerWritableStream<any, any>): void {
    const holders = this.held.get(account);
    if (holders?.get(holder)?.call !== call) return;
    holders.delete(holder);
    if (!holders.size) this.held.delete(account);
  }

  async start(): Promise<void> {
    this._state = 'running';
    // A hold lives in one epoch (a member deposed, even if elected again since, lets go of
    // it) and while its account is the group's (after a move the sessions go to the new one).
    this.timer = setInterval(() => {
      if (!this.held.size && !this.watches.size) return;
      const now = this.epoch?.();
      for (const [call, w] of this.watches) {
        if (w.epoch === now && this.owns(w.account)) continue;
        this.watches.delete(call);
        call.end();
      }
      for (const [account, holders] of this.held) {
        const owned = this.owns(account);
        for (const [holder, h] of holders) {
          if (h.epoch === now && owned) continue;
          this.forget(account, holder, h.call);
          h.call.end();
          this.log.info({ event: 'mailbox.hold-ended', account, holder, why: owned ? 'epoch changed' : 'account moved' }, 'access session let go');
        }
      }
    }, 250);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this._state === 'stopped') return;
    this._state = 'stopped';
    clearInterval(this.timer);
    const calls = [...this.held.values()].flatMap((holders) => [...holders.values()].map((h) => h.call));
    if (calls.length) this.log.info({ event: 'mailbox.holds-ended', holds: calls.length, why: 'stopping' }, 'access sessions let go');
    this.held.clear();
    for (const call of [...calls, ...this.watches.keys()]) call.end();
    this.watches.clear();
  }
}

interface Hold {
  shared: boolean;
  epoch: number | undefined;
  call: grpc.ServerWritableStream<any, any>;
}
