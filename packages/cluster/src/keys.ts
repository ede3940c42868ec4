/**
 * The etcd key layout, in one place (documented in docs/cluster.md). Everything lives under
 * one versioned prefix, `/mailgrid/v1` by default.
 */
export class Keys {
  constructor(readonly prefix: string) {}

  /** Lease-bound: one per live node. */
  get members() {
    return `${this.prefix}/members/`;
  }
  member(id: string) {
    return `${this.members}${id}`;
  }

  /** Domains, accounts and aliases share one sub-prefix so one range and one watch cover them. */
  get directory() {
    return `${this.prefix}/directory/`;
  }
  domain(domain: string) {
    return `${this.directory}domains/${domain}`;
  }
  accountsOf(domain: string) {
    return `${this.directory}accounts/${domain}/`;
  }
  account(domain: string, local: string) {
    return `${this.accountsOf(domain)}${local}`;
  }
  alias(domain: string, local: string) {
    return `${this.directory}aliases/${domain}/${local}`;
  }

  password(address: string) {
    return `${this.passwords}${address}`;
  }

  /**
   * Password hashes brought by `account import`, kept apart from the directory (which every
   * node caches, frontends too) until the primary of the account's group takes them into
   * its store (and removes the key).
   */
  get passwords() {
    return `${this.prefix}/passwords/`;
  }

  /**
   * One key per failed login, `auth-failures/<client address>/<node>.<n>`, bound to a lease
   * of `auth.lockoutMs`: every frontend counts a client's failures from all of them.
   */
  get authFailures() {
    return `${this.prefix}/auth-failures/`;
  }
  authFailure(ip: string, id: string) {
    return `${this.authFailures}${ip}/${id}`;
  }

  /** Hosting groups that exist (created when a backend of the group first registers). */
  get groups() {
    return `${this.prefix}/groups/`;
  }
  group(name: string) {
    return `${this.groups}${name}`;
  }
  /** Lease-bound, held by the group's primary; its create revision is the epoch. */
  election(group: string) {
    return `${this.groups}${group}/election`;
  }
  /** The members that may be elected, changed only by the primary (guarded by its epoch). */
  inSync(group: string) {
    return `${this.groups}${group}/in-sync`;
  }
  /** The group's figures, published by its primary (`GroupStatus`). */
  groupStatus(group: string) {
    return `${this.groups}${group}/status`;
  }

  /**
   * A node's queue store (its identity: a new disk, or a queue taken over, has a new one):
   * `copies` the nodes whose copy has every answered write (written by the owner, fenced by
   * its membership); `claim` the partner that took it over (the takeover's fence).
   */
  queueCopies(owner: string, store: string) {
    return `${this.prefix}/queues/${owner}/${store}/copies`;
  }
  queueClaim(owner: string, store: string) {
    return `${this.prefix}/queues/${owner}/${store}/claim`;
  }

  /** `settings/_cluster/<key>` for defaults, `settings/<node>/<key>` per node. */
  get settings() {
    return `${this.prefix}/settings/`;
  }
  setting(scope: string, key: string) {
    return `${this.settings}${scope}/${key}`;
  }
}

export const CLUSTER_SCOPE = '_cluster';

/** The exclusive end of a prefix range. */
export function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}
