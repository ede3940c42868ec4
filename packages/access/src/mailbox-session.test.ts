import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { createLogger } from '@mailgrid/core';
import { proto } from '@mailgrid/protocol';
import { MailboxAccess, type MailboxSession } from './mailbox-session.js';

type Stream = grpc.ServerWritableStream<{ account: string; holder?: string; shared?: boolean }, unknown>;

/**
 * A frontend's way to the accounts' primaries, against a real gRPC server on loopback that
 * stands in for one primary: it counts the Holds, Watches and Selects it is asked, and can
 * end them or send a change. The sessions of one account share one shared hold, and the
 * looks that a change of the feed wakes share one Select.
 */
describe('MailboxAccess', () => {
  let server: grpc.Server;
  let address = '';
  const epoch = 3;
  /** Holds standing at the primary, by holder. */
  const holds = new Map<string, Stream>();
  let holdsAsked = 0;
  const watches: Stream[] = [];
  let selects = 0;
  /** Selects wait for this before they answer (a look under way). */
  let answer: Promise<void> = Promise.resolve();
  let access: MailboxAccess;
  const log = createLogger({ level: 'silent' });

  before(async () => {
    server = new grpc.Server();
    server.addService(proto.Mailbox.service, {
      Hold: (call: Stream) => {
        holdsAsked++;
        holds.set(call.request.holder!, call);
        call.on('cancelled', () => holds.delete(call.request.holder!));
        call.write({ held: true });
      },
      Release: (call: grpc.ServerUnaryCall<{ holder: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        holds.get(call.request.holder)?.end();
        holds.delete(call.request.holder);
        cb(null, { released: true });
      },
      Watch: (call: Stream) => void watches.push(call),
      Select: (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        selects++;
        void answer.then(() => cb(null, { folder: { name: 'INBOX', uidValidity: 1, highestModseq: selects }, messages: [], vanished: [] }));
      },
    } as never);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    address = `127.0.0.1:${port}`;
  });
  after(() => {
    access.close();
    server.forceShutdown();
  });

  beforeEach(() => {
    access?.close();
    access = new MailboxAccess({
      router: { route: async (a: string) => ({ kind: 'local', address: a, account: a, group: 'g1', revision: 1 }) } as never,
      groups: { primary: async () => ({ address, epoch }) } as never,
      timeoutMs: () => 2_000,
      node: 'fe-1',
      log,
    });
    holdsAsked = selects = 0;
    holds.clear();
  });

  const open = (account: string, session: string, mode: 'shared' | 'exclusive' = 'shared') => access.open(account, { mode, session, log });
  const until = async (what: string, ok: () => boolean) => {
    for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(ok(), what);
  };

  it('holds an account once for all of its shared sessions, and lets go with the last', async () => {
    const sessions = await Promise.all(['s1', 's2', 's3'].map((s) => open('a@example.test', s)));
    const other = await open('b@example.test', 's4');
    assert.equal(holdsAsked, 2, 'one hold per account');
    await sessions[0].close();
    await sessions[1].close();
    assert.equal(holds.size, 2, 'held while a session of it is left');
    await sessions[2].close();
    assert.equal(holds.size, 1, 'let go with the last session');
    // The next session takes a hold of its own.
    const again = await open('a@example.test', 's5');
    assert.equal(holdsAsked, 3);
    await Promise.all([again.close(), other.close()]);
    assert.equal(holds.size, 0);
  });

  it('gives each exclusive session a hold of its own', async () => {
    const a = await open('c@example.test', 'p1', 'exclusive');
    const b = await open('d@example.test', 'p2', 'exclusive');
    assert.equal(holdsAsked, 2);
    await Promise.all([a.close(), b.close()]);
  });

  it('loses every session on a hold the primary ends; the next session holds anew', async () => {
    const sessions = await Promise.all(['s1', 's2'].map((s) => open('e@example.test', s)));
    let lost = 0;
    for (const s of sessions) void s.lost.then(() => lost++);
    const [holder] = [...holds.keys()];
    holds.get(holder)!.end();
    await until('both sessions lost', () => lost === 2);
    await open('e@example.test', 's3').then((s) => s.close());
    assert.equal(holdsAsked, 2, 'a lost hold is not joined');
    await Promise.all(sessions.map((s) => s.close()));
  });

  it("shares one look among the sessions a feed change wakes, and looks again after the feed's next change", async () => {
    const sessions: MailboxSession[] = await Promise.all(['s1', 's2', 's3'].map((s) => open('f@example.test', s)));
    const woken: number[] = [];
    for (const [i, s] of sessions.entries()) s.listen(0, { change: () => woken.push(i), ended: () => undefined });
    await until('the feed is open', () => watches.length > 0);
    const watch = watches[watches.length - 1];
    assert.equal(watches.length, 1, 'one feed for the account');
    watch.write({ folder: 'INBOX', modseq: 5 });
    await until('every session heard the change', () => woken.length === 3);
    let release!: () => void;
    answer = new Promise((r) => (release = r));
    const first = sessions.map((s) => s.changesAfterFeed('INBOX', 4));
    // Another folder, or another mod-sequence, is another look.
    const elsewhere = sessions[0].changesAfterFeed('Sent', 4);
    await until('the looks reached the primary', () => selects === 2);
    // A change while they are under way: a look that starts now must not take their answer.
    watch.write({ folder: 'INBOX', modseq: 6 });
    await until('every session heard the second change', () => woken.length === 6);
    const second = sessions.map((s) => s.changesAfterFeed('INBOX', 4));
    await until('the second looks reached the primary', () => selects === 3);
    release();
    const answers = await Promise.all([...first, ...second, elsewhere]);
    assert.equal(new Set(answers.slice(0, 3)).size, 1, 'one answer for the first three');
    assert.equal(new Set(answers.slice(3, 6)).size, 1, 'one answer for the next three');
    assert.notEqual(answers[0], answers[3]);
    assert.equal(selects, 3);
    answer = Promise.resolve();
    await Promise.all(sessions.map((s) => s.close()));
  });

  it('looks once per session when no feed of the account is open here', async () => {
    const s = await open('g@example.test', 's1');
    await Promise.all([s.changesAfterFeed('INBOX', 1), s.changesAfterFeed('INBOX', 1)]);
    assert.equal(selects, 2);
    await s.close();
  });
});
