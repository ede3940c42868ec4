import type { Address } from '@mailgrid/core';

/** What the directory says about one recipient address. */
export type Resolution =
  /** A hosted account (an alias resolves to its target account). */
  | { kind: 'account'; account: string; group: string }
  /** The domain is hosted, the user is not. */
  | { kind: 'unknown-user' }
  /** The domain is not hosted here. */
  | { kind: 'foreign' };

/** Read side, used on every RCPT (frontend) and every delivery (backend). */
export interface Directory {
  resolve(address: Address): Promise<Resolution>;
}

export interface AccountEntry {
  address: string;
  group: string;
}

export interface AliasEntry {
  alias: string;
  /** A hosted account. */
  target: string;
}

/** Write side, used by the CLI and admin services. */
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

/** Where the primary backend of each hosting group is reached. */
export interface HostingGroups {
  /** gRPC address (`host:port`) of the group's primary, or undefined when none is known. */
  primary(group: string): Promise<string | undefined>;
}
