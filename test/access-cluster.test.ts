import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually, nodeLog, repoRoot, runCli, sleep, startSink, clusterFolder } from '@mailgrid/testing';

// Mail access in a cluster of real processes (etcd, HAProxy, 2 frontends, one group of a
// primary and a replica): logins checked by the account's group with hashes imported from
// Dovecot, a lockout shared by the frontends through etcd, and a POP3 session that ends
// cleanly when its group fails over, the next one served by the new primary with the same
// UIDLs. Clients are Python's poplib and smtplib.

const CLIENT = join(repoRoot, 'test', 'clients', 'mail_client.py');
type Result = unknown & { error?: string };
const py = (steps: (string | number)[][]): Promise<Result[]> =>
  new Promise((resolve, reject) =>
    execFile('python3', [CLIENT, JSON.stringify(steps)], { timeout: 150_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout)))),
  );


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
    for (const { address } of IMPORTED) {
      const r = await py([['pop', balancer().pop3s, 'implicit'], ['user', address], ['pass', 'secret'], ['quit']]);
      assert.match(String(r[2]), /^\+OK Logged in/, address);
    }
    // Checked once in their own scheme, then kept as scrypt; the password still works.
    await eventually('the imported hashes replaced', async () => (nodeLog(state().dir, taker).filter((l) => l.event === 'password.rehashed').length === 2 ? true : undefined), 30_000);
    const again = await py([['pop', balancer().pop3s, 'implicit'], ['user', 'eve@example.test'], ['pass', 'secret'], ['quit']]);
    assert.match(String(again[2]), /^\+OK Logged in/);
    // And an authenticated submission through the balancer reaches the outside.
    const sent = await py([['smtp', balancer().submission, 'starttls'], ['login', 'dana@example.test', 'secret'], ['send', 'dana@example.test', 'out@outside.test', 'Subject: via the cluster\r\n\r\nhello\r\n']]);
    assert.deepEqual(sent[2], {});
    await eventually('the sink has it', async () => sink.messages.find((m) => /Subject: via the cluster/.test(m.raw.toString())), 30_000);
  });

  it('failures on one frontend lock the client address out on the other; another address still logs in', async () => {
    const attacker = '127.0.0.5';
    // Straight to fe-1 from an address that is not the balancer's (so no PROXY header is expected).
    const guesses = await py([['pop', proc('fe-1').ports.pop3s, 'implicit', attacker], ...Array.from({ length: 5 }, () => [['user', 'eve@example.test'], ['pass', 'guess']]).flat()]);
    assert.equal(guesses.filter((r) => /Authentication failed|Too many/.test(String((r as Result).error))).length, 5);
    await eventually('locked out on fe-2 too', async () => {
      const r = await py([['pop', proc('fe-2').ports.pop3s, 'implicit', attacker], ['user', 'eve@example.test'], ['pass', 'secret']]);
      return /Too many failed authentications from your address/.test(String((r[2] as Result).error)) ? true : undefined;
    }, 15_000);
    const other = await py([['pop', proc('fe-2').ports.pop3s, 'implicit', '127.0.0.6'], ['user', 'eve@example.test'], ['pass', 'secret'], ['quit']]);
    assert.match(String(other[2]), /^\+OK Logged in/);
  });

  it('a POP3 session ends cleanly when its group fails over; the next one works on the new primary with the same UIDLs', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await py([['smtp', balancer().smtp, 'plain'], ['send', 'someone@outside.test', 'dana@example.test', `Subject: failover ${i}\r\n\r\nmessage ${i}\r\n`]]);
      assert.deepEqual(r[1], {});
    }
    const ready = join(cwd, 'ready');
    const go = join(cwd, 'go');
    const session = py([['pop', balancer().pop3s, 'implicit'], ['user', 'dana@example.test'], ['pass', 'secret'], ['uidl'], ['dele', 1], ['signal', ready], ['wait_file', go], ['noop'], ['stat'], ['quit']]);
    await eventually('the session is logged in', async () => (existsSync(ready) ? true : undefined), 60_000);
    const old = await primary();
    process.kill(proc(old).pid, 'SIGKILL');
    await eventually('a new primary', async () => ((await primary()) !== old && (await primary()) !== '-' ? true : undefined), 30_000);
    await sleep(1_000);
    writeFileSync(go, '');
    const r = await session;
    assert.match(String(r[2]), /^\+OK Logged in, 3 messages/);
    const uidls = r[3] as string[];
    assert.equal(uidls.length, 3);
    // The session is over: an -ERR with a reason, or the connection closed; nothing was deleted.
    assert.ok([r[7], r[8], r[9]].some((x) => (x as Result).error), `the session ended: ${JSON.stringify(r.slice(7))}`);
    const next = await eventually('a new session at the new primary', async () => {
      const s = await py([['pop', balancer().pop3s, 'implicit'], ['user', 'dana@example.test'], ['pass', 'secret'], ['uidl'], ['quit']]);
      return /^\+OK Logged in/.test(String(s[2])) ? s : undefined;
    }, 30_000);
    assert.deepEqual(next[3], uidls, 'the same messages with the same UIDLs, the DELE of the broken session undone');
  });
});
