import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { clusterFolder, eventually, nodeLog, Pop3Transcript, pyClient, runCli, startSink } from '@mailgrid/testing';

// Mail access in a cluster of real processes (etcd, HAProxy, 2 frontends, one group of a
// primary and a replica): logins checked by the account's group with hashes imported from
// Dovecot, a lockout shared by the frontends through etcd, and a POP3 session that ends
// cleanly when its group fails over, the next one served by the new primary with the same
// UIDLs. Clients are Python's poplib and smtplib, and transcripts of our own.

// `doveadm pw -s BLF-CRYPT -p secret` and `-s SHA512-CRYPT`.
const IMPORTED = [
  { address: 'dana@example.test', group: 'g1', passwordHash: '{BLF-CRYPT}$2y$05$ssvANxgzi6kxrnAT.LlkPOGtamuH6VkzZecX6nHX8UZCW04/JIn8u' },
  { address: 'eve@example.test', group: 'g1', passwordHash: '{SHA512-CRYPT}$6$YubDpBpZBFX7V464$2xc4zmX30wKll8d9HW2YipE3trYNZpFakijU8aLmv5zSpXBXlvb3YXh.kPDqaz7IF0D1IH/bCSUZTG28qgpK20' },
];

describe('access in a cluster: logins at the owning group, a shared lockout, POP3 across a failover', () => {
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

  it('a POP3 session ends cleanly when its group fails over; the next one works on the new primary with the same UIDLs', async () => {
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
  });
});
