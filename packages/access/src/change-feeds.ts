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

  private open(account: string, calls: MailboxCalls, fromModseq: number): Feed {
    const feed: Feed = { epoch: calls.epoch, listeners: new Set(), close: () => undefined };
    this.feeds.set(account, feed);
    const stream = calls.watch(account, fromModseq, {
      change: (c) => {
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
    feed.close();
    for (const l of feed.listeners) l.ended();
    feed.listeners.clear();
  }

  close(): void {
    for (const [account, feed] of this.feeds) this.end(account, feed);
  }
}
