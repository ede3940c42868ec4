import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LmdbMailStore, pruneDedupe } from './lmdb-store.js';

describe('LmdbMailStore', () => {
  let dir: string;
  let store: LmdbMailStore;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mailgrid-store-'));
    store = new LmdbMailStore(dir);
  });
  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('assigns increasing uids per account and keeps the bytes', async () => {
    const body = Buffer.from('Subject: one\r\n\r\nhello\r\n');
    const [a] = await store.append({ body, receivedAt: 1, recipients: [{ account: 'a@x.test', idempotencyKey: 'm1:a' }] });
    const [b] = await store.append({ body, receivedAt: 2, recipients: [{ account: 'a@x.test', idempotencyKey: 'm2:a' }] });
    assert.equal(a.uid, 1);
    assert.equal(b.uid, 2);
    assert.deepEqual(store.fetch('a@x.test', 'INBOX', 1)?.body, body);
    assert.deepEqual(store.list('a@x.test').map((m) => m.uid), [1, 2]);
  });

  it('stores a repeated idempotency key once', async () => {
    const body = Buffer.from('x\r\n');
    const first = await store.append({ body, receivedAt: 1, recipients: [{ account: 'd@x.test', idempotencyKey: 'k:d' }] });
    const again = await store.append({ body, receivedAt: 1, recipients: [{ account: 'd@x.test', idempotencyKey: 'k:d' }] });
    assert.equal(again[0].uid, first[0].uid);
    assert.equal(again[0].duplicate, true);
    assert.equal(store.list('d@x.test').length, 1);
  });

  it('shares one blob between local recipients and frees it with the last reference', async () => {
    const body = Buffer.from('shared\r\n');
    const res = await store.append({
      body,
      receivedAt: 1,
      recipients: [
        { account: 'b@x.test', idempotencyKey: 'm3:b' },
        { account: 'c@x.test', idempotencyKey: 'm3:c' },
      ],
    });
    assert.equal(res.length, 2);
    assert.equal(await store.delete('b@x.test', 'INBOX', [res[0].uid]), 1);
    assert.deepEqual(store.fetch('c@x.test', 'INBOX', res[1].uid)?.body, body);
    assert.equal(await store.delete('c@x.test', 'INBOX', [res[1].uid, 999]), 1);
    assert.equal(store.fetch('c@x.test', 'INBOX', res[1].uid), undefined);
  });

  it('never gives a new message the blob of a stored one after a restart, and frees a single reference', async () => {
    const put = (key: string, text: string) => store.append({ body: Buffer.from(text), receivedAt: 1, recipients: [{ account: 'r@x.test', idempotencyKey: key }] });
    const [kept] = await put('r1', 'kept\r\n');
    const [gone] = await put('r2', 'gone\r\n');
    assert.equal(await store.delete('r@x.test', 'INBOX', [gone.uid]), 1);
    await store.close();
    store = new LmdbMailStore(dir);
    const [fresh] = await put('r3', 'fresh\r\n');
    assert.equal(store.fetch('r@x.test', 'INBOX', kept.uid)?.body.toString(), 'kept\r\n');
    assert.equal(store.fetch('r@x.test', 'INBOX', fresh.uid)?.body.toString(), 'fresh\r\n');
    assert.equal(store.fetch('r@x.test', 'INBOX', gone.uid), undefined);
    assert.equal(await store.delete('r@x.test', 'INBOX', [kept.uid]), 1);
    assert.equal(store.fetch('r@x.test', 'INBOX', fresh.uid)?.body.toString(), 'fresh\r\n');
  });

  it('forgets idempotency keys once their messages are older than the retention', async () => {
    const body = Buffer.from('p\r\n');
    await store.append({ body, receivedAt: 1_000, recipients: [{ account: 'p@x.test', idempotencyKey: 'old:p' }] });
    await store.append({ body, receivedAt: 5_000, recipients: [{ account: 'p@x.test', idempotencyKey: 'new:p' }] });
    const before = store.dedupeSize;
    let pruned = 0;
    for (let from: string | undefined, first = true; first || from !== undefined; first = false) {
      const batch = await store.prune(2_000, from, 2);
      pruned += batch.pruned;
      from = batch.next;
    }
    assert.ok(pruned >= 1);
    assert.equal(store.dedupeSize, before - pruned);
    assert.equal(store.list('p@x.test').length, 2, 'the messages stay');
    const recent = await store.append({ body, receivedAt: 5_000, recipients: [{ account: 'p@x.test', idempotencyKey: 'new:p' }] });
    assert.equal(recent[0].duplicate, true, 'a recent key is still known');
    const old = await store.append({ body, receivedAt: 6_000, recipients: [{ account: 'p@x.test', idempotencyKey: 'old:p' }] });
    assert.equal(old[0].duplicate, false, 'an old one is forgotten');
  });

  it('keeps concurrent appends apart', async () => {
    const all = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        store.append({ body: Buffer.from(`m${i}\r\n`), receivedAt: i, recipients: [{ account: 'e@x.test', idempotencyKey: `c${i}:e` }] }),
      ),
    );
    const uids = all.map((r) => r[0].uid).sort((x, y) => x - y);
    assert.deepEqual(uids, Array.from({ length: 50 }, (_, i) => i + 1));
  });
});

describe('pruneDedupe', () => {
  // Only the pass's loop is under test here: the store's batches are the test's own.
  const batches = (n: number) => {
    let calls = 0;
    return { calls: () => calls, prune: async () => ({ pruned: 2, next: ++calls < n ? `k${calls}` : undefined }) };
  };

  it('goes through every batch and counts what went', async () => {
    const store = batches(3);
    assert.equal(await pruneDedupe(store, 0), 6);
    assert.equal(store.calls(), 3);
  });

  it('ends the pass quietly when `between` answers false (a stopping node)', async () => {
    const store = batches(3);
    assert.equal(await pruneDedupe(store, 0, async () => false), 2);
    assert.equal(store.calls(), 1);
  });
});
