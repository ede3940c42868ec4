import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MailError } from '@mailgrid/core';
import { QueueStore } from '@mailgrid/queue';
import { LmdbMailStore } from '@mailgrid/store';
import { dataDirWith, eventually, freePort, ImapTranscript, MailboxProbe, mountTmpfs, sendMail, startNode, type NodeHandle } from '@mailgrid/testing';

// Full disks, on real small disks (tmpfs; tests run as root in CI): 4xx only (IMAP: a NO),
// nothing acknowledged lost, the process alive, service back once space returns.

const KB = 1024;
const MB = 1024 * KB;

/** A message of about `size` bytes, CRLF lines, with an id to find it by. */
const message = (id: string, size: number) => `Subject: ${id}\r\nX-Test-Id: ${id}\r\n\r\n${('x'.repeat(998) + '\r\n').repeat(Math.ceil(size / 1000))}`;

/** Sends `count` messages to one account (`parallel` at a time); the ids that got a 250, and every reply. */
async function sendMany(node: NodeHandle, to: string, prefix: string, count: number, size: number, parallel = 1) {
  const acked: string[] = [];
  const replies: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) {
        const id = `${prefix}-${next++}`;
        const reply = await sendMail(node.smtpPort, { from: 'load@sender.test', to: [to], data: message(id, size) });
        replies.push(reply);
        if (reply.startsWith('250')) acked.push(id);
      }
    }),
  );
  return { acked, replies };
}

/** How many times each X-Test-Id is stored in an account. */
async function storedIds(mailbox: MailboxProbe, account: string): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  for (const m of await mailbox.list(account)) {
    const id = /X-Test-Id: (\S+)/.exec((await mailbox.fetch(account, m.uid)).toString())?.[1];
    if (id) seen.set(id, (seen.get(id) ?? 0) + 1);
  }
  return seen;
}

const queueEmpty = (node: NodeHandle) =>
  eventually('the queue drained', async () => (JSON.parse((await node.cli('queue', 'list', '--json')).stdout).length === 0 ? true : undefined), 30_000);

async function withAccount(node: NodeHandle): Promise<MailboxProbe> {
  assert.equal((await node.cli('domain', 'add', 'example.test')).code, 0);
  assert.equal((await node.cli('account', 'add', 'alice@example.test')).code, 0);
  return new MailboxProbe(`127.0.0.1:${node.grpcPort}`);
}

describe('a full disk never crashes a node or answers falsely', () => {
  it('the mail store and the queue reject writes with 451 4.3.0 on a full disk, leave no unhandled rejection, and write again once space returns', async () => {
    const disk = mountTmpfs('4m');
    const unhandled: unknown[] = [];
    const collect = (err: unknown) => unhandled.push(err);
    process.on('unhandledRejection', collect);
    const store = new LmdbMailStore(join(disk.path, 'store'));
    const queue = new QueueStore(join(disk.path, 'queue'));
    let closed = false;
    const big = Buffer.alloc(600 * KB, 0x61);
    const append = (key: string, body = big) => store.append({ body, receivedAt: Date.now(), recipients: [{ account: 'a@x.test', idempotencyKey: key }] });
    const enqueue = (id: string) =>
      queue.enqueue({ message: { id, mailFrom: '', receivedAt: 1, size: big.length, origin: 't' }, body: big, recipients: [{ address: 'b@y.test', route: 'relay', queuedAt: 1, nextAttemptAt: 1 }] });
    try {
      await append('before');
      disk.fill(64 * KB);
      for (let round = 0; round < 3; round++) {
        const results = await Promise.allSettled([append(`big-${round}`), append(`small-${round}`, Buffer.from('s\r\n')), enqueue(`q-${round}`)]);
        for (const r of results) {
          assert.equal(r.status, 'rejected');
          assert.ok(MailError.is(r.reason) && r.reason.code === 'STORAGE_FAILED' && r.reason.reply.code === 451, String(r.reason));
        }
      }
      disk.empty();
      assert.equal((await append('after'))[0].duplicate, false);
      await enqueue('q-after');
      await queue.flushed();
      assert.deepEqual(store.list('a@x.test').length, 2, 'what was refused was not stored');
      // Closed, neither has a write under way; a rejection left unhandled is reported by the end of the turn it happened in.
      closed = true;
      await store.close();
      await queue.close();
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(unhandled, [], 'no unhandled rejection');
    } finally {
      process.off('unhandledRejection', collect);
      if (!closed) {
        await store.close();
        await queue.close();
      }
      disk.unmount();
    }
  });

  it('a backend whose store disk fills keeps running; what it refuses is queued and delivered once space returns', async () => {
    const disk = mountTmpfs('16m');
    const node = await startNode({
      dataDir: dataDirWith(disk, 'store'),
      // No floor: this is about the disk itself running out (ENOSPC in the backend's writes).
      env: { MAILGRID_BACKEND_MIN_FREE_BYTES: '0', MAILGRID_QUEUE_MIN_RETRY_MS: '300', MAILGRID_QUEUE_MAX_RETRY_MS: '600' },
    });
    const mailbox = await withAccount(node);
    try {
      disk.fill(300 * KB);
      const { acked, replies } = await sendMany(node, 'alice@example.test', 'enospc', 12, 100 * KB, 3);
      assert.deepEqual(replies.filter((r) => !/^(250|4\d\d) /.test(r)), [], 'stored, queued or 4xx: never a 5xx');
      assert.ok(replies.some((r) => /^250 2\.0\.0 Ok: queued as /.test(r)), 'the frontend queued what the full backend refused');
      assert.equal(node.process.exitCode, null, 'the node is still running');
      disk.empty();
      await queueEmpty(node);
      const seen = await storedIds(mailbox, 'alice@example.test');
      assert.deepEqual(acked.filter((id) => seen.get(id) !== 1), [], 'every acknowledged message stored exactly once');
      assert.match(await sendMail(node.smtpPort, { to: ['alice@example.test'], data: message('back', 10 * KB) }), /^250 2\.0\.0 Ok: stored as /, 'service is back');
    } finally {
      mailbox.close();
      assert.equal(await node.stop(), 0, 'drains and exits cleanly');
      disk.unmount();
    }
  });

  it('an IMAP APPEND to a full disk gets NO [SERVERBUG], a MULTIAPPEND keeps none of its messages, the session goes on, and APPEND works once space returns', async () => {
    const disk = mountTmpfs('16m');
    // No floor: the disk itself runs out under the APPEND (ENOSPC in the backend's write).
    const node = await startNode({ dataDir: dataDirWith(disk, 'store'), env: { MAILGRID_BACKEND_MIN_FREE_BYTES: '0' } });
    const mailbox = await withAccount(node);
    const account = 'alice@example.test';
    assert.equal((await node.cliInput('secret\n', 'account', 'passwd', account)).code, 0);
    const imap = await ImapTranscript.open(node.ports.imaps, { tls: true });
    const append = (...messages: string[]) => imap.run(`APPEND INBOX ${messages.map((m) => `{${m.length}+}\r\n${m}`).join(' ')}`, null);
    try {
      await imap.login(account, 'secret');
      assert.match((await append(message('before', KB))).tagged, /^OK /);
      disk.fill(64 * KB);
      const big = message('big', 300 * KB);
      assert.match((await append(big)).tagged, /^NO \[SERVERBUG\] /);
      // A MULTIAPPEND whose first message fits and second does not: the first is not kept either.
      assert.match((await append(message('fits', 2 * KB), big)).tagged, /^NO \[SERVERBUG\] /);
      await imap.run('NOOP');
      assert.deepEqual((await imap.run('STATUS INBOX (MESSAGES)')).untagged, ['STATUS INBOX (MESSAGES 1)']);
      assert.deepEqual([...(await storedIds(mailbox, account))], [['before', 1]], 'nothing of the refused APPENDs stored');
      assert.equal(node.process.exitCode, null, 'the node is still running');
      disk.empty();
      // Uid 2 went to the first message of the MULTIAPPEND, written and taken back.
      assert.match((await append(message('after', 8 * KB), big)).tagged, /^OK \[APPENDUID \d+ 3:4\] /);
      assert.deepEqual([...(await storedIds(mailbox, account))].sort(), [['after', 1], ['before', 1], ['big', 1]]);
    } finally {
      imap.close();
      mailbox.close();
      assert.equal(await node.stop(), 0, 'drains and exits cleanly');
      disk.unmount();
    }
  });

  it('a backend keeps its store disk above backend.minFreeBytes: past the floor deliveries are queued, never stored, and an IMAP APPEND gets NO [UNAVAILABLE]', async () => {
    const disk = mountTmpfs('16m');
    const node = await startNode({
      dataDir: dataDirWith(disk, 'store'),
      env: { MAILGRID_BACKEND_MIN_FREE_BYTES: String(4 * MB), MAILGRID_QUEUE_MIN_RETRY_MS: '300', MAILGRID_QUEUE_MAX_RETRY_MS: '600' },
    });
    const mailbox = await withAccount(node);
    try {
      disk.fill(5 * MB);
      const { acked, replies } = await sendMany(node, 'alice@example.test', 'floor', 12, 200 * KB, 3);
      assert.deepEqual(replies.filter((r) => !r.startsWith('250')), [], 'every message acknowledged: stored, or queued');
      assert.ok(replies.some((r) => r.includes('queued as')), 'some were queued at the floor');
      assert.ok(disk.free() >= 4 * MB - 3 * 200 * KB, `the disk stayed near its floor (${disk.free()} bytes free)`);
      // IMAP's writes keep the same floor: an APPEND past it is a passing refusal, and stores nothing.
      assert.equal((await node.cliInput('secret\n', 'account', 'passwd', 'alice@example.test')).code, 0);
      const imap = await ImapTranscript.open(node.ports.imaps, { tls: true });
      try {
        await imap.login('alice@example.test', 'secret');
        const big = message('append-floor', 3 * MB);
        assert.match((await imap.run(`APPEND INBOX {${big.length}+}\r\n${big}`, null)).tagged, /^NO \[UNAVAILABLE\] /);
      } finally {
        imap.close();
      }
      disk.empty();
      await queueEmpty(node);
      const seen = await storedIds(mailbox, 'alice@example.test');
      assert.deepEqual(acked.filter((id) => seen.get(id) !== 1), [], 'every acknowledged message stored exactly once');
      assert.equal(seen.get('append-floor'), undefined, 'the refused APPEND stored nothing');
    } finally {
      mailbox.close();
      await node.stop();
      disk.unmount();
    }
  });

  it("a burst cannot run the queue's disk below queue.minFreeBytes: past it, DATA gets 452 4.3.1", async () => {
    const disk = mountTmpfs('16m');
    const node = await startNode({
      dataDir: dataDirWith(disk, 'queue'),
      env: {
        MAILGRID_SMTP_TRUSTED_NETWORKS: '127.0.0.1',
        // Nothing listens there: relayed mail stays queued.
        MAILGRID_RELAY_SMARTHOST: `127.0.0.1:${await freePort()}`,
        MAILGRID_QUEUE_MIN_FREE_BYTES: String(4 * MB),
      },
    });
    try {
      disk.fill(6 * MB);
      const { replies } = await sendMany(node, 'far@remote.test', 'burst', 10, 512 * KB, 10);
      assert.ok(replies.filter((r) => r.startsWith('250')).length >= 2, 'what fits is taken');
      assert.ok(replies.some((r) => /^452 4\.3\.1 /.test(r)), 'the rest is refused at DATA');
      assert.deepEqual(replies.filter((r) => !/^(250|452 4\.3\.1) /.test(r)), []);
      assert.ok(disk.free() >= 4 * MB - 512 * KB, `the burst stopped at the floor (${disk.free()} bytes free)`);
      assert.equal(node.process.exitCode, null);
    } finally {
      await node.stop();
      disk.unmount();
    }
  });

  it('a node whose log disk is full keeps serving', async () => {
    const disk = mountTmpfs('1m');
    // One page left: the node's log fills it, and its writes fail from then on.
    disk.fill(4 * KB);
    const room = disk.free();
    const logFile = join(disk.path, 'node.log');
    const node = await startNode({ logFile });
    const mailbox = await withAccount(node);
    let sent = 0;
    /** One message, acknowledged; its queue id. */
    const send = async () => {
      const reply = await sendMail(node.smtpPort, { to: ['alice@example.test'], data: message(`log-${sent++}`, 4 * KB) });
      assert.match(reply, /^250 /);
      return /as (\S+)/.exec(reply)![1];
    };
    try {
      // Mail until the node's log has taken all the room (a write that does not fit is cut short, and the rest fails).
      const deadline = Date.now() + 30_000;
      while (statSync(logFile).size < room) {
        assert.ok(Date.now() < deadline, `the node's log never filled its disk (${statSync(logFile).size} of ${room} bytes)`);
        await send();
      }
      const later: string[] = [];
      for (let i = 0; i < 5; i++) later.push(await send());
      assert.equal((await mailbox.list('alice@example.test')).length, sent);
      // Space back: the lines it could not write come out, so it went on through the failing writes.
      disk.empty();
      await eventually('the lines logged while the disk was full written', async () => {
        const ids = new Set(readFileSync(logFile, 'utf8').split('\n').flatMap((l) => /"messageId":"([^"]+)"/.exec(l)?.[1] ?? []));
        return later.every((id) => ids.has(id)) ? true : undefined;
      });
      assert.equal(node.process.exitCode, null, 'still running');
    } finally {
      mailbox.close();
      assert.equal(await node.stop(), 0, 'drains and exits cleanly');
      disk.unmount();
    }
  });
});
