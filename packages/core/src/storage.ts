import { MailError, Replies } from './errors.js';

/** What a guarded write needs of an lmdb-js root database. */
export interface WritableRoot {
  transaction<T>(work: () => T): Promise<T>;
  flushed: PromiseLike<unknown>;
}

/**
 * One write transaction, resolved at commit. A failed commit (a full or failing disk,
 * ENOSPC, EIO, MDB_MAP_FULL) rejects with `451 4.3.0` carrying the system's own error:
 * lmdb-js rejects the caller with a generic "Commit failed" and the cause in a second
 * promise, `commitError`, which is consumed here so it cannot go unhandled. A MailError
 * thrown by `work` (a check inside the transaction) comes out as itself.
 */
export async function commit<T>(root: WritableRoot, work: () => T): Promise<T> {
  try {
    return await root.transaction(work);
  } catch (err) {
    if (MailError.is(err)) throw err;
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
  try {
    await Promise.race([
      Promise.resolve(root.flushed),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(Replies.storageFailed(new Error(`not flushed to disk within ${ms} ms`))), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
