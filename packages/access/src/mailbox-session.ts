import { Replies, type Logger } from '@mailgrid/core';
import type { HostingGroups } from '@mailgrid/directory';
import type { Router } from '@mailgrid/mailflow';
import { ClientPool, createMailboxClient, MailboxCalls, type ListResponse__Output, type MailboxClient, type MailboxHold, type SelectResponse__Output, type Trace } from '@mailgrid/protocol';
import { ChangeFeeds, type ChangeListener } from './change-feeds.js';

/** POP3's maildrop is the session's alone (RFC 1939: `[IN-USE]`); IMAP sessions share a mailbox. */
export type HoldMode = 'exclusive' | 'shared';

/** One hold of an account at its primary, for all of its shared sessions on this frontend. */
interface SharedHold {
  /** Sessions on it, and those waiting for its grant. */
  users: number;
  granted: Promise<MailboxHold>;
}

/**
 * The way from a frontend's access sessions to the accounts' groups: one Mailbox client per
 * primary (a channel carries every session's calls), each call fenced by the primary's epoch.
 */
export class MailboxAccess {
  private readonly clients = new ClientPool<MailboxClient>(createMailboxClient);
  private readonly feeds: ChangeFeeds;
  /** Shared holds by group, epoch and account: one for all the account's shared sessions here. */
  private readonly shared = new Map<string, SharedHold>();

  constructor(
    private readonly deps: {
      router: Router;
      groups: HostingGroups;
      /** The deadline of one call. */
      timeoutMs: () => number;
      node: string;
      log: Logger;
    },
  ) {
    // A minute without a session before an account's feed goes: clients that poll come back sooner.
    this.feeds = new ChangeFeeds({ lingerMs: 60_000, log: deps.log });
  }

  /** Calls to the Mailbox service of a group's primary now. */
  async calls(group: string, trace: Trace = {}): Promise<MailboxCalls> {
    const primary = await this.deps.groups.primary(group);
    if (!primary) throw Replies.backendUnavailable();
    return new MailboxCalls(this.clients.get(primary.address), primary, { timeoutMs: this.deps.timeoutMs(), trace: { node: this.deps.node, ...trace } });
  }

  /**
   * An account's mailbox for one session, held at its group's primary now: `exclusive`
   * fails with MAILBOX_IN_USE while another exclusive session holds it; `shared` never does,
   * and shares the hold of the account's other shared sessions here.
   */
  async open(account: string, options: { mode: HoldMode; session: string; log: Logger }): Promise<MailboxSession> {
    const route = await this.deps.router.route(account);
    if (route.kind === 'tempfail') throw route.reason;
    if (route.kind !== 'local') throw Replies.backendUnavailable(new Error(`${account} is not an account here now`));
    const calls = await this.calls(route.group, { session: options.session });
    const hold =
      options.mode === 'shared' ? await this.sharedHold(route.account, route.group, calls, options.session) : await calls.hold(route.account, `${this.deps.node}/${options.session}`, false);
    return new MailboxSession(route.account, route.group, calls, hold, options.log, this.feeds);
  }

  /**
   * The shared sessions of an account on this frontend hold it together: one Hold at its
   * primary (named after the session that took it), taken by the first, let go by the last.
   * Shared holds never conflict, so one stands for all of them; when it is lost, every
   * session on it is. A hold that is lost, or being let go, is not joined: the next session
   * takes a new one.
   */
  private async sharedHold(account: string, group: string, calls: MailboxCalls, session: string): Promise<MailboxHold> {
    const key = `${group}\0${calls.epoch}\0${account}`;
    const entry = this.shared.get(key) ?? this.takeShared(key, calls.hold(account, `${this.deps.node}/${session}`, true));
    entry.users++;
    let hold: MailboxHold;
    try {
      hold = await entry.granted;
    } catch (err) {
      entry.users--;
      throw err;
    }
    let released = false;
    return {
      lost: hold.lost,
      release: async () => {
        if (released) return;
        released = true;
        if (--entry.users > 0) return;
        if (this.shared.get(key) === entry) this.shared.delete(key);
        await hold.release();
      },
    };
  }

  /** A shared hold being granted, joined until it is lost (or refused, or let go). */
  private takeShared(key: string, granted: Promise<MailboxHold>): SharedHold {
    const entry: SharedHold = { users: 0, granted };
    const forget = () => {
      if (this.shared.get(key) === entry) this.shared.delete(key);
    };
    granted.then((h) => h.lost.then(forget), forget);
    this.shared.set(key, entry);
    return entry;
  }

  close(): void {
    this.feeds.close();
    this.clients.close();
  }
}

/**
 * One access session's mailbox: a client of the Mailbox service bound to one account and
 * to the epoch of the primary that granted its hold, so every write reaches that primary or
 * nobody. When the hold ends without `close` (the group failed over, the primary stopped,
 * the connection to it broke), `lost` settles and the session must end: the next one is
 * served by the new primary.
 */
export class MailboxSession {
  /** Settles when the hold ends without `close`. */
  readonly lost: Promise<void>;
  private closed = false;

  constructor(
    readonly account: string,
    readonly group: string,
    /** The primary's Mailbox service for this account, every call fenced by its epoch. */
    readonly calls: MailboxCalls,
    private readonly hold: MailboxHold,
    private readonly log: Logger,
    private readonly feeds: ChangeFeeds,
  ) {
    this.lost = hold.lost.then(() => {
      if (!this.closed) this.log.info({ event: 'mailbox.hold-lost', account, group }, 'the primary that served this mailbox changed or stopped');
    });
  }

  /** The epoch of the primary that serves it. */
  get epoch(): number {
    return this.calls.epoch;
  }

  list(folder = ''): Promise<ListResponse__Output> {
    return this.calls.list(this.account, folder);
  }

  fetch(uid: number, folder = ''): Promise<Buffer> {
    return this.calls.fetch(this.account, uid, folder);
  }

  /** Removes messages (flushed and replicated before it resolves); how many were there. */
  delete(uids: number[], folder = ''): Promise<number> {
    return this.calls.delete(this.account, uids, folder);
  }

  /** Hears the account's changes after `fromModseq` (from the frontend's one feed of it); returns the way to stop. */
  listen(fromModseq: number, listener: ChangeListener): () => void {
    return this.feeds.listen(this.account, this.calls, fromModseq, listener);
  }

  /**
   * What changed in `folder` after `changedSince`, for a session that the feed told of a
   * change: one Select for all of the account's sessions here that ask the same between
   * the same two changes of the feed (an account's sessions woken together ask together).
   * The answer is shared: read it, do not change it.
   */
  changesAfterFeed(folder: string, changedSince: number): Promise<SelectResponse__Output> {
    return this.feeds.shared(this.account, this.epoch, `${folder}\0${changedSince}`, () => this.calls.select(this.account, folder, changedSince));
  }

  /** Lets go of the mailbox; resolves once the primary has (the next session finds it free). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.hold.release();
  }
}
