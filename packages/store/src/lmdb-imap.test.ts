import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MAX_FOLDER_NAME_BYTES } from '@mailgrid/core';
import { open } from 'lmdb';
import { DEFAULT_MAILBOXES, LmdbMailStore } from './lmdb-store.js';
import type { AccountRecord, MailboxChange } from './store.js';

const A = 'imap@x.test';
const msg = (subject: string) => Buffer.from(`Subject: ${subject}\r\n\r\nbody of ${subject}\r\n`);

describe('LmdbMailStore for IMAP', () => {
  let dir: string;
  let store: LmdbMailStore;
  const changes: MailboxChange[] = [];
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mailgrid-imap-store-'));
    store = new LmdbMailStore(dir);
    store.on('change', (c: MailboxChange) => changes.push(c));
  });
  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('makes the default folders with their special use once, and a folder made again gets a newer UIDVALIDITY', async () => {
    assert.equal(await store.ensureMailboxes(A), true);
    assert.equal(await store.ensureMailboxes(A), false, 'nothing to make the second time');
    const folders = store.folders(A);
    assert.deepEqual(folders.map((f) => [f.name, f.specialUse]).sort(), DEFAULT_MAILBOXES.map((d) => [d.name, d.specialUse ?? '']).sort());
    assert.ok(folders.every((f) => f.id.startsWith('F') && f.exists));
    const made = await store.createMailbox(A, 'Projects/2026');
    await store.deleteMailbox(A, 'Projects/2026');
    const again = await store.createMailbox(A, 'Projects/2026');
    assert.ok(again.uidValidity > made.uidValidity, `${again.uidValidity} after ${made.uidValidity}`);
    assert.notEqual(again.id, made.id);
    await assert.rejects(store.createMailbox(A, 'Projects/2026'), (e: { code?: string }) => e.code === 'ALREADY_EXISTS');
    await assert.rejects(store.deleteMailbox(A, 'INBOX'), (e: { code?: string }) => e.code === 'FAILED_PRECONDITION');
  });

  it('refuses a folder name longer than its keys can hold (made, subscribed, or renamed to, children included), and writes nothing', async () => {
    const refused = (e: { code?: string }) => e.code === 'FAILED_PRECONDITION';
    const long = 'n'.repeat(MAX_FOLDER_NAME_BYTES + 1);
    await assert.rejects(store.createMailbox(A, long), refused);
    await assert.rejects(store.subscribe(A, long, true), refused);
    await store.createMailbox(A, 'Short');
    await store.createMailbox(A, 'Short/Child');
    // The parent fits; its child would not.
    await assert.rejects(store.renameMailbox(A, 'Short', 'n'.repeat(MAX_FOLDER_NAME_BYTES - 2)), refused);
    assert.deepEqual(store.folders(A).map((f) => f.name).filter((n) => n.startsWith('Short') || n.startsWith('nnn')), ['Short', 'Short/Child']);
  });

  it('renames a folder with its children or not at all: a child whose new name is taken leaves every name as it was', async () => {
    for (const name of ['Left', 'Left/Kid', 'Right/Kid']) await store.createMailbox(A, name);
    await assert.rejects(store.renameMailbox(A, 'Left', 'Right'), (e: { code?: string }) => e.code === 'ALREADY_EXISTS');
    assert.deepEqual(store.folders(A).map((f) => f.name).filter((n) => /^(Left|Right)/.test(n)).sort(), ['Left', 'Left/Kid', 'Right/Kid']);
  });

  it('gives every change the account\'s next mod-sequence; STORE honours UNCHANGEDSINCE; HIGHESTMODSEQ follows', async () => {
    const [a] = await store.append({ body: msg('one'), receivedAt: 1, recipients: [{ account: A, idempotencyKey: 'i1' }] });
    const [b] = await store.append({ body: msg('two'), receivedAt: 2, recipients: [{ account: A, idempotencyKey: 'i2' }] });
    const [m1, m2] = store.list(A);
    assert.ok(m2.modseq > m1.modseq);
    assert.match(m1.emailId, /^M[A-Za-z0-9_-]+$/);
    const seen = await store.storeFlags(A, 'INBOX', [a.uid, b.uid], 'add', ['\\Seen']);
    assert.equal(seen.changed.length, 2);
    assert.equal(seen.changed[0].modseq, seen.changed[1].modseq, 'one mod-sequence for the command');
    assert.ok(seen.changed[0].modseq > m2.modseq);
    // Changed since the client looked: left alone, and named.
    const stale = await store.storeFlags(A, 'INBOX', [a.uid, b.uid], 'add', ['$Important'], m2.modseq);
    assert.deepEqual(stale, { changed: [], modified: [a.uid, b.uid] });
    const replaced = await store.storeFlags(A, 'INBOX', [a.uid], 'replace', ['\\Flagged'], seen.changed[0].modseq);
    assert.deepEqual(replaced.changed.map((c) => c.flags), [['\\Flagged']]);
    assert.equal(store.folderInfo(A, 'INBOX').highestModseq, replaced.changed[0].modseq);
    assert.equal(store.modseq(A), replaced.changed[0].modseq);
  });

  it('expunges what is \\Deleted, remembers the uids as vanished at their mod-sequence, and says what changed since a point', async () => {
    const before = store.modseq(A);
    const [c] = await store.append({ body: msg('three'), receivedAt: 3, recipients: [{ account: A, idempotencyKey: 'i3' }] });
    await store.storeFlags(A, 'INBOX', [1, c.uid], 'add', ['\\Deleted']);
    assert.deepEqual(await store.expunge(A, 'INBOX', [c.uid]), [c.uid], 'UID EXPUNGE: only the ones named');
    assert.deepEqual(await store.expunge(A, 'INBOX'), [1]);
    const since = store.changedSince(A, 'INBOX', before);
    assert.deepEqual(since.vanished.sort(), [1, c.uid]);
    assert.deepEqual(since.changed.map((m) => m.uid), [], 'message 2 has not changed since');
    assert.equal(store.folderIds(A).uidNext, c.uid + 1, 'no uid given twice');
    assert.ok(changes.some((ch) => ch.expunged?.includes(1)));
  });

  it('says what changed after a mod-sequence from that point on: a flag change moves a message there, an expunge leaves its uid, a renamed folder keeps both', async () => {
    await store.createMailbox(A, 'Big');
    for (let i = 0; i < 50; i++) await store.appendMessage(A, 'Big', msg(`big ${i}`), [], i);
    const point = store.modseq(A);
    assert.deepEqual(store.changedSince(A, 'Big', point), { changed: [], vanished: [] });
    await store.storeFlags(A, 'Big', [7, 9], 'add', ['\\Seen']);
    await store.storeFlags(A, 'Big', [9, 11], 'add', ['\\Deleted']);
    await store.expunge(A, 'Big');
    const since = store.changedSince(A, 'Big', point);
    assert.deepEqual(since.changed.map((m) => [m.uid, m.flags]), [[7, ['\\Seen']]], 'once, with its flags now');
    assert.deepEqual(since.vanished, [9, 11]);
    assert.deepEqual(store.changedSince(A, 'Big', since.changed[0].modseq).changed, [], 'nothing after its own change');
    await store.renameMailbox(A, 'Big', 'Bigger');
    const renamed = store.changedSince(A, 'Bigger', point);
    assert.deepEqual([renamed.changed.map((m) => [m.uid, m.modseq]), renamed.vanished], [since.changed.map((m) => [m.uid, m.modseq]), since.vanished]);
    assert.equal(store.changedSince(A, 'Bigger', 0).changed.length, 48);
  });

  it('copies and moves with COPYUID pairs, keeping EMAILID, THREADID and flags; a copy over the quota is refused whole', async () => {
    const [src] = store.list(A);
    const copy = await store.copyMessages(A, 'INBOX', 'Archive', [src.uid, 999], false);
    assert.equal(copy.pairs.length, 1);
    const archived = store.list(A, 'Archive').find((m) => m.uid === copy.pairs[0][1])!;
    assert.deepEqual([archived.emailId, archived.threadId, archived.flags], [src.emailId, src.threadId, src.flags]);
    assert.equal(copy.uidValidity, store.folderIds(A, 'Archive').uidValidity);
    const moved = await store.copyMessages(A, 'Archive', 'Trash', [archived.uid], true);
    assert.equal(store.list(A, 'Archive').length, 0);
    assert.equal(store.list(A, 'Trash')[0].emailId, src.emailId);
    assert.ok(store.changedSince(A, 'Archive', 0).vanished.includes(archived.uid));
    const { used } = store.quota(A);
    await store.setQuota(A, used + 10);
    await assert.rejects(store.copyMessages(A, 'INBOX', 'Archive', [src.uid], false), (e: { code?: string }) => e.code === 'OVER_QUOTA');
    await assert.rejects(store.appendMessage(A, 'INBOX', msg('too big'), [], 4), (e: { code?: string }) => e.code === 'OVER_QUOTA');
    const [refused] = await store.append({ body: msg('delivered over quota'), receivedAt: 5, recipients: [{ account: A, idempotencyKey: 'i5' }] });
    assert.equal(refused.overQuota, true);
    assert.equal(store.quota(A).used, used, 'nothing was written');
    await store.setQuota(A, 0);
    assert.ok(moved.pairs.length === 1);
  });

  it('threads a reply with what it answers, by Message-ID, In-Reply-To and References', async () => {
    const root = await store.appendMessage(A, 'Sent', msg('root'), ['\\Seen'], 6, { messageId: '<Root@x>', parents: [] });
    const reply = await store.appendMessage(A, 'INBOX', msg('Re: root'), [], 7, { messageId: '<reply@y>', parents: ['<root@x>'] });
    const other = await store.appendMessage(A, 'INBOX', msg('other'), [], 8, { messageId: '<other@z>', parents: [] });
    const thread = (folder: string, uid: number) => store.list(A, folder).find((m) => m.uid === uid)!.threadId;
    assert.equal(thread('INBOX', reply.uid), thread('Sent', root.uid));
    assert.notEqual(thread('INBOX', other.uid), thread('Sent', root.uid));
    assert.deepEqual(store.list(A, 'Sent').find((m) => m.uid === root.uid)!.flags, ['\\Seen']);
  });

  it('renames a folder with those under it keeping their ids; renaming INBOX moves its messages and leaves it empty with its uids going on', async () => {
    await store.createMailbox(A, 'Old');
    await store.createMailbox(A, 'Old/Sub');
    await store.appendMessage(A, 'Old/Sub', msg('in sub'), [], 9);
    const sub = store.folderInfo(A, 'Old/Sub');
    await store.renameMailbox(A, 'Old', 'New');
    const moved = store.folderInfo(A, 'New/Sub');
    assert.deepEqual([moved.uidValidity, moved.id, moved.messages], [sub.uidValidity, sub.id, 1]);
    assert.equal(store.folderInfo(A, 'Old/Sub').exists, false);
    const inbox = store.folderInfo(A, 'INBOX');
    await store.renameMailbox(A, 'INBOX', 'Saved');
    assert.equal(store.folderInfo(A, 'Saved').messages, inbox.messages);
    const after = store.folderInfo(A, 'INBOX');
    assert.deepEqual([after.messages, after.uidNext, after.uidValidity], [0, inbox.uidNext, inbox.uidValidity]);
  });

  it('moves with the account: UIDVALIDITY, uids, mod-sequences, ids, vanished uids, threads, subscriptions and quota', async () => {
    await store.subscribe(A, 'Saved', true);
    await store.setQuota(A, 1 << 30);
    const other = new LmdbMailStore(join(dir, 'other'));
    try {
      const records: AccountRecord[][] = [...store.exportAccount(A)];
      await other.importAccount(A, (async function* () {
        yield* records;
      })());
      for (const f of store.folders(A)) {
        const g = other.folderInfo(A, f.name);
        assert.deepEqual([g.uidValidity, g.uidNext, g.highestModseq, g.id, g.specialUse, g.messages], [f.uidValidity, f.uidNext, f.highestModseq, f.id, f.specialUse, f.messages], f.name);
        assert.deepEqual(other.list(A, f.name), store.list(A, f.name));
        assert.deepEqual(other.changedSince(A, f.name, 0).vanished, store.changedSince(A, f.name, 0).vanished);
      }
      assert.equal(other.modseq(A), store.modseq(A));
      assert.deepEqual(other.subscribed(A), ['Saved']);
      assert.deepEqual(other.quota(A), store.quota(A));
      // A reply arriving after the move still joins its thread.
      const reply = await other.appendMessage(A, 'INBOX', msg('Re: root again'), [], 10, { messageId: '<r2@y>', parents: ['<root@x>'] });
      assert.equal(other.list(A).find((m) => m.uid === reply.uid)!.threadId, store.list(A, 'Sent')[0].threadId);
    } finally {
      await other.close();
    }
  });

  it("a read of one account waits for that account's last write only, not for another account's later one", async () => {
    let release = () => {};
    let gate = Promise.resolve();
    const held = new LmdbMailStore(join(dir, 'held-accounts'), { durable: () => gate });
    const B = 'other@x.test';
    try {
      await held.append({ body: msg('a'), receivedAt: 1, recipients: [{ account: A, idempotencyKey: 'e1' }] });
      assert.equal(await held.readDurable(() => held.list(A).length, A), 1);
      gate = new Promise((r) => (release = r));
      const appended = held.append({ body: msg('b'), receivedAt: 2, recipients: [{ account: B, idempotencyKey: 'e2' }] });
      await held.barrier();
      assert.equal(await held.readDurable(() => held.list(A).length, A), 1, "A's read does not wait for B's write");
      let answered = false;
      const read = held.readDurable(() => held.list(B).length, B).then((n) => ((answered = true), n));
      const whole = held.readDurable(() => held.list(B).length);
      await new Promise((r) => setImmediate(r));
      assert.equal(answered, false, "B's read waits for B's write to be on the replicas");
      release();
      assert.equal(await read, 1);
      assert.equal(await whole, 1);
      await appended;
    } finally {
      release();
      await held.close();
    }
  });

  it('answers a durable read only once the log it saw is durable', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const held = new LmdbMailStore(join(dir, 'held'), { durable: () => gate });
    try {
      const appended = held.append({ body: msg('x'), receivedAt: 1, recipients: [{ account: A, idempotencyKey: 'd1' }] });
      await held.barrier();
      let answered = false;
      const read = held.readDurable(() => held.list(A).length).then((n) => ((answered = true), n));
      await new Promise((r) => setImmediate(r));
      assert.equal(answered, false, 'not before the replicas have it');
      release();
      assert.equal(await read, 1);
      await appended;
    } finally {
      await held.close();
    }
  });
  it("keeps each folder's figures with its messages, the same as counting them after every kind of change, and counts once for a store that never kept them", async () => {
    const B = 'counts@x.test';
    const counted = (s: LmdbMailStore, folder: string) => {
      const list = s.list(B, folder);
      return { messages: list.length, unseen: list.filter((m) => !m.flags.includes('\\Seen')).length, deleted: list.filter((m) => m.flags.includes('\\Deleted')).length, size: list.reduce((n, m) => n + m.size, 0) };
    };
    const figures = (s: LmdbMailStore, folder: string) => {
      const { messages, unseen, deleted, size } = s.folderInfo(B, folder);
      return { messages, unseen, deleted, size };
    };
    const check = (s: LmdbMailStore, step: string) => {
      for (const f of s.folders(B)) assert.deepEqual(figures(s, f.name), counted(s, f.name), `${f.name} after ${step}`);
    };
    await store.ensureMailboxes(B);
    for (let i = 0; i < 4; i++) await store.append({ body: msg(`c${i}`), receivedAt: i, recipients: [{ account: B, idempotencyKey: `c${i}` }] });
    check(store, 'deliveries');
    await store.storeFlags(B, 'INBOX', [1, 2], 'add', ['\\Seen', '\\Deleted']);
    await store.storeFlags(B, 'INBOX', [2], 'remove', ['\\Seen']);
    check(store, 'STORE');
    await store.copyMessages(B, 'INBOX', 'Archive', [3], false);
    await store.copyMessages(B, 'INBOX', 'Trash', [4], true);
    check(store, 'COPY and MOVE');
    await store.expunge(B, 'INBOX');
    check(store, 'EXPUNGE');
    await assert.rejects(store.copyMessages(B, 'INBOX', 'Nowhere', [3], false));
    await store.createMailbox(B, 'Old');
    await store.copyMessages(B, 'INBOX', 'Old', [3], false);
    await store.renameMailbox(B, 'Old', 'New');
    await store.renameMailbox(B, 'INBOX', 'Was-Inbox');
    check(store, 'RENAME');
    assert.equal(figures(store, 'INBOX').messages, 0);
    await store.deleteMailbox(B, 'New');
    await store.createMailbox(B, 'New');
    check(store, 'DELETE and CREATE again');
    assert.equal(figures(store, 'New').messages, 0);

    // A store an older version wrote has no figures: they are counted, then kept from the next change.
    const path = join(dir, 'older');
    let older = new LmdbMailStore(path);
    await older.ensureMailboxes(B);
    for (let i = 0; i < 3; i++) await older.append({ body: msg(`o${i}`), receivedAt: i, recipients: [{ account: B, idempotencyKey: `o${i}` }] });
    await older.close();
    const raw = open({ path, maxDbs: 32 });
    const kept = raw.openDB({ name: 'counts' });
    for (const key of kept.getKeys()) await kept.remove(key);
    await raw.close();
    older = new LmdbMailStore(path);
    try {
      assert.deepEqual(figures(older, 'INBOX'), { messages: 3, unseen: 3, deleted: 0, size: counted(older, 'INBOX').size });
      await older.storeFlags(B, 'INBOX', [1], 'add', ['\\Seen']);
      await older.append({ body: msg('o3'), receivedAt: 3, recipients: [{ account: B, idempotencyKey: 'o3' }] });
      check(older, 'changes to an older store');
      assert.equal(figures(older, 'INBOX').messages, 4);
    } finally {
      await older.close();
    }
  });
});
