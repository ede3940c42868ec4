import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { QueueStore, type QueuedRecipient } from './queue-store.js';
import { nextAttempt } from './schedule.js';

const rcpt = (address: string, at: number) => ({ address, route: 'relay' as const, queuedAt: at, nextAttemptAt: at });

/** A fresh queue on disk for the tests of one describe. */
function freshStore(): { readonly store: QueueStore } {
  let dir: string;
  const ref = { store: undefined as unknown as QueueStore };
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mailgrid-queue-'));
    ref.store = new QueueStore(dir);
  });
  after(async () => {
    await ref.store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return ref;
}

describe('QueueStore', () => {
  const q = freshStore();

  it('returns only what is due, oldest first, and counts messages and bytes', async () => {
    await q.store.enqueue({ message: { id: 'm2', mailFrom: 'a@x.test', receivedAt: 2, size: 3, origin: 'n' }, body: Buffer.from('two'), recipients: [rcpt('b@y.test', 200)] });
    await q.store.enqueue({ message: { id: 'm1', mailFrom: 'a@x.test', receivedAt: 1, size: 3, origin: 'n' }, body: Buffer.from('one'), recipients: [rcpt('c@y.test', 100), rcpt('d@y.test', 300)] });
    assert.equal(q.store.messageCount, 2);
    assert.equal(q.store.byteCount, 6);
    assert.deepEqual(q.store.dueRecipients(250, 10).map((r) => r.address), ['c@y.test', 'b@y.test']);
    assert.deepEqual(q.store.dueRecipients(50, 10), []);
    assert.equal(q.store.nextDueAt(), 100);
  });

  it('reschedules, and drops a message with its last recipient', async () => {
    const [c] = q.store.dueRecipients(100, 1);
    await q.store.settle([{ recipient: { ...c, attempts: 1, nextAttemptAt: 1000 }, done: false }]);
    assert.deepEqual(q.store.dueRecipients(999, 10).map((r) => r.address), ['b@y.test', 'd@y.test']);
    const d = q.store.recipientsOf('m1').find((r) => r.address === 'd@y.test')!;
    await q.store.settle([{ recipient: d, done: true }]);
    assert.equal(q.store.messageCount, 2, 'm1 still has c');
    const c2 = q.store.recipientsOf('m1')[0];
    await q.store.settle([{ recipient: c2, done: true }]);
    assert.equal(q.store.messageCount, 1);
    assert.equal(q.store.byteCount, 3);
    assert.equal(q.store.body('m1'), undefined);
  });

  it('keeps an operator hold over a reschedule that raced it', async () => {
    const [b] = q.store.recipientsOf('m2');
    await q.store.settle([{ recipient: { ...b, state: 'held' }, done: false }]);
    const rescheduled: QueuedRecipient = { ...b, attempts: b.attempts + 1, nextAttemptAt: 5 };
    await q.store.settle([{ recipient: rescheduled, done: false }]);
    assert.equal(q.store.recipientsOf('m2')[0].state, 'held');
    assert.deepEqual(q.store.dueRecipients(10_000, 10), []);
  });
});

describe('QueueStore after a crash during inline attempts', () => {
  it('makes never-attempted recipients due at once, and leaves scheduled retries alone', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mailgrid-queue-'));
    const store = new QueueStore(dir);
    try {
      const later = Date.now() + 60_000;
      const [inline] = await store.enqueue({ message: { id: 'i1', mailFrom: '', receivedAt: 1, size: 1, origin: 'n' }, body: Buffer.from('i'), recipients: [rcpt('a@x.test', later)] });
      const [retry] = await store.enqueue({ message: { id: 'r1', mailFrom: '', receivedAt: 1, size: 1, origin: 'n' }, body: Buffer.from('r'), recipients: [rcpt('b@x.test', later)] });
      await store.settle([{ recipient: { ...retry, attempts: 1 }, done: false }]);
      assert.equal(await store.resumeUnattempted(Date.now() + 65_000), 1);
      assert.deepEqual(store.dueRecipients(Date.now(), 10).map((r) => r.messageId), [inline.messageId]);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('QueueStore ids and counts', () => {
  const q = freshStore();
  const entry = (id: string, body: string, n = 1) => ({
    message: { id, mailFrom: 'a@x.test', receivedAt: 1, size: body.length, origin: 'n' },
    body: Buffer.from(body),
    recipients: Array.from({ length: n }, (_, i) => rcpt(`r${i}@y.test`, 0)),
  });

  it('refuses an id already queued and counts the message once', async () => {
    await q.store.enqueue(entry('dup', 'first'));
    await assert.rejects(q.store.enqueue(entry('dup', 'second, longer')), (err: { code?: string }) => err.code === 'DUPLICATE_QUEUE_ID');
    assert.equal(q.store.messageCount, 1);
    assert.equal(q.store.byteCount, 'first'.length);
    assert.equal(q.store.body('dup')?.toString(), 'first', 'nothing overwritten');
  });

  it('writes a settle and the entry it adds together or not at all', async () => {
    const [r0] = await q.store.enqueue(entry('two', 'xx', 2));
    await assert.rejects(q.store.settle([{ recipient: r0, done: true }], [entry('dup', 'dsn')]));
    assert.equal(q.store.recipientsOf('two').length, 2, 'the settle did not happen without its DSN');
    assert.equal(q.store.messageCount, 2);
    await q.store.settle([{ recipient: r0, done: true }], [entry('dsn-1', 'dsn')]);
    assert.equal(q.store.recipientsOf('two').length, 1);
    assert.equal(q.store.messageCount, 3);
    assert.equal(q.store.byteCount, 'first'.length + 'xx'.length + 'dsn'.length);
  });
});

describe('nextAttempt', () => {
  const policy = { minRetryMs: 60_000, maxRetryMs: 3_600_000, lifetimeMs: 5 * 86_400_000, delayWarningMs: 0 };
  it('doubles from the first retry up to the cap', () => {
    const mid = () => 0.5;
    assert.equal(nextAttempt(policy, 1, 0, mid), 60_000);
    assert.equal(nextAttempt(policy, 2, 0, mid), 120_000);
    assert.equal(nextAttempt(policy, 7, 0, mid), 3_600_000);
    assert.equal(nextAttempt(policy, 30, 0, mid), 3_600_000);
  });
  it('spreads retries by ±10%', () => {
    assert.equal(nextAttempt(policy, 1, 0, () => 0), 54_000);
    assert.equal(nextAttempt(policy, 1, 0, () => 1), 66_000);
  });
});
