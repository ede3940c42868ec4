import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { CodedError, Replies } from './errors.js';

/** What a guarded write needs of an lmdb-js root database. */
export interface WritableRoot {
  childTransaction<T>(work: () => T): Promise<T>;
  committed: PromiseLike<unknown>;
  flushed: PromiseLike<unknown>;
}

const ignore = () => undefined;

/**
 * The longest folder name taken, in UTF-8 bytes. A name is part of the mail store's keys
 * (with the account, a mod-sequence and a uid), which LMDB bounds at 1978 bytes.
 */
export const MAX_FOLDER_NAME_BYTES = 1024;

/**
 * One write transaction, resolved at commit. A failed commit (a full or failing disk,
 * ENOSPC, EIO, MDB_MAP_FULL) rejects with `451 4.3.0` carrying the system's own error.
 * lmdb-js rejects the caller with a generic "Commit failed" and leaves two more promises
 * rejected that nobody awaits: the cause (`commitError`) and the failed batch's own
 * (`committed` while the failure is being delivered). Both are consumed here, so a full
 * disk leaves no unhandled rejection behind. A MailError or AdminError thrown by `work` (a
 * check inside the transaction, e.g. the directory's "domain exists") comes out as itself,
 * and leaves nothing behind: lmdb-js's `transaction` commits what its callback wrote before
 * a throw (the batch it shares goes on), so the work runs as a child transaction of the
 * batch, which a throw aborts alone.
 */
export async function commit<T>(root: WritableRoot, work: () => T): Promise<T> {
  try {
    return await root.childTransaction(work);
  } catch (err) {
    if (CodedError.is(err)) throw err;
    root.committed.then(ignore, ignore);
    const pending = (err as { commitError?: Promise<unknown> }).commitError;
    const cause = pending ? await pending.then(() => err, (real: unknown) => real) : err;
    throw Replies.storageFailed(cause);
  }
}

/**
 * Resolves once everything committed so far is on disk. After a failed commit lmdb-js
 * resolves the flush only with the next commit that succeeds, so one that does not come
 * within `ms` is a storage failure (4xx) rather than a caller that waits for ever.
 */
export async function flushed(root: WritableRoot, ms = 30_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const flush = Promise.resolve(root.flushed);
  flush.catch(ignore); // should it fail after the deadline won
  try {
    await Promise.race([
      flush,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(Replies.storageFailed(new Error(`not flushed to disk within ${ms} ms`))), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A consistent copy of an lmdb-js environment into `dir` (new, or empty): LMDB's own hot
 * copy, from one read transaction while writes go on, on lmdb-js's thread pool.
 */
export async function copyEnvironment(root: { backup(path: string, compact: boolean): Promise<void> }, dir: string, compact: boolean): Promise<void> {
  if (existsSync(dir) && readdirSync(dir).length) throw new Error(`${dir} is not empty`);
  mkdirSync(dir, { recursive: true });
  await root.backup(dir, compact);
}
