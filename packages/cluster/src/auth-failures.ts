import type { Logger, Service, ServiceState } from '@mailgrid/core';
import type { Etcd3 } from 'etcd3';
import type { Keys } from './keys.js';
import { PrefixWatch } from './prefix-watch.js';

/**
 * Failed logins per client address, shared by every frontend through etcd: each failure is
 * a key under `auth-failures/<address>/` bound to a lease of its own that lapses after the
 * lockout time, so etcd forgets it without anyone sweeping. Every frontend watches the prefix
 * and counts from memory; its own failures count at once, before etcd has them. With etcd
 * unreachable a frontend counts its own only (a lockout is a brake, not a guarantee).
 */
export class AuthFailures implements Service {
  readonly name = 'auth-failures';
  private readonly watch: PrefixWatch;
  /** Keys per client address, from the watch. */
  private readonly seen = new Map<string, Set<string>>();
  /** This node's failures not yet seen back from the watch: key → when it stops counting. */
  private readonly own = new Map<string, { ip: string; until: number }>();
  private n = 0;

  constructor(
    private readonly client: Etcd3,
    private readonly keys: Keys,
    private readonly node: string,
    private readonly log: Logger,
  ) {
    const ipOf = (key: string) => key.slice(keys.authFailures.length, key.lastIndexOf('/'));
    this.watch = new PrefixWatch({
      client,
      prefix: keys.authFailures,
      name: 'auth-failures',
      log,
      handler: {
        reset: () => this.seen.clear(),
        put: (kv) => {
          const key = kv.key.toString();
          const ip = ipOf(key);
          if (!this.seen.has(ip)) this.seen.set(ip, new Set());
          this.seen.get(ip)!.add(key);
          this.own.delete(key);
        },
        delete: (kv) => {
          const key = kv.key.toString();
          const ip = ipOf(key);
          this.seen.get(ip)?.delete(key);
          if (!this.seen.get(ip)?.size) this.seen.delete(ip);
        },
      },
    });
  }

  get state(): ServiceState {
    return this.watch.state;
  }

  failures(ip: string): number {
    const now = Date.now();
    let pending = 0;
    for (const [key, f] of this.own) {
      if (f.until <= now) this.own.delete(key);
      else if (f.ip === ip) pending++;
    }
    return (this.seen.get(ip)?.size ?? 0) + pending;
  }

  record(ip: string, forMs: number): void {
    const key = this.keys.authFailure(ip, `${this.node}.${Date.now().toString(36)}.${++this.n}`);
    this.own.set(key, { ip, until: Date.now() + forMs });
    const lease = this.client.lease(Math.max(1, Math.ceil(forMs / 1000)), { autoKeepAlive: false });
    lease
      .put(key)
      .value(String(Date.now()))
      .catch((err) => this.log.warn({ event: 'auth.failure-unshared', client: ip, err: (err as Error).message }, 'failed login counted here only: etcd unreachable'));
  }

  start(): Promise<void> {
    return this.watch.start();
  }

  stop(): Promise<void> {
    return this.watch.stop();
  }
}
