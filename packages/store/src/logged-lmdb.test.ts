import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { LoggedLmdb } from './logged-lmdb.js';

/** A logged store with one table, whose write may throw half-way. */
class Notes extends LoggedLmdb {
  constructor(path: string) {
    super(path, [{ name: 'notes' }]);
  }
  get(key: string): unknown {
    return this.table<unknown, string>('notes').get(key);
  }
  seq(): number {
    return this.position().seq;
  }
  put(entries: [string, unknown][], failAfter = Infinity): Promise<void> {
    return this.write(() => {
      entries.forEach(([k, v], i) => {
        if (i === failAfter) throw new Error('a check failed half-way');
        this.set('notes', k, v);
      });
    });
  }
}

describe('LoggedLmdb writes', () => {
  it('a write that throws half-way leaves nothing behind, in its tables or its log, and the writes beside it land', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mailgrid-logged-'));
    const notes = new Notes(dir);
    try {
      await notes.put([['before', 1]]);
      const seq = notes.seq();
      // Three writes in one batch: the middle one fails after its first put.
      const results = await Promise.allSettled([notes.put([['a', 1]]), notes.put([['b', 1], ['c', 1]], 1), notes.put([['d', 1]])]);
      assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
      assert.equal(notes.get('b'), undefined, 'the failed write\'s first put is gone');
      assert.equal(notes.get('a'), 1);
      assert.equal(notes.get('d'), 1);
      assert.equal(notes.seq(), seq + 2, 'one log entry per write that landed, none for the failed one');
    } finally {
      await notes.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
