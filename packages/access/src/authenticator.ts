import { metrics, MailError, Replies, type AccessProtocolName, type Config, type Logger } from '@mailgrid/core';
import type { Router } from '@mailgrid/mailflow';
import type { MailboxAccess } from './mailbox-session.js';

/**
 * Failed logins per client address, counted over the last `lockoutMs`: in a cluster shared
 * by every frontend through etcd (so an attacker gains nothing by spreading over them), on a
 * single node in memory.
 */
export interface FailureLedger {
  failures(ip: string): number;
  record(ip: string, forMs: number): void;
}

/** The single node's ledger: failure times per address, forgotten once they no longer count. */
export class MemoryLedger implements FailureLedger {
  private readonly until = new Map<string, number[]>();
  private recorded = 0;

  failures(ip: string): number {
    const now = Date.now();
    const left = (this.until.get(ip) ?? []).filter((t) => t > now);
    if (left.length) this.until.set(ip, left);
    else this.until.delete(ip);
    return left.length;
  }

  record(ip: string, forMs: number): void {
    this.until.set(ip, [...(this.until.get(ip) ?? []), Date.now() + forMs]);
    // Addresses that never come back are forgotten too (a sweep now and then).
    if (++this.recorded % 1_000 === 0) for (const key of [...this.until.keys()]) this.failures(key);
  }
}

/** Who is logging in: the client's address (the real one, from a PROXY header), its protocol and session. */
export interface Client {
  ip: string;
  protocol: AccessProtocolName;
  session: string;
}

/**
 * Logins of every access protocol, checked by the group that owns the account (frontends
 * keep no secrets) through its primary's Mailbox service. An unknown user and a wrong password get
 * the same answer after the same time; every failure waits `auth.failDelayMs` and counts
 * against the client's address, which is locked out for `auth.lockoutMs` once it reaches
 * `auth.maxFailures`, on every frontend. A fault on the way is a temporary failure and
 * counts nothing.
 */
export class Authenticator {
  constructor(
    private readonly deps: {
      router: Router;
      mailboxes: MailboxAccess;
      ledger: FailureLedger;
      current: () => Config;
      log: Logger;
    },
  ) {}

  /**
   * The account `user` logs in to; throws AUTH_FAILED, AUTH_LOCKED or AUTH_UNAVAILABLE. A
   * failure is answered `auth.failDelayMs` after the attempt began, however long the check
   * took, so the time tells nothing about whether the user exists. (Attempts under way are
   * not counted: many users behind one address, a NAT or a webmail, log in at once.)
   */
  async login(user: string, password: string, client: Client): Promise<string> {
    const auth = this.deps.current().auth;
    const began = Date.now();
    const fail = async (error: MailError) => {
      await pause(began + auth.failDelayMs - Date.now());
      throw error;
    };
    if (this.deps.ledger.failures(client.ip) >= auth.maxFailures) {
      metrics.authFailures.inc({ protocol: client.protocol, reason: 'locked' });
      this.deps.log.warn({ event: 'auth.locked-out', client: client.ip, session: client.session, protocol: client.protocol }, 'login refused: client address locked out');
      return fail(Replies.authLocked());
    }
    const account = await this.verify(user, password, client);
    if (account) return account;
    this.deps.ledger.record(client.ip, auth.lockoutMs);
    metrics.authFailures.inc({ protocol: client.protocol, reason: 'credentials' });
    this.deps.log.info({ event: 'auth.failed', client: client.ip, session: client.session, protocol: client.protocol, user }, 'login failed');
    return fail(Replies.authFailed());
  }

  /**
   * Logins within one session: a session that failed `auth.maxFailures` times (wrong
   * credentials, or refused while locked out) is told TOO_MANY_AUTH_FAILURES on the last,
   * and its protocol ends it. A fault on the way counts nothing.
   */
  forSession(client: Client): (user: string, password: string) => Promise<string> {
    let failures = 0;
    return async (user, password) => {
      try {
        return await this.login(user, password, client);
      } catch (err) {
        const code = MailError.is(err) ? err.code : '';
        if ((code === 'AUTH_FAILED' || code === 'AUTH_LOCKED') && ++failures >= this.deps.current().auth.maxFailures)
          throw Replies.tooManyAuthFailures();
        throw err;
      }
    };
  }

  private async verify(user: string, password: string, client: Client): Promise<string | undefined> {
    const route = await this.deps.router.route(user);
    if (route.kind === 'tempfail') throw Replies.authUnavailable(route.reason);
    if (route.kind !== 'local') return undefined;
    try {
      const res = await (await this.deps.mailboxes.calls(route.group, { session: client.session })).authenticate(route.address, password);
      if (res.ok) metrics.authCache.inc({ result: res.cached ? 'hit' : 'miss' });
      return res.ok ? res.account : undefined;
    } catch (err) {
      this.deps.log.warn({ event: 'auth.unavailable', group: route.group, session: client.session, err: (err as Error).message }, 'login not checked: owning group unreachable');
      throw MailError.is(err) && err.code === 'AUTH_UNAVAILABLE' ? err : Replies.authUnavailable(err);
    }
  }
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
