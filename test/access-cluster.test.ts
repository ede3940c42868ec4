import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { clusterFolder, eventually, ImapTranscript, nodeLog, Pop3Transcript, pyClient, runCli, sendMail, startSink } from '@mailgrid/testing';

// Mail access in a cluster of real processes (etcd, HAProxy, 2 frontends, one group of a
// primary and a replica): logins checked by the account's group with hashes imported from
// Dovecot, a lockout shared by the frontends through etcd, IMAP sessions of one account on
// both frontends (IDLE woken by mail that came through the other, concurrent STORE,
// EXPUNGE and MOVE seen alike), and POP3 and IMAP sessions that end cleanly when their
// group fails over, the next ones served by the new primary with the same UIDLs, and the
// same UIDVALIDITY, uids and mod-sequences. Clients are Python's poplib and smtplib, and
// transcripts of our own.

// `doveadm pw -s BLF-CRYPT -p secret` and `-s SHA512-CRYPT`.
const IMPORTED = [
  { address: 'dana@example.test', group: 'g1', passwordHash: '{BLF-CRYPT}$2y$05$ssvANxgzi6kxrnAT.LlkPOGtamuH6VkzZecX6nHX8UZCW04/JIn8u' },
  { address: 'eve@example.test', group: 'g1', passwordHash: '{SHA512-CRYPT}$6$YubDpBpZBFX7V464$2xc4zmX30wKll8d9HW2YipE3trYNZpFakijU8aLmv5zSpXBXlvb3YXh.kPDqaz7IF0D1IH/bCSUZTG28qgpK20' },
];

describe('access in a cluster: logins at the owning group, a shared lockout, IMAP on two frontends, POP3 and IMAP across a failover', () => {
  const { cwd, cli, ok, state, proc } = clusterFolder('access-cluster');
  const balancer = () => state().processes.find((p) => p.role === 'haproxy')!.ports;
  const primary = async () => (JSON.parse((await ok('group', 'list', '--json')).stdout) as { primary: string }[])[0].primary;
  let sink: Awaited<ReturnType<typeof startSink>>;

  before(async () => {
    sink = await startSink();
    const env = { MAILGRID_AUTH_FAIL_DELAY_MS: '100', MAILGRID_RELAY_SMARTHOST: `127.0.0.1:${sink.port}`, MAILGRID_QUEUE_MIN_RETRY_MS: '500' };
    const up = await runCli(['cluster', 'up', '--frontends', '2', '--groups', '1', '--replicas', '1'], env, cwd);
    assert.equal(up.code, 0, up.stderr);
    await ok('domain', 'add', 'example.test');
    const file = join(cwd, 'accounts.jsonl');
    writeFileSync(file, IMPORTED.map((a) => JSON.stringify(a)).join('\n') + '\n');
    await ok('account', 'import', file);
  });
  after(async () => {
    await cli('cluster', 'down');
    await sink?.close();
  });

  it("imported Dovecot hashes (bcrypt, SHA512-CRYPT) log in through the balancer, checked by the account's group", async () => {
    // The group's primary takes the hashes from etcd into its store (replicated), then logins work.
    const taker = await primary();
    await eventually('the hashes taken in', async () => (nodeLog(state().dir, taker).some((l) => l.event === 'password.imported' && l.accounts === 2) ? true : undefined), 30_000);
    const popLogin = (address: string) =>
      pyClient([
        ['session', 'pop', balancer().pop3s, 'implicit'],
        ['user', 'user', address],
        ['pass', 'pass', 'secret'],
        ['quit', 'quit'],
      ]);
    for (const { address } of IMPORTED) assert.match(String((await popLogin(address)).pass), /^\+OK Logged in/, address);
    // Checked once in their own scheme, then kept as scrypt; the password still works.
    await eventually('the imported hashes replaced', async () => (nodeLog(state().dir, taker).filter((l) => l.event === 'password.rehashed').length === 2 ? true : undefined), 30_000);
    assert.match(String((await popLogin('eve@example.test')).pass), /^\+OK Logged in/);
    // And an authenticated submission through the balancer reaches the outside.
    const sent = await pyClient([
      ['session', 'smtp', balancer().submission, 'starttls'],
      ['login', 'login', 'dana@example.test', 'secret'],
      ['send', 'send', 'dana@example.test', 'out@outside.test', 'Subject: via the cluster\r\n\r\nhello\r\n'],
    ]);
    assert.deepEqual(sent.send, {});
    await eventually('the sink has it', async () => sink.messages.find((m) => /Subject: via the cluster/.test(m.raw.toString())), 30_000);
  });

  it('failures on one frontend lock the client address out on the other; another address still logs in', async () => {
    const attacker = '127.0.0.5';
    /** A POP3S session straight to a frontend from `from` (not the balancer's address, so no PROXY header is expected). */
    const session = async (fe: string, from: string) => {
      const pop = await Pop3Transcript.open(proc(fe).ports.pop3s, { tls: true, localAddress: from });
      await pop.expect('+OK');
      return pop;
    };
    const guesses = await session('fe-1', attacker);
    for (let i = 1; i < 5; i++) await guesses.login('eve@example.test', 'guess', '-ERR [AUTH] Authentication failed');
    await guesses.login('eve@example.test', 'guess', '-ERR [AUTH] Too many failed authentications, closing connection');
    guesses.close();
    await eventually(
      'locked out on fe-2 too',
      async () => {
        const pop = await session('fe-2', attacker);
        try {
          return /Too many failed authentications from your address/.test(await pop.login('eve@example.test', 'secret', '')) ? true : undefined;
        } finally {
          pop.close();
        }
      },
      15_000,
    );
    const other = await session('fe-2', '127.0.0.6');
    try {
      await other.login('eve@example.test', 'secret', '+OK Logged in');
    } finally {
      other.close();
    }
  });

  /** An IMAP session straight to a frontend from `from` (not the balancer's address: no PROXY header), logged in as eve. */
  const imap = async (fe: string, from: string, qresync = false) => {
    const s = await ImapTranscript.open(proc(fe).ports.imaps, { tls: true, localAddress: from });
    await s.login('eve@example.test', 'secret');
    if (qresync) await s.run('ENABLE QRESYNC');
    return s;
  };
  /** Mail for eve through one frontend (its PROXY header names an outside client). */
  const deliverVia = async (fe: string, subject: string) =>
    assert.match(await sendMail(proc(fe).ports.smtp, { to: ['eve@example.test'], data: `Subject: ${subject}\r\n\r\n${subject}\r\n`, proxy: 'PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n' }), /^250 /);

  it('IMAP: IDLE on one frontend wakes for mail delivered through the other', async () => {
    const a = await imap('fe-1', '127.0.0.7');
    const exists = Number(/^(\d+) EXISTS$/m.exec((await a.run('SELECT INBOX')).untagged.join('\n'))![1]);
    a.write('i1 IDLE\r\n');
    assert.match(await a.line(), /^\+ /);
    await deliverVia('fe-2', 'idle wake');
    assert.equal(await a.line(), `* ${exists + 1} EXISTS`);
    a.write('DONE\r\n');
    assert.match(await a.line(), /^i1 OK/);
    a.close();
  });

  it('IMAP: two sessions on two frontends doing STORE, EXPUNGE and MOVE at once agree after NOOP, and neither is shown a wrong message', async () => {
    for (let i = 1; i <= 10; i++) await deliverVia('fe-1', `concurrent ${i}`);
    const a = await imap('fe-1', '127.0.0.7');
    const b = await imap('fe-2', '127.0.0.8');
    /** What a client knows: its message numbers' uids, kept from the answers it was given (EXPUNGE renumbers). */
    const tracked = async (s: ImapTranscript) => {
      const view = ((await s.run('UID SEARCH ALL')).untagged[0].match(/\d+/g) ?? []).map(Number);
      const apply = (lines: string[], during: string) => {
        for (const l of lines) {
          const m = /^(\d+) EXPUNGE$/.exec(l);
          if (m) {
            assert.doesNotMatch(during, /^(FETCH|STORE|SEARCH) /, `EXPUNGE told during ${during}`);
            view.splice(Number(m[1]) - 1, 1);
          }
          // Every FETCH names a message by its number: it must be the uid the client holds there.
          const f = /^(\d+) FETCH \(.*UID (\d+)/.exec(l);
          if (f) assert.equal(view[Number(f[1]) - 1], Number(f[2]), `message ${f[1]} is uid ${view[Number(f[1]) - 1]} to the client, not ${f[2]} (${during})`);
        }
      };
      return {
        view,
        run: async (command: string) => {
          const r = await s.run(command, null);
          apply(r.untagged, command);
          return r;
        },
      };
    };
    await a.run('SELECT INBOX');
    await b.run('SELECT INBOX');
    const ta = await tracked(a);
    const tb = await tracked(b);
    const [u1, u2, u3, u4, u5, u6, u7] = ta.view;
    // Interleaved: each pair runs at once, on the two frontends.
    await Promise.all([ta.run(`UID STORE ${u1}:${u3} +FLAGS (\\Flagged)`), tb.run(`UID STORE ${u2},${u4} +FLAGS (\\Deleted)`)]);
    await Promise.all([ta.run('FETCH 1:* (UID FLAGS)'), tb.run('EXPUNGE')]);
    await Promise.all([ta.run(`UID MOVE ${u5} Archive`), tb.run('FETCH 1:* (UID FLAGS)')]);
    await Promise.all([ta.run(`STORE 1 +FLAGS (\\Seen)`), tb.run(`UID STORE ${u6}:${u7} -FLAGS (\\Seen)`)]);
    await Promise.all([ta.run('SEARCH ALL'), tb.run(`UID STORE ${u3} +FLAGS (\\Answered)`)]);
    await ta.run('NOOP');
    await tb.run('NOOP');
    const state = async (t: Awaited<ReturnType<typeof tracked>>) =>
      (await t.run('FETCH 1:* (UID FLAGS)')).untagged.map((l) => /^(\d+) FETCH \(UID (\d+) FLAGS \(([^)]*)\)/.exec(l)!.slice(1).join(' '));
    const seenByA = await state(ta);
    const seenByB = await state(tb);
    assert.deepEqual(seenByA, seenByB, 'the same messages, numbers and flags in both sessions');
    assert.equal(seenByA.length, ta.view.length);
    assert.deepEqual(ta.view, tb.view);
    for (const gone of [u2, u4, u5]) assert.ok(!ta.view.includes(gone), `uid ${gone} is gone`);
    assert.match(seenByA.find((l) => l.split(' ')[1] === String(u1))!, /\\Flagged/);
    a.close();
    b.close();
  });

  it('POP3 and IMAP sessions end cleanly when their group fails over; the next ones work on the new primary with the same UIDLs, UIDVALIDITY, uids and mod-sequences, VANISHED exact', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await pyClient([
        ['session', 'smtp', balancer().smtp, 'plain'],
        ['send', 'send', 'someone@outside.test', 'dana@example.test', `Subject: failover ${i}\r\n\r\nmessage ${i}\r\n`],
      ]);
      assert.deepEqual(r.send, {});
    }
    const pop = await Pop3Transcript.open(balancer().pop3s, { tls: true });
    await pop.expect('+OK');
    await pop.login('dana@example.test', 'secret', '+OK Logged in, 3 messages');
    const uidls = await pop.multi('UIDL');
    assert.equal(uidls.length, 3);
    await pop.send('DELE 1', '+OK');
    // And an IMAP client of eve's: the state it knows, then an expunge it saw.
    const imapBefore = await imap('fe-2', '127.0.0.8', true);
    const selected = (await imapBefore.run('SELECT INBOX')).untagged.join('\n');
    const uidValidity = Number(/UIDVALIDITY (\d+)/.exec(selected)![1]);
    const known = Number(/HIGHESTMODSEQ (\d+)/.exec(selected)![1]);
    const uids = ((await imapBefore.run('UID SEARCH ALL')).untagged[0].match(/\d+/g) ?? []).map(Number);
    const gone = uids[0];
    await imapBefore.run(`UID STORE ${gone} +FLAGS.SILENT (\\Deleted)`);
    assert.ok((await imapBefore.run(`UID EXPUNGE ${gone}`)).untagged.includes(`VANISHED ${gone}`));
    const acknowledged = Number(/HIGHESTMODSEQ (\d+)/.exec((await imapBefore.run('STATUS INBOX (HIGHESTMODSEQ)')).untagged.join())![1]);
    const old = await primary();
    process.kill(proc(old).pid, 'SIGKILL');
    await eventually('a new primary', async () => ((await primary()) !== old && (await primary()) !== '-' ? true : undefined), 30_000);
    // The session is told its mailbox server changed and is closed (a command it sends now gets no +OK).
    await pop.expect('-ERR [SYS/TEMP] Mailbox server changed, please reconnect');
    await pop.closed();
    const next = await eventually(
      'a new session at the new primary',
      async () => {
        const s = await Pop3Transcript.open(balancer().pop3s, { tls: true });
        try {
          await s.expect('+OK');
          if (!(await s.login('dana@example.test', 'secret', '')).startsWith('+OK Logged in')) return undefined;
          return await s.multi('UIDL');
        } finally {
          s.close();
        }
      },
      30_000,
    );
    assert.deepEqual(next, uidls, 'the same messages with the same UIDLs, the DELE of the broken session undone');

    // The IMAP session was told too; the next one, at the new primary, resynchronises exactly.
    assert.match(await imapBefore.line(), /^\* BYE \[UNAVAILABLE\]/);
    await imapBefore.closed();
    const after = await imap('fe-1', '127.0.0.7', true);
    const resync = (await after.run(`SELECT INBOX (QRESYNC (${uidValidity} ${known}))`)).untagged.join('\n');
    assert.equal(Number(/UIDVALIDITY (\d+)/.exec(resync)![1]), uidValidity, 'UIDVALIDITY kept');
    assert.ok(Number(/HIGHESTMODSEQ (\d+)/.exec(resync)![1]) >= acknowledged, 'HIGHESTMODSEQ never lower than what a client was told');
    assert.match(resync, new RegExp(`^VANISHED \\(EARLIER\\) ${gone}$`, 'm'), 'the expunge told exactly');
    await deliverVia('fe-1', 'after failover');
    const now = await eventually('the new message', async () => {
      const found = ((await after.run('UID SEARCH ALL')).untagged[0].match(/\d+/g) ?? []).map(Number);
      return found.length === uids.length ? found : undefined;
    });
    assert.ok(now[now.length - 1] > Math.max(...uids), 'a new uid, never one given before');
    after.close();
  });
});
