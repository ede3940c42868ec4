import type { Address } from '@mailgrid/core';

/** What the directory says about one recipient address. */
export type Resolution =
  /** A hosted account (an alias resolves to its target account). */
  | { kind: 'account'; account: string; group: string }
  /** The domain is hosted, the user is not. */
  | { kind: 'unknown-user' }
  /** The domain is not hosted here. */
  | { kind: 'foreign' };

/**
 * Read side, used on every RCPT (frontend) and every delivery (backend). A lookup that
 * cannot be answered for sure throws a temporary MailError.
 */
export interface Directory {
  resolve(address: Address): Promise<Resolution>;
  /** Hosted domains, in order. */
  hostedDomains(): Promise<string[]>;
  /** The account of a domain that sorts first (where its postmaster mail goes when nothing else is set). */
  firstAccount(domain: string): Promise<string | undefined>;
  /**
   * How current the answers are: every directory change up to this revision has been
   * applied. Two nodes' revisions compare (etcd revisions in a cluster, a change counter in
   * the embedded directory), so a backend can tell whether its "no such user" is newer than
   * the frontend's "account".
   */
  readonly revision: number;
  /**
   * Where an account lives now, from memory: its group, and the group it is being moved to
   * while a move is under way (a cluster; the single node has no moves).
   */
  home?(account: string): AccountHome | undefined;
}

export interface AccountHome {
  group: string;
  movingTo?: string;
}

export interface AccountEntry {
  address: string;
  group: string;
  /** A move under way (a cluster): `to <group>`, or `from <group>` while the old copy is still to be removed. */
  move?: string;
}

export interface AliasEntry {
  alias: string;
  /** A hosted account. */
  target: string;
}

/** Write side, used by the CLI and admin services. Refusals are AdminErrors from `Replies`. */
export interface DirectoryAdmin {
  addDomain(domain: string): Promise<void>;
  removeDomain(domain: string): Promise<void>;
  listDomains(): Promise<string[]>;
  addAccount(address: string, group: string): Promise<void>;
  removeAccount(address: string): Promise<void>;
  listAccounts(domain?: string): Promise<AccountEntry[]>;
  /** Another address of a hosted account; mail to it is stored in the account. */
  addAlias(alias: string, target: string): Promise<void>;
  removeAlias(alias: string): Promise<void>;
  listAliases(domain?: string): Promise<AliasEntry[]>;
}

/**
 * The member that takes a hosting group's writes now. `epoch` travels in every call to it
 * and fences it: a member answers only to its own current epoch, the create revision of
 * the group's election key (0 in a single node, where the primary never changes).
 */
export interface Primary {
  address: string;
  epoch: number;
}

/** Where the primary backend of each hosting group is reached. */
export interface HostingGroups {
  primary(group: string): Promise<Primary | undefined>;
  /** Calls `listener` when a group elects a new primary (a cluster; the single node's never changes). */
  onNewPrimary?(listener: (group: string) => void): void;
}
