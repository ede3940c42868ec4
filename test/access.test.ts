import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createMailboxClient, MailboxCalls } from '@mailgrid/protocol';
import { eventually, repoRoot, sendMail, sleep, startNode, startSink, type NodeHandle } from '@mailgrid/testing';
import { connect } from 'node:net';

// Mail access on a single node, with independent clients: Python's poplib and smtplib,
// swaks and openssl s_client. Submission (STARTTLS, AUTH, the sender owned by the user),
// POP3 (STLS, byte-exact RETR, DELE at QUIT only, IN-USE), TLS (1.2 or later, certificates
// reloaded), failed logins (delay, lockout of the client address, not of the user).

const CLIENT = join(repoRoot, 'test', 'clients', 'mail_client.py');
type Step = (string | number)[];
type Result = unknown & { error?: string };

/** Runs steps through Python's poplib/smtplib (test/clients/mail_client.py): one result per step. */
function py(steps: Step[]): Promise<Result[]> {
  return new Promise((resolve, reject) =>
    execFile('python3', [CLIENT, JSON.stringify(steps)], { timeout: 90_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout)))),
  );
}

function run(cmd: string, args: string[], input = ''): { code: number; out: string } {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

const PASSWORD = 'correct horse';
const message = (id: string) => `From: alice@example.test\r\nTo: alice@example.test\r\nSubject: ${id}\r\nMessage-ID: <${id}@test>\r\n\r\n.a line that starts with a dot\r\n..two dots\r\nbody of ${id}\r\n`;

describe('access: submission, POP3 and TLS on a single node', () => {
  let node: NodeHandle;
  let sink: Awaited<ReturnType<typeof startSink>>;
  const cli = (...args: string[]) => node.cli(...args);
  /** `mailgrid account passwd`, the password on standard input as a script gives it. */
  const passwd = (who: string, input: string) =>
    spawnSync(process.execPath, [join(repoRoot, 'packages/cli/bin/mailgrid.js'), 'account', 'passwd', who], { input, env: { ...process.env, ...node.env }, encoding: 'utf8' });

  before(async () => {
    sink = await startSink();
    node = await startNode({
      env: {
        MAILGRID_RELAY_SMARTHOST: `127.0.0.1:${sink.port}`,
        MAILGRID_AUTH_FAIL_DELAY_MS: '100',
        MAILGRID_AUTH_LOCKOUT_MS: '600000',
        MAILGRID_QUEUE_MIN_RETRY_MS: '500',
      },
    });
    for (const args of [['domain', 'add', 'example.test'], ['account', 'add', 'alice@example.test'], ['account', 'add', 'bob@example.test'], ['alias', 'add', 'sales@example.test', 'alice@example.test']]) {
      const r = await cli(...args);
      assert.equal(r.code, 0, r.stderr);
    }
    for (const who of ['alice@example.test', 'bob@example.test']) {
      const empty = passwd(who, '');
      assert.equal(empty.status, 1);
      assert.match(empty.stderr, /the password is empty/);
      const set = passwd(who, `${PASSWORD}\n`);
      assert.equal(set.status, 0, set.stderr);
      assert.match(set.stdout, /password of .* set/);
    }
  });
  after(async () => {
    await node?.stop();
    await sink?.close();
  });

  it('submission: AUTH only after STARTTLS, mail only after AUTH, and only as one of the user\'s own addresses', async () => {
    const p = node.ports.submission;
    const [ehlo, authEarly, mailEarly, ehloTls, login, notOwned, unauthRelay] = await py([
      ['smtp', p, 'plain'],
      ['cmd', 'AUTH PLAIN ' + Buffer.from(`\0alice@example.test\0${PASSWORD}`).toString('base64')],
      ['cmd', 'MAIL FROM:<alice@example.test>'],
      ['starttls'],
      ['login', 'alice@example.test', PASSWORD],
      ['send', 'bob@example.test', 'bob@example.test', 'Subject: spoof\r\n\r\nx\r\n'],
      ['send', 'sales@example.test', 'someone@outside.test', 'Subject: as an alias\r\n\r\nx\r\n'],
    ]);
    assert.match(String((ehlo as [number, string])[1]), /STARTTLS/);
    assert.doesNotMatch(String((ehlo as [number, string])[1]), /AUTH/, 'no AUTH offered before TLS');
    assert.deepEqual(authEarly, [530, '5.7.0 Must issue a STARTTLS command first']);
    assert.deepEqual(mailEarly, [530, '5.7.0 Authentication required']);
    assert.equal((ehloTls as unknown[])[0], 220);
    assert.deepEqual(login, [235, '2.7.0 Authentication successful']);
    assert.match(String(notOwned.error), /^553 5\.7\.1 <bob@example\.test>: Sender address is not owned by alice@example\.test/);
    assert.deepEqual(unauthRelay, {}, 'an alias of the user may send to the outside');
  });

  it('swaks --auth --tls: a message to an outside address reaches the outside sink; the MX port offers no AUTH', async () => {
    const r = run('swaks', ['--server', `127.0.0.1:${node.ports.submission}`, '--tls', '--auth', 'LOGIN', '--auth-user', 'alice@example.test', '--auth-password', PASSWORD, '--from', 'alice@example.test', '--to', 'friend@outside.test', '--h-Subject', 'swaks-out']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /250 2\.0\.0 Ok: queued as/);
    const got = await eventually('the sink has it', async () => sink.messages.find((m) => /Subject: swaks-out/.test(m.raw.toString())), 20_000);
    assert.deepEqual([got.from, got.to], ['alice@example.test', ['friend@outside.test']]);
    assert.match(got.raw.toString(), /Subject: swaks-out/);
    assert.match(got.raw.toString(), /with ESMTPSA id/, 'Received names an authenticated TLS submission');
    // Port 25 without a configured certificate: neither STARTTLS nor AUTH, and no relay.
    const [ehlo25, relay25] = await py([['smtp', node.smtpPort, 'plain'], ['send', 'alice@example.test', 'friend@outside.test', 'Subject: x\r\n\r\nx\r\n']]);
    assert.doesNotMatch(String((ehlo25 as [number, string])[1]), /AUTH|STARTTLS/);
    assert.match(String(relay25.error), /^554 5\.7\.1/);
    // Implicit TLS submission (465's role).
    const [, login465] = await py([['smtp', node.ports.submissions, 'implicit'], ['login', 'bob@example.test', PASSWORD]]);
    assert.deepEqual(login465, [235, '2.7.0 Authentication successful']);
  });

  it('openssl s_client: STARTTLS on submission and STLS on POP3 with TLS 1.2 or later; TLS 1.1 is refused', async () => {
    const smtp = run('openssl', ['s_client', '-connect', `127.0.0.1:${node.ports.submission}`, '-starttls', 'smtp', '-crlf', '-ign_eof', '-tls1_2'], 'EHLO client.test\nQUIT\n');
    assert.match(smtp.out, /Protocol\s*: TLSv1\.2/);
    assert.match(smtp.out, /250-AUTH PLAIN LOGIN/);
    const pop = run('openssl', ['s_client', '-connect', `127.0.0.1:${node.ports.pop3}`, '-starttls', 'pop3', '-crlf', '-ign_eof'], 'CAPA\nQUIT\n');
    assert.match(pop.out, /Protocol\s*: TLSv1\.3/);
    assert.match(pop.out, /SASL PLAIN/);
    const old = run('openssl', ['s_client', '-connect', `127.0.0.1:${node.ports.pop3s}`, '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0'], 'QUIT\n');
    assert.notEqual(old.code, 0, 'TLS 1.1 handshake refused');
    assert.doesNotMatch(old.out, /\+OK .*POP3 ready/);
  });

  it('POP3: RETR gives the bytes sent; DELE takes effect only at QUIT; UIDLs stay; a second session gets IN-USE', async () => {
    const sent = message('pop-1');
    const [, , refused] = await py([['smtp', node.ports.submission, 'starttls'], ['login', 'alice@example.test', PASSWORD], ['send', 'alice@example.test', 'alice@example.test', sent]]);
    assert.deepEqual(refused, {});
    await eventually('stored', async () => ((await py([['pop', node.ports.pop3s, 'implicit'], ['user', 'alice@example.test'], ['pass', PASSWORD], ['stat'], ['quit']]))[3] as number[])[0] >= 1 || undefined);
    const p = node.ports.pop3;
    const first = await py([['pop', p, 'stls'], ['user', 'alice@example.test'], ['pass', PASSWORD], ['uidl'], ['retr', 1], ['pop', node.ports.pop3s, 'implicit'], ['user', 'alice@example.test'], ['pass', PASSWORD]]);
    assert.match(String(first[2]), /^\+OK/);
    const uidls = first[3] as string[];
    const retrieved = Buffer.from(first[4] as string, 'base64').toString('latin1');
    // What the client sent, byte for byte, after the trace fields the server adds on top (RFC 5321 §4.4).
    assert.equal(retrieved.replace(/^(?:(?:Return-Path|Received):[^\r]*\r\n(?:[ \t][^\r]*\r\n)*)+/, ''), sent);
    assert.equal((first[7] as Result).error, '-ERR [IN-USE] Mailbox is in use by another session');
    // The first session was only dropped by the script's end: nothing was deleted.
    const dropped = await py([['pop', p, 'stls'], ['user', 'alice@example.test'], ['pass', PASSWORD], ['dele', 1], ['drop']]);
    assert.match(String(dropped[3]), /^\+OK/);
    const again = await py([['pop', p, 'stls'], ['user', 'alice@example.test'], ['pass', PASSWORD], ['uidl'], ['dele', 1], ['stat'], ['quit']]);
    assert.deepEqual(again[3], uidls, 'still there after DELE and a dropped connection, with the same UIDL');
    assert.deepEqual(again[5], [uidls.length - 1, (again[5] as number[])[1]], 'STAT leaves out a marked message');
    assert.match(String(again[6]), /^\+OK Logging out, 1 messages deleted/);
    const gone = await py([['pop', p, 'stls'], ['user', 'alice@example.test'], ['pass', PASSWORD], ['uidl'], ['quit']]);
    assert.deepEqual(gone[3], uidls.slice(1), 'gone after DELE and QUIT');
  });

  it('POP3 refuses a login before STLS; an unknown user and a wrong password get the same answer', async () => {
    const r = await py([['pop', node.ports.pop3, 'plain'], ['capa'], ['user', 'alice@example.test'], ['quit'], ['pop', node.ports.pop3s, 'implicit', '127.0.0.9'], ['user', 'nobody@example.test'], ['pass', PASSWORD], ['user', 'alice@example.test'], ['pass', 'wrong']]);
    assert.ok((r[1] as string[]).includes('STLS') && !(r[1] as string[]).includes('USER'));
    assert.match(String((r[2] as Result).error), /^-ERR \[AUTH\] Plaintext authentication disallowed/);
    assert.equal((r[6] as Result).error, '-ERR [AUTH] Authentication failed');
    assert.equal((r[8] as Result).error, (r[6] as Result).error);
  });

  it('a changed password takes effect at once (the credential cache is keyed by the stored hash)', async () => {
    const login = (pw: string) => py([['pop', node.ports.pop3s, 'implicit', '127.0.0.10'], ['user', 'bob@example.test'], ['pass', pw], ['quit']]);
    assert.match(String((await login(PASSWORD))[2]), /^\+OK/);
    assert.match(String((await login(PASSWORD))[2]), /^\+OK/, 'again, from the cache');
    const set = passwd('bob@example.test', 'new secret\n');
    assert.equal(set.status, 0, set.stderr);
    assert.equal(((await login(PASSWORD))[2] as Result).error, '-ERR [AUTH] Authentication failed');
    assert.match(String((await login('new secret'))[2]), /^\+OK/);
    const metrics = await (await fetch(`http://127.0.0.1:${node.ports.http}/metrics`)).text();
    assert.match(metrics, /^mailgrid_auth_failures_total\{protocol="pop3",reason="credentials"\} [1-9]/m);
    // The second login came from the cache (the backend thread's answer is counted where /metrics is served).
    assert.match(metrics, /^mailgrid_auth_cache_lookups_total\{result="hit"\} [1-9]/m);
    assert.match(metrics, /^mailgrid_auth_cache_lookups_total\{result="miss"\} [1-9]/m);
  });

  it('6 wrong passwords lock the client address out (POP3 and SMTP); the right password from another address still works', async () => {
    const attacker = '127.0.0.3';
    // One session takes at most 5 failures, then it is closed.
    const session = await py([['pop', node.ports.pop3s, 'implicit', attacker], ...Array.from({ length: 5 }, () => [['user', 'alice@example.test'], ['pass', 'guess']]).flat(), ['noop']]);
    assert.match(String((session[10] as Result).error), /Too many failed authentications|EOF|reset/i, 'closed after 5 failures');
    // Locked out now: a sixth guess, and the right password from that address too, over POP3 and SMTP.
    const sixth = await py([['pop', node.ports.pop3s, 'implicit', attacker], ['user', 'alice@example.test'], ['pass', 'guess']]);
    assert.match(String((sixth[2] as Result).error), /^-ERR \[SYS\/TEMP\] Too many failed authentications from your address/);
    const locked = await py([['pop', node.ports.pop3s, 'implicit', attacker], ['user', 'alice@example.test'], ['pass', PASSWORD]]);
    assert.match(String((locked[2] as Result).error), /^-ERR \[SYS\/TEMP\] Too many failed authentications from your address/);
    const smtp = await py([['smtp', node.ports.submission, 'starttls', attacker], ['login', 'alice@example.test', PASSWORD]]);
    assert.match(String((smtp[1] as Result).error), /^454 4\.7\.0 Too many failed authentications/);
    const other = await py([['pop', node.ports.pop3s, 'implicit', '127.0.0.4'], ['user', 'alice@example.test'], ['pass', PASSWORD], ['quit']]);
    assert.match(String(other[2]), /^\+OK Logged in/);
  });

  it('port 25 with a configured certificate offers STARTTLS, then AUTH; a renewed certificate is used without a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mailgrid-tls-'));
    const makeCert = (name: string) => {
      const r = run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', join(dir, 'new.key'), '-out', join(dir, 'new.crt')]);
      assert.equal(r.code, 0, r.out);
      renameSync(join(dir, 'new.key'), join(dir, 'tls.key'));
      renameSync(join(dir, 'new.crt'), join(dir, 'tls.crt'));
    };
    makeCert('first.test');
    const certified = await startNode({ env: { MAILGRID_TLS_KEY_FILE: join(dir, 'tls.key'), MAILGRID_TLS_CERT_FILE: join(dir, 'tls.crt') } });
    try {
      const subject = () => run('openssl', ['s_client', '-connect', `127.0.0.1:${certified.smtpPort}`, '-starttls', 'smtp', '-crlf', '-ign_eof'], 'EHLO client.test\nQUIT\n').out;
      const first = subject();
      assert.match(first, /subject=CN ?= ?first\.test/);
      assert.match(first, /250-AUTH PLAIN LOGIN/, 'AUTH after STARTTLS on the MX port');
      assert.doesNotMatch(readFileSync(join(dir, 'tls.crt'), 'utf8'), /PRIVATE/);
      makeCert('second.test');
      await eventually('the renewed certificate is served', async () => (/subject=CN ?= ?second\.test/.test(subject()) ? true : undefined), 20_000);
      await eventually('the reload is logged', async () => (certified.logs.some((l) => l.event === 'tls.reloaded') ? true : undefined), 10_000);
      writeFileSync(join(dir, 'tls.crt'), 'not a certificate');
      await eventually('a broken file is refused and logged', async () => (certified.logs.some((l) => l.event === 'tls.reload-failed') ? true : undefined), 20_000);
      assert.match(subject(), /subject=CN ?= ?second\.test/, 'the previous pair is kept');
    } finally {
      await certified.stop();
    }
  });

  it('thousands of sessions holding and letting go of mailboxes never break the gRPC connection a long session uses', { timeout: 120_000 }, async () => {
    // Each POP3 session holds its mailbox at the primary for its length. Cancelling those
    // streams reset one HTTP/2 stream each, and past ~33 a second the server's rapid-reset
    // guard closed the whole connection (GOAWAY), failing every call on it.
    const client = createMailboxClient(`127.0.0.1:${node.grpcPort}`);
    const calls = new MailboxCalls(client, { address: `127.0.0.1:${node.grpcPort}`, epoch: 0 }, { timeoutMs: 10_000 });
    try {
      const long = await calls.hold('bob@example.test', 'long');
      let lost = false;
      long.lost.then(() => (lost = true));
      for (let i = 0; i < 2_000; i++) {
        const h = await calls.hold('alice@example.test', `short-${i}`);
        await h.release();
      }
      // The connection still carries calls, and the long hold is still there.
      assert.equal((await calls.list('alice@example.test')).uidValidity > 0, true);
      await assert.rejects(calls.hold('bob@example.test', 'second'), (err: Error & { code?: string }) => err.code === 'MAILBOX_IN_USE');
      assert.equal(lost, false, 'the long hold was not lost');
      await long.release();
    } finally {
      client.close();
    }
  });

  it('a burst of logins with a cold cache does not hold back mail: checks past the queue are refused at once, a message still gets its 250', async () => {
    const client = createMailboxClient(`127.0.0.1:${node.grpcPort}`);
    const calls = new MailboxCalls(client, { address: `127.0.0.1:${node.grpcPort}`, epoch: 0 }, { timeoutMs: 60_000 });
    try {
      // Wrong passwords are never cached: every one is a full hash.
      const burst = Array.from({ length: 300 }, () => calls.authenticate('alice@example.test', 'wrong').then(() => 'checked', (err: { code?: string }) => err.code));
      const reply = await sendMail(node.smtpPort, { to: ['alice@example.test'], data: 'Subject: during the burst\r\n\r\nstill stored\r\n' });
      assert.match(reply, /^250 /);
      const outcomes = await Promise.all(burst);
      assert.ok(outcomes.includes('AUTH_UNAVAILABLE'), 'checks past the queue get a temporary failure');
      assert.ok(outcomes.includes('checked'));
    } finally {
      client.close();
    }
  });

  it('a POP3S client that leaves before the TLS handshake is not kept half-open', async () => {
    for (let i = 0; i < 5; i++) {
      await new Promise<void>((resolve) => {
        const s = connect(node.ports.pop3s, '127.0.0.1', () => s.end());
        s.on('close', () => resolve());
        s.on('error', () => resolve());
      });
    }
    await sleep(1_000);
    assert.equal(run('ss', ['-Htn', 'state', 'close-wait', `( sport = :${node.ports.pop3s} )`]).out.trim(), '');
  });

  it('SIGTERM ends idle POP3 sessions at once without removing what they marked, and the node exits', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mailgrid-drain-'));
    const ready = join(dir, 'ready');
    const session = py([['pop', node.ports.pop3s, 'implicit', '127.0.0.11'], ['user', 'alice@example.test'], ['pass', PASSWORD], ['dele', 1], ['signal', ready], ['wait_file', join(dir, 'never')], ['noop']]);
    await eventually('logged in', async () => (existsSync(ready) ? true : undefined), 30_000);
    assert.equal(await node.stop(), 0);
    writeFileSync(join(dir, 'never'), '');
    const r = await session;
    // The session was told, not cut off when drainMs ran out.
    assert.equal((r[6] as Result).error, '-ERR [SYS/TEMP] Service shutting down, try again later');
  });
});
