import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Replies } from '@mailgrid/core';
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

  it('keeps folders with UIDVALIDITY, UIDNEXT and flags (what an IMAP front needs), and a password hash per account', async () => {
    const empty = store.folders('f@x.test');
    assert.equal(empty.length, 1);
    assert.deepEqual([empty[0].name, empty[0].uidNext, empty[0].messages], ['INBOX', 1, 0]);
    await store.append({ body: Buffer.from('x\r\n'), receivedAt: Date.now(), recipients: [{ account: 'f@x.test', idempotencyKey: 'f1', folders: ['INBOX', 'Archive'] }] });
    await store.append({ body: Buffer.from('y\r\n'), receivedAt: Date.now(), recipients: [{ account: 'f@x.test', idempotencyKey: 'f2' }] });
    const inbox = store.folders('f@x.test').find((f) => f.name === 'INBOX')!;
    assert.deepEqual([inbox.uidNext, inbox.messages, inbox.unseen], [3, 2, 2]);
    assert.ok(Math.abs(inbox.uidValidity - Date.now() / 1000) < 60, 'UIDVALIDITY is when the folder was made');
    assert.deepEqual(store.folderIds('f@x.test'), { uidValidity: inbox.uidValidity, uidNext: 3 });
    assert.equal(await store.setFlags('f@x.test', 'INBOX', [1, 2, 9], ['\\Seen'], []), 2);
    assert.equal(await store.setFlags('f@x.test', 'INBOX', [1], ['\\Seen'], []), 0, 'no change, nothing written');
    assert.equal(await store.setFlags('f@x.test', 'INBOX', [2], ['$Label1'], ['\\Seen']), 1);
    assert.deepEqual(store.list('f@x.test').map((m) => m.flags), [['\\Seen'], ['$Label1']]);
    assert.equal(store.folders('f@x.test').find((f) => f.name === 'INBOX')!.unseen, 1);
    // Deleting every message keeps the folder and its uids: none is given twice.
    await store.delete('f@x.test', 'INBOX', [1, 2]);
    assert.equal(store.folderIds('f@x.test').uidNext, 3);
    assert.equal(store.passwordHash('f@x.test'), undefined);
    await store.setPasswordHash('f@x.test', 'h1');
    assert.equal(store.passwordHash('f@x.test')?.hash, 'h1');
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

describe('LmdbMailStore log (replication)', () => {
  const dirs: string[] = [];
  const stores: LmdbMailStore[] = [];
  const make = () => {
    const dir = mkdtempSync(join(tmpdir(), 'mailgrid-log-'));
    dirs.push(dir);
    const s = new LmdbMailStore(dir);
    stores.push(s);
    return s;
  };
  after(async () => {
    for (const s of stores) await s.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const same = (a: LmdbMailStore, b: LmdbMailStore, account: string) => {
    assert.deepEqual(b.list(account), a.list(account));
    for (const m of a.list(account)) assert.deepEqual(b.fetch(account, m.folder, m.uid)?.body, a.fetch(account, m.folder, m.uid)?.body);
  };

  it('logs every write in order; a replica applying the entries ends up with the same mail, rules and keys', async () => {
    const primary = make();
    const replica = make();
    primary.epoch = 7;
    await primary.append({ body: Buffer.from('one\r\n'), receivedAt: 1, recipients: [{ account: 'a@x.test', idempotencyKey: 'm1:a' }, { account: 'b@x.test', idempotencyKey: 'm1:b' }] });
    await primary.append({ body: Buffer.from('two\r\n'), receivedAt: 2, recipients: [{ account: 'a@x.test', idempotencyKey: 'm2:a', folders: ['Lists'] }] });
    await primary.setRules('a@x.test', 'keep;');
    await primary.delete('b@x.test', 'INBOX', [1]);
    assert.deepEqual(primary.position(), { seq: 4, epoch: 7 });
    const entries = primary.entries(1);
    assert.deepEqual(entries.map((e) => e.seq), [1, 2, 3, 4]);
    await replica.apply(entries);
    assert.deepEqual(replica.position(), { seq: 4, epoch: 7 });
    same(primary, replica, 'a@x.test');
    same(primary, replica, 'b@x.test');
    assert.deepEqual(replica.list('a@x.test', 'Lists'), primary.list('a@x.test', 'Lists'));
    assert.equal(replica.rules('a@x.test'), 'keep;');
    assert.equal(replica.seen('m1:a')?.uid, 1);
    // Out of order is refused, not applied.
    await assert.rejects(replica.apply(primary.entries(2)), /451 4\.3\.0/);
    assert.deepEqual(replica.position(), { seq: 4, epoch: 7 });
  });

  it('says whether it can continue a replica\'s log; a trimmed or diverged one needs a full copy, which gives the same state', async () => {
    const primary = make();
    primary.epoch = 3;
    for (let i = 1; i <= 5; i++) await primary.append({ body: Buffer.from(`m${i}\r\n`), receivedAt: i, recipients: [{ account: 'c@x.test', idempotencyKey: `k${i}` }] });
    assert.ok(primary.holds({ seq: 0, epoch: 0 }));
    assert.ok(primary.holds({ seq: 2, epoch: 3 }));
    assert.ok(!primary.holds({ seq: 2, epoch: 9 }), 'same seq, another epoch: diverged');
    await primary.trim(3);
    assert.deepEqual(primary.base(), { seq: 3, epoch: 3 });
    assert.ok(!primary.holds({ seq: 2, epoch: 3 }), 'trimmed past it');
    assert.ok(primary.holds({ seq: 3, epoch: 3 }));
    assert.deepEqual(primary.entries(1).map((e) => e.seq), [4, 5]);

    const replica = make();
    await replica.append({ body: Buffer.from('stray\r\n'), receivedAt: 1, recipients: [{ account: 'z@x.test', idempotencyKey: 'stray' }] });
    const base = primary.position();
    await replica.beginCopy();
    assert.equal(replica.position().seq, 0, 'not whole while copying');
    assert.equal(primary.holds(replica.position()), false, 'and no log continues it');
    assert.equal(replica.ready, false);
    for (const batch of primary.snapshot(16)) await replica.copy(batch);
    await replica.endCopy(base);
    same(primary, replica, 'c@x.test');
    assert.deepEqual(replica.list('z@x.test'), [], 'what it had before is gone');
    await primary.append({ body: Buffer.from('m6\r\n'), receivedAt: 6, recipients: [{ account: 'c@x.test', idempotencyKey: 'k6' }] });
    await replica.apply(primary.entries(base.seq + 1));
    same(primary, replica, 'c@x.test');
    assert.deepEqual(replica.position(), primary.position());
  });
});

describe('LmdbMailStore log under faults', () => {
  const dirs: string[] = [];
  const stores: LmdbMailStore[] = [];
  const make = (options?: ConstructorParameters<typeof LmdbMailStore>[1]) => {
    const dir = mkdtempSync(join(tmpdir(), 'mailgrid-logf-'));
    dirs.push(dir);
    const s = new LmdbMailStore(dir, options);
    stores.push(s);
    return s;
  };
  after(async () => {
    for (const s of stores) await s.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const put = (s: LmdbMailStore, key: string) => s.append({ body: Buffer.from(`${key}\r\n`), receivedAt: 1, recipients: [{ account: 'f@x.test', idempotencyKey: key }] });

  it('a copy interrupted half way is never continued from the log: it is copied again', async () => {
    const primary = make();
    for (let i = 0; i < 3; i++) await put(primary, `c${i}`);
    const replica = make();
    await replica.beginCopy();
    await replica.copy([...primary.snapshot(16)][0]);
    assert.equal(primary.holds(replica.position()), false);
  });

  it('a store that is not writable (a replica) writes nothing to its log', async () => {
    let primary = true;
    const s = make({
      writable: () => {
        if (!primary) throw Replies.notPrimary('g1');
      },
    });
    await put(s, 'w1');
    primary = false;
    await assert.rejects(put(s, 'w2'), /451 4\.3\.0 This member is not the primary/);
    await assert.rejects(s.prune(Date.now() + 1), /not the primary/);
    assert.equal(s.position().seq, 1);
    assert.equal(s.seen('w2'), undefined);
  });

  it('answers a duplicate only once what it found is durable', async () => {
    let release = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const s = make({ durable: () => gate });
    const first = put(s, 'd1');
    await s.barrier();
    let answered = false;
    const again = put(s, 'd1').then((r) => ((answered = true), r));
    await new Promise((r) => setImmediate(r));
    assert.equal(answered, false, 'the retry found the first write, not yet on the replicas: it waits as the first does');
    release();
    assert.equal((await again)[0].duplicate, true);
    await first;
  });
});

describe('LmdbMailStore account moves', () => {
  const dirs: string[] = [];
  const stores: LmdbMailStore[] = [];
  const make = (accepts?: (account: string) => boolean) => {
    const dir = mkdtempSync(join(tmpdir(), 'mailgrid-move-'));
    dirs.push(dir);
    const s = new LmdbMailStore(dir, { accepts });
    stores.push(s);
    return s;
  };
  after(async () => {
    for (const s of stores) await s.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  async function* from<T>(items: T[]) {
    yield* items;
  }

  it('exports an account whole (folders, shared and large bodies, rules, vacation, keys) and imports it over a partial earlier import; purge leaves the others', async () => {
    const src = make();
    const shared = Buffer.from('to both folders\r\n');
    const large = Buffer.alloc(3_000, 'x');
    await src.append({ body: shared, receivedAt: 1, recipients: [{ account: 'm@x.test', idempotencyKey: 'k1', folders: ['INBOX', 'Kept'], vacation: { sender: 's@y.test', until: 99 } }, { account: 'o@x.test', idempotencyKey: 'k1:o' }] });
    await src.append({ body: large, receivedAt: 2, recipients: [{ account: 'm@x.test', idempotencyKey: 'k2' }] });
    await src.setRules('m@x.test', 'keep;');
    await src.setPasswordHash('m@x.test', '$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA');
    await src.setFlags('m@x.test', 'INBOX', [1], ['\\Seen'], []);
    const batches = [...src.exportAccount('m@x.test', 1_000)];
    assert.ok(batches.length > 3, 'the large body went in parts');

    const dst = make();
    await dst.append({ body: Buffer.from('left by a failed import\r\n'), receivedAt: 0, recipients: [{ account: 'm@x.test', idempotencyKey: 'stale' }] });
    await dst.append({ body: Buffer.from('another account\r\n'), receivedAt: 0, recipients: [{ account: 'p@x.test', idempotencyKey: 'p1' }] });
    assert.deepEqual(await dst.importAccount('m@x.test', from(batches)), { messages: 3, bytes: shared.length + large.length });
    for (const folder of ['INBOX', 'Kept']) {
      assert.deepEqual(dst.list('m@x.test', folder), src.list('m@x.test', folder));
      for (const m of src.list('m@x.test', folder)) assert.deepEqual(dst.fetch('m@x.test', folder, m.uid)?.body, src.fetch('m@x.test', folder, m.uid)?.body);
    }
    assert.equal(dst.seen('stale'), undefined);
    assert.equal(dst.seen('k2')?.uid, 2);
    assert.equal(dst.seen('k1:o'), undefined, "another account's key stays behind");
    assert.equal(dst.rules('m@x.test'), 'keep;');
    assert.equal(dst.passwordHash('m@x.test')?.hash, '$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA', 'the password moves with the account');
    assert.deepEqual(dst.folders('m@x.test'), src.folders('m@x.test'), 'folders keep their UIDVALIDITY, UIDNEXT and flags');
    assert.ok(dst.vacationAnswered('m@x.test', 's@y.test', 50));
    const [next] = await dst.append({ body: shared, receivedAt: 3, recipients: [{ account: 'm@x.test', idempotencyKey: 'k3' }] });
    assert.equal(next.uid, 3, 'uids go on after the moved ones');
    // The shared blob is counted: deleting one of its two entries keeps the other.
    assert.equal(await dst.delete('m@x.test', 'Kept', [1]), 1);
    assert.deepEqual(dst.fetch('m@x.test', 'INBOX', 1)?.body, shared);

    assert.equal(await src.purgeAccount('m@x.test'), 3);
    assert.deepEqual(src.list('m@x.test'), []);
    assert.equal(src.rules('m@x.test'), undefined);
    assert.equal(src.passwordHash('m@x.test'), undefined);
    assert.equal(src.seen('k1'), undefined);
    assert.deepEqual(src.fetch('o@x.test', 'INBOX', 1)?.body, shared, 'a blob another account shares stays');
    assert.equal(dst.list('p@x.test').length, 1);
  });

  it('refuses writes to an account it does not take, inside the write', async () => {
    let moving = false;
    const s = make((account) => !(moving && account === 'm@x.test'));
    await s.append({ body: Buffer.from('before\r\n'), receivedAt: 1, recipients: [{ account: 'm@x.test', idempotencyKey: 'b1' }] });
    moving = true;
    const res = await s.append({ body: Buffer.from('during\r\n'), receivedAt: 2, recipients: [{ account: 'm@x.test', idempotencyKey: 'd1' }, { account: 'n@x.test', idempotencyKey: 'd1:n' }, { account: 'm@x.test', idempotencyKey: 'b1' }] });
    assert.deepEqual(res.map((r) => [r.uid, Boolean(r.refused), r.duplicate]), [[0, true, false], [1, false, false], [1, false, true]]);
    assert.equal(s.list('m@x.test').length, 1);
    assert.equal(s.seen('d1'), undefined, 'a refused copy leaves no key');
    await assert.rejects(s.delete('m@x.test', 'INBOX', [1]), /451 4\.2\.0/);
    await assert.rejects(s.setRules('m@x.test', 'keep;'), /451 4\.2\.0/);
    assert.equal(s.list('m@x.test').length, 1);
  });
});
