import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MessageState__Output } from '@mailgrid/protocol';
import { MailboxView, MessageMetas } from './view.js';

const state = (uid: number, modseq: number, flags: string[] = []): MessageState__Output => ({
  uid,
  modseq,
  flags,
  size: 100 + uid,
  receivedAtMs: 1_790_000_000_000 + uid,
  emailId: `M${uid}`,
  threadId: `T${uid}`,
});

describe('MailboxView', () => {
  const view = (uids: number[]) => {
    const metas = new MessageMetas().folder('a@example.test', 'F1');
    return { metas, view: new MailboxView(uids.map((u) => metas.of(state(u, u))).reverse(), 10) };
  };

  it('numbers messages by uid, holds expunges back until they may be told, and tells new ones at once', () => {
    const { metas, view: v } = view([1, 2, 3, 5]);
    assert.deepEqual([v.exists, v.maxUid, v.seqOf(5), v.uidOf(3), v.seqOf(4)], [4, 5, 4, 3, 0]);
    v.update([metas.of(state(7, 12)), metas.of(state(3, 11, ['\\Seen']))], [2], 12);
    assert.equal(v.highestModseq, 12);
    // Expunged, not told: numbered still, not usable, left out of UID sets and kept in number sets.
    assert.equal(v.get(2), undefined);
    assert.equal(v.seqOf(2), 2);
    assert.deepEqual(v.resolve({ ranges: [[1, Infinity]] }, true), [1, 3, 5, 7]);
    assert.deepEqual(v.resolve({ ranges: [[1, 2]] }, false), [1, 2]);
    assert.deepEqual(v.visible(), [1, 3, 5, 7]);
    // During a FETCH by number: the new message and the flags, no expunge.
    const during = v.untold(false);
    assert.deepEqual(during.expunged, []);
    assert.equal(during.exists, 5);
    assert.deepEqual(
      during.flags.map((f) => [f.seq, f.meta.uid, f.meta.flags]),
      [[3, 3, ['\\Seen']]],
    );
    // Then the expunge, with the number the client holds; nothing else is left to tell.
    const after = v.untold(true);
    assert.deepEqual(after.expunged, [{ seq: 2, uid: 2 }]);
    assert.equal(after.exists, undefined);
    assert.deepEqual([v.exists, v.seqOf(3), v.seqOf(7)], [4, 2, 4]);
    assert.deepEqual(v.untold(true), { expunged: [], flags: [] });
  });

  it("keeps the session's own change untold, and an older state does not replace a newer one", () => {
    const { metas, view: v } = view([1, 2]);
    v.own({ ...v.get(1)!, flags: ['\\Flagged'], modseq: 20 });
    v.update([metas.of(state(1, 15, ['\\Seen']))], [], 20);
    assert.deepEqual(v.get(1)!.flags, ['\\Flagged']);
    assert.deepEqual(v.untold(true), { expunged: [], flags: [] });
    // A message below the highest uid that the view never had is not numbered (uids only grow).
    v.update([metas.of(state(0, 21))], [], 21);
    assert.equal(v.exists, 2);
  });

  it('tells expunges from the highest number down', () => {
    const { view: v } = view([1, 2, 3, 4]);
    v.update([], [2, 4], 11);
    assert.deepEqual(v.untold(true).expunged, [
      { seq: 4, uid: 4 },
      { seq: 2, uid: 2 },
    ]);
  });
});

describe('MessageMetas', () => {
  it("shares a message's state among the views of a folder, and flag lists among messages", () => {
    const metas = new MessageMetas();
    const table = metas.folder('a@example.test', 'F1');
    assert.equal(metas.folder('a@example.test', 'F1'), table, 'one table per folder while it is held');
    assert.notEqual(metas.folder('b@example.test', 'F1'), table);
    const one = new MailboxView([table.of(state(1, 5, ['\\Seen'])), table.of(state(2, 6, ['\\Seen']))], 6);
    const two = new MailboxView([table.of(state(1, 5, ['\\Seen'])), table.of(state(2, 6, ['\\Seen']))], 6);
    assert.equal(one.get(1), two.get(1), 'the same state is one object');
    assert.equal(one.get(1)!.flags, one.get(2)!.flags, 'the same flags are one list');
    // A newer state is a new object, and the one later views share.
    const newer = table.of(state(1, 7, ['\\Seen', '\\Flagged']));
    assert.notEqual(newer, one.get(1));
    assert.equal(table.of(state(1, 7, ['\\Seen', '\\Flagged'])), newer);
    assert.equal(one.get(1)!.modseq, 5, 'a view keeps what it holds until it takes in the change');
    // An expunged message is not kept for views to come.
    table.forget([2]);
    assert.notEqual(table.of(state(2, 6, ['\\Seen'])), one.get(2));
  });
});
