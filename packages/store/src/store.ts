/** One stored message as an index entry. */
export interface MessageInfo {
  folder: string;
  uid: number;
  size: number;
  receivedAt: number;
  flags: string[];
  /** The account's mod-sequence of its last change (RFC 7162; one counter per account, so the change feed has one order). */
  modseq: number;
  /** RFC 8474's EMAILID and THREADID: made at its first append, kept by copies, moves and account moves. */
  emailId: string;
  threadId: string;
}

/** A folder as IMAP sees it (RFC 9051): uids are never given twice within one UIDVALIDITY. */
export interface FolderInfo {
  name: string;
  uidValidity: number;
  uidNext: number;
  messages: number;
  unseen: number;
  /** Messages flagged \Deleted (STATUS DELETED), and the bytes of them all (STATUS SIZE). */
  deleted: number;
  size: number;
  highestModseq: number;
  /** RFC 8474 MAILBOXID. */
  id: string;
  /** RFC 6154 special use, '' for none. */
  specialUse: string;
  /** Made already (INBOX always is): a name that is only subscribed is not. */
  exists: boolean;
  subscribed: boolean;
}

/** A change to an account's mail, announced once durable: the access sessions' notifications. */
export interface MailboxChange {
  account: string;
  folder: string;
  /** The mod-sequence it was made at (0 for a change of the folder list). */
  modseq: number;
  appended?: number[];
  flags?: { uid: number; flags: string[]; modseq: number }[];
  expunged?: number[];
  /** Folders were made, removed or renamed. */
  mailboxes?: boolean;
}

/** What STORE did: the messages whose flags changed, and those left alone because they changed after UNCHANGEDSINCE. */
export interface StoreFlagsResult {
  changed: { uid: number; flags: string[]; modseq: number }[];
  modified: number[];
}

export interface AppendRecipient {
  account: string;
  /** message id + recipient: an append with a key already stored returns the first result. */
  idempotencyKey: string;
  /**
   * Where the account's rules file it (folders are made on first use); default the
   * request's folder. Empty: nothing is stored (discarded, redirected, rejected), and the
   * key is still recorded, so a retry is not handled twice.
   */
  folders?: string[];
  /** A vacation reply went to this sender: none again to them before `until`. */
  vacation?: { sender: string; until: number };
}

export interface AppendRequest {
  body: Buffer;
  receivedAt: number;
  recipients: AppendRecipient[];
  folder?: string;
  /** Flags the message is stored with (IMAP APPEND); none for a delivery. */
  flags?: string[];
  /** What threads it: its Message-ID and those of the messages it answers (In-Reply-To, References). */
  thread?: ThreadKeys;
}

export interface ThreadKeys {
  messageId?: string;
  parents: string[];
}

export interface AppendResult {
  account: string;
  /** The first folder it went to, and its uid there ('' and 0: nothing was stored). */
  folder: string;
  uid: number;
  /** The key had been stored before; nothing new was written. */
  duplicate: boolean;
  /** Nothing was written: the account is not taken here now (it is being moved, or has moved). */
  refused?: boolean;
  /** Nothing was written: it would take the account over its quota. */
  overQuota?: boolean;
}

/**
 * An account's mail. `append` and `delete` resolve only once the change is on disk, so a
 * caller may acknowledge it. Reads are synchronous memory-mapped lookups.
 */
export interface MailStore {
  append(request: AppendRequest): Promise<AppendResult[]>;
  /** What an earlier append did with this idempotency key, if one did. */
  seen(idempotencyKey: string): AppendResult | undefined;
  /** The account's rules (Sieve source); undefined: none. */
  rules(account: string): string | undefined;
  /** Saves (or with undefined removes) the account's rules; resolves once on disk. */
  setRules(account: string, source: string | undefined): Promise<void>;
  /** Whether a vacation reply to `sender` is still within its period. */
  vacationAnswered(account: string, sender: string, now: number): boolean;
  list(account: string, folder?: string): MessageInfo[];
  /** The account's folders; INBOX is listed (empty) before its first message. */
  folders(account: string): FolderInfo[];
  /** UIDVALIDITY and UIDNEXT of a folder (of one not made yet, what it will get). */
  folderIds(account: string, folder?: string): { uidValidity: number; uidNext: number };
  /** Adds and removes flags of messages; resolves with how many changed, once on disk. */
  setFlags(account: string, folder: string, uids: number[], add: string[], remove: string[]): Promise<number>;
  /** The account's storage quota (bytes, 0: none) and what it uses. */
  quota(account: string): { limit: number; used: number };
  /** The account's password hash (kept with its mail: it replicates and moves with it). */
  passwordHash(account: string): { hash: string; at: number } | undefined;
  setPasswordHash(account: string, hash: string): Promise<void>;
  fetch(account: string, folder: string, uid: number): { info: MessageInfo; body: Buffer } | undefined;
  delete(account: string, folder: string, uids: number[]): Promise<number>;
  /** Forgets idempotency keys of messages that arrived before `before`, a batch from `from` on (see LmdbMailStore). */
  prune(before: number, from?: string, limit?: number): Promise<{ pruned: number; next?: string }>;
  close(): Promise<void>;
}

export const INBOX = 'INBOX';

/**
 * One put or remove of a write transaction, as the log keeps it: `[0, table, key, value]`
 * a put, `[1, table, key]` a remove, `[2, 'blobs', id]` a blob put logged by reference (its
 * bytes are read when the entry is shipped, and shipped as a put).
 */
export type Op = [0, string, unknown, unknown] | [1, string, unknown] | [2, string, unknown];

/** One write transaction of a hosting group's store: the unit a replica applies. */
export interface LogEntry {
  seq: number;
  /** The epoch of the primary that wrote it. */
  epoch: number;
  ops: Op[];
}

/** Where a store's log ends: its last entry (or what it was trimmed or copied after). */
export interface LogPosition {
  seq: number;
  epoch: number;
}

/**
 * One piece of an account as a move carries it from one store to another: its folders'
 * next uids, its messages (a body once per blob, however many of its messages share it),
 * its password hash, its rules, vacation marks and idempotency keys (so a sender's retry after the move is
 * still recognised).
 */
export type AccountRecord =
  | { kind: 'account'; modseq: number; quota?: number }
  | { kind: 'mailbox'; folder: string; nextUid: number; uidValidity?: number; modseq?: number; id?: string; specialUse?: string }
  | { kind: 'subscription'; folder: string }
  | { kind: 'vanished'; folder: string; uid: number; modseq: number }
  | { kind: 'thread'; messageId: string; threadId: string }
  | { kind: 'password'; hash: string; at: number }
  /** `body` is absent when an earlier message of the account carried that blob, or `part`s did. */
  | { kind: 'message'; folder: string; uid: number; size: number; receivedAt: number; flags: string[]; blob: number; body?: Buffer; modseq?: number; emailId?: string; threadId?: string }
  | { kind: 'part'; blob: number; chunk: Buffer }
  | { kind: 'rules'; source: string; at: number }
  | { kind: 'vacation'; sender: string; until: number }
  | { kind: 'dedupe'; key: string; folder: string; uid: number; at?: number };
