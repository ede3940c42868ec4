import { MailError, parseAddress, Replies } from '@mailgrid/core';
import type { Directory } from '@mailgrid/directory';
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
  constructor(
    private readonly directory: Directory,
    private readonly options: {
      /** The `postmaster` setting: where postmaster mail goes when its domain has no such account or alias. */
      postmaster?: () => string;
      lookupTimeoutMs?: number;
    } = {},
  ) {}

  /** The directory revision answers are given at now. */
  get revision(): number {
    return this.directory.revision;
  }

  /**
   * Routes `given`. The route's `address` is its canonical form (the domain as lower-case
   * A-labels), the one queued, relayed and written in trace headers.
   */
  async route(given: string): Promise<Route> {
    // RFC 5321 §4.5.1: `postmaster`, without a domain, is always accepted.
    if (given.trim().toLowerCase() === 'postmaster') return this.postmaster('postmaster');
    const parsed = parseAddress(given);
    if (!parsed) return { kind: 'unknown', address: given, reason: Replies.badAddress(given) };
    const address = `${parsed.local}@${parsed.domain}`;
    try {
      const res = await this.resolve(address, () => this.directory.resolve(parsed));
      switch (res.kind) {
        case 'account':
          // Read after the lookup: a revision that overstates only makes a backend more careful.
          return { kind: 'local', address, account: res.account, group: res.group, revision: this.directory.revision };
        case 'unknown-user':
          // And postmaster@ every hosted domain, whether or not an account has that name.
          if (parsed.local.toLowerCase() === 'postmaster') return this.postmaster(address, parsed.domain);
          return { kind: 'unknown', address, reason: Replies.unknownUser(address) };
        case 'foreign':
          return { kind: 'relay', address, domain: parsed.domain };
      }
    } catch (reason) {
      return { kind: 'tempfail', address, reason: reason as MailError };
    }
  }

  /**
   * The account postmaster mail goes to when no account or alias of that name exists: the
   * `postmaster` setting, else the first account of the domain (for a bare `postmaster`:
   * `postmaster@` the first hosted domain, or its first account).
   */
  private async postmasterOf(domain?: string): Promise<string | undefined> {
    const setting = this.options.postmaster?.();
    if (setting) return parseAddress(setting)?.key;
    const d = domain ?? (await this.directory.hostedDomains())[0];
    if (d === undefined) return undefined;
    if (domain === undefined) {
      const named = await this.directory.resolve(parseAddress(`postmaster@${d}`)!);
      if (named.kind === 'account') return named.account;
    }
    return this.directory.firstAccount(d);
  }

  private async postmaster(address: string, domain?: string): Promise<Route> {
    try {
      const account = await this.resolve(address, () => this.postmasterOf(domain));
      const target = account ? parseAddress(account) : undefined;
      const res = target ? await this.resolve(address, () => this.directory.resolve(target)) : undefined;
      if (res?.kind !== 'account') return { kind: 'tempfail', address, reason: Replies.noPostmaster(address) };
      return { kind: 'local', address, account: res.account, group: res.group, revision: this.directory.revision };
    } catch (reason) {
      return { kind: 'tempfail', address, reason: reason as MailError };
    }
  }

  /** A directory lookup with a deadline; any failure is a temporary MailError, never a definite answer. */
  private async resolve<T>(address: string, lookup: () => Promise<T>): Promise<T> {
    try {
      return await withTimeout(lookup(), this.options.lookupTimeoutMs ?? LOOKUP_TIMEOUT_MS, () => Replies.lookupFailed(address));
    } catch (err) {
      throw MailError.is(err) && err.retryable ? err : Replies.lookupFailed(address, err);
    }
  }
}
