import type { Logger } from '@mailgrid/core';
import type { MailboxCalls, MailboxChange__Output } from '@mailgrid/protocol';

/** What a session hears of its account's changes. */
export interface ChangeListener {
  change(c: MailboxChange__Output): void;
  /** The feed ended (the primary changed or stopped): what the session sees may be stale now. */
  ended(): void;
}

interface Feed {
  epoch: number;
  listeners: Set<ChangeListener>;
  close(): void;
  /** The feed is closed once it has had no listener this long, so sessions that come and go do not open and reset a stream each. */
  linger?: NodeJS.Timeout;
  /** Reads under way that started after the feed's last change, by what they read (see `shared`). */
  looks: Map<string, Promise<unknown>>;
}

/**
 * One change feed (`Mailbox.Watch`) per account on this frontend, whatever number of
 * sessions it has here: they fan out from it, each told every change of the account as the
 * primary makes it durable. A feed lives in its primary's epoch; when it ends, every
 * listener hears so and the next session opens a new one.
 */
export class ChangeFeeds {
  private readonly feeds = new Map<string, Feed>();

  constructor(private readonly options: { lingerMs: number; log: Logger }) {}

  /** Listens to `account`'s changes after `fromModseq` (at the primary `calls` are bound to); returns the way to stop. */
  listen(account: string, calls: MailboxCalls, fromModseq: number, listener: ChangeListener): () => void {
    let feed = this.feeds.get(account);
    if (feed && feed.epoch !== calls.epoch) {
      this.end(account, feed);
      feed = undefined;
    }
    if (!feed) feed = this.open(account, calls, fromModseq);
    clearTimeout(feed.linger);
    feed.listeners.add(listener);
    const f = feed;
    return () => {
      f.listeners.delete(listener);
      if (f.listeners.size || this.feeds.get(account) !== f) return;
      f.linger = setTimeout(() => this.end(account, f), this.options.lingerMs);
      f.linger.unref();
    };
  }

  /**
   * `read` once for every session of `account` that asks for the same `key` between two
   * changes of its feed here: a change is durable before the feed tells it, so a read that
   * started after the feed's last change sees every change a session was told of, and each
   * session woken by that change may take its answer. Without a live feed in `epoch`, each
   * reads for itself. (A session that must see what happened before it asked, not only what
   * it was told, such as NOOP, reads for itself.)
   */
  shared<T>(account: string, epoch: number, key: string, read: () => Promise<T>): Promise<T> {
    const feed = this.feeds.get(account);
    if (!feed || feed.epoch !== epoch) return read();
    const under = feed.looks.get(key) as Promise<T> | undefined;
    if (under) return under;
    const p = read();
    feed.looks.set(key, p);
    const done = () => {
      if (feed.looks.get(key) === p) feed.looks.delete(key);
    };
    p.then(done, done);
    return p;
  }

  private open(account: string, calls: MailboxCalls, fromModseq: number): Feed {
    const feed: Feed = { epoch: calls.epoch, listeners: new Set(), close: () => undefined, looks: new Map() };
    this.feeds.set(account, feed);
    const stream = calls.watch(account, fromModseq, {
      change: (c) => {
        // A read that started before this change may not see it: the next ones start anew.
        feed.looks.clear();
        for (const l of feed.listeners) l.change(c);
      },
      ended: (err) => {
        if (err) this.options.log.debug({ event: 'imap.feed-ended', account, err: err.message }, 'change feed ended');
        this.end(account, feed);
      },
    });
    feed.close = () => stream.close();
    return feed;
  }

  private end(account: string, feed: Feed): void {
    clearTimeout(feed.linger);
    if (this.feeds.get(account) === feed) this.feeds.delete(account);
    feed.looks.clear();
    feed.close();
    for (const l of feed.listeners) l.ended();
    feed.listeners.clear();
  }

  close(): void {
    for (const [account, feed] of this.feeds) this.end(account, feed);
  }
}
