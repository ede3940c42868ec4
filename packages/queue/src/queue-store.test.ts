import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { QueueStore, type QueuedRecipient } from './queue-store.js';
import { nextAttempt } from './schedule.js';

const rcpt = (address: string, at: number) => ({ address, route: 'relay' as const, queuedAt: at, nextAttemptAt: at });

/** A fresh queue on disk for the tests of one describe. */
function freshStore(options: ConstructorParameters<typeof QueueStore>[1] = {}): { readonly store: QueueStore } {
  let dir: string;
  const ref = { store: undefined as unknown as QueueStore };
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mailgrid-queue-'));
    ref.store = new QueueStore(dir, options);
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

describe('QueueStore as a followed log: a partner copy, a takeover, the owner back', () => {
  const owner = freshStore();
  // A partner's copy keeps no log of its own, only where the owner's ends.
  const copy = freshStore({ endOnly: true });
  const taker = freshStore();
  const entry = (id: string, at: number) => ({ message: { id, mailFrom: 'a@x.test', receivedAt: at, size: 4, origin: 'fe-1' }, body: Buffer.from(id.padEnd(4)), recipients: [rcpt(`${id}@y.test`, at)] });

  it('a copy applying the owner\'s log has its messages, held recipients and hand-over marks', async () => {
    await owner.store.enqueue(entry('q1', 1));
    await owner.store.enqueue(entry('q2', 2));
    await owner.store.enqueue(entry('q3', 3));
    const [r2] = owner.store.recipientsOf('q2');
    await owner.store.settle([{ recipient: { ...r2, state: 'held' }, done: false }]);
    const [r3] = owner.store.recipientsOf('q3');
    await owner.store.settle([{ recipient: { ...r3, handingAt: 5 }, done: false }]);
    await copy.store.apply(owner.store.entries(1) as never[]);
    assert.deepEqual(copy.store.position(), owner.store.position());
    assert.equal(copy.store.entries(1).length, 0, 'no log kept on the copy');
    assert.equal(copy.store.messageCount, 3);
    assert.equal(copy.store.body('q1')?.toString(), 'q1  ');
    assert.notEqual(copy.store.identity, owner.store.identity, 'a copy has an identity of its own');
  });

  it('adopting the copy keeps each recipient as it was and counts those that may have been sent; a second adoption adds nothing', async () => {
    await taker.store.enqueue(entry('t1', 1));
    assert.deepEqual(await taker.store.adopt(copy.store), { messages: 3, handing: 1 });
    assert.equal(taker.store.messageCount, 4);
    assert.equal(taker.store.recipientsOf('q2')[0].state, 'held');
    assert.deepEqual(taker.store.dueRecipients(10, 10).map((r) => r.messageId), ['q1', 't1', 'q3'], 'held ones are not due');
    assert.deepEqual(await taker.store.adopt(copy.store), { messages: 0, handing: 0 });
  });

  it('the owner back drops what the claim took and keeps what came after it; a claim its log does not reach drops nothing', async () => {
    const claimed = copy.store.position();
    await owner.store.enqueue(entry('q4', 4));
    assert.equal(await owner.store.dropTakenOver(claimed), 3);
    assert.deepEqual([...owner.store.list()].map((e) => e.message.id), ['q4']);
    assert.equal(owner.store.messageCount, 1);
    assert.equal(owner.store.byteCount, 4);
    assert.equal(await owner.store.dropTakenOver({ seq: claimed.seq, epoch: 99 }), undefined);
    const before = owner.store.identity;
    await owner.store.renew();
    assert.notEqual(owner.store.identity, before);
  });
});
