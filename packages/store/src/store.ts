/** One stored message as an index entry. */
export interface MessageInfo {
  folder: string;
  uid: number;
  size: number;
  receivedAt: number;
  flags: string[];
}

export interface AppendRecipient {
  account: string;
  /** message id + recipient: an append with a key already stored returns the first result. */
  idempotencyKey: string;
}

export interface AppendRequest {
  body: Buffer;
  receivedAt: number;
  recipients: AppendRecipient[];
  folder?: string;
}

export interface AppendResult {
  account: string;
  folder: string;
  uid: number;
  /** The key had been stored before; nothing new was written. */
  duplicate: boolean;
}

/**
 * An account's mail. `append` and `delete` resolve only once the change is on disk, so a
 * caller may acknowledge it. Reads are synchronous memory-mapped lookups.
 */
export interface MailStore {
  append(request: AppendRequest): Promise<AppendResult[]>;
  list(account: string, folder?: string): MessageInfo[];
  fetch(account: string, folder: string, uid: number): { info: MessageInfo; body: Buffer } | undefined;
  delete(account: string, folder: string, uids: number[]): Promise<number>;
  /** Forgets idempotency keys of messages that arrived before `before`, a batch from `from` on (see LmdbMailStore). */
  prune(before: number, from?: string, limit?: number): Promise<{ pruned: number; next?: string }>;
  close(): Promise<void>;
}

export const INBOX = 'INBOX';
