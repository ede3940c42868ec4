import { MailError, parseAddress, Replies } from '@mailgrid/core';
import type { Directory, Resolution } from '@mailgrid/directory';
import { withTimeout } from './verdict.js';

/** An account of a hosting group, as resolved at directory `revision`. */
export type LocalRoute = { kind: 'local'; address: string; account: string; group: string; revision: number };

/** Where one recipient goes, with the reason when it goes nowhere. */
export type Route =
  | LocalRoute
  /** A domain that is not hosted here. Whether the sender may relay is policy, not routing. */
  | { kind: 'relay'; address: string; domain: string }
  /** Definitely nowhere: no such user in a hosted domain, or not an address. */
  | { kind: 'unknown'; address: string; reason: MailError }
  /** Not known right now (directory unreachable, slow, or an entry it cannot read). */
  | { kind: 'tempfail'; address: string; reason: MailError };

/** Directory lookups slower than this fail soft with 451 4.4.3. */
const LOOKUP_TIMEOUT_MS = 5_000;

/**
 * The one place a recipient address is routed, whatever brought the message: SMTP, the
 * queue runner, a DSN, and later submission, Submit and Sieve.
 */
export class Router {
  constructor(private readonly directory: Directory, private readonly lookupTimeoutMs = LOOKUP_TIMEOUT_MS) {}

  /** The directory revision answers are given at now. */
  get revision(): number {
    return this.directory.revision;
  }

  /**
   * Routes `given`. The route's `address` is its canonical form (the domain as lower-case
   * A-labels), the one queued, relayed and written in trace headers.
   */
  async route(given: string): Promise<Route> {
    const parsed = parseAddress(given);
    if (!parsed) return { kind: 'unknown', address: given, reason: Replies.badAddress(given) };
    const address = `${parsed.local}@${parsed.domain}`;
    let res: Resolution;
    try {
      res = await withTimeout(this.directory.resolve(parsed), this.lookupTimeoutMs, () => Replies.lookupFailed(address));
    } catch (err) {
      // A lookup that failed is never a definite answer.
      const reason = MailError.is(err) && err.retryable ? err : Replies.lookupFailed(address, err);
      return { kind: 'tempfail', address, reason };
    }
    switch (res.kind) {
      case 'account':
        // Read after the lookup: a revision that overstates only makes a backend more careful.
        return { kind: 'local', address, account: res.account, group: res.group, revision: this.directory.revision };
      case 'unknown-user':
        return { kind: 'unknown', address, reason: Replies.unknownUser(address) };
      case 'foreign':
        return { kind: 'relay', address, domain: parsed.domain };
    }
  }
}
