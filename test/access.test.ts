import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createMailboxClient, MailboxCalls } from '@mailgrid/protocol';
import { eventually, Pop3Transcript, pyClient, repoRoot, sendMail, SmtpTranscript, startNode, startSink, type NodeHandle } from '@mailgrid/testing';
import { connect } from 'node:net';

// Mail access on a single node, as transcripts of our own client and with independent
// ones: Python's poplib and smtplib, swaks and openssl s_client. Submission (STARTTLS, AUTH,
// the sender owned by the user), POP3 (STLS, byte-exact RETR, DELE at QUIT only, IN-USE),
// TLS (1.2 or later, certificates reloaded), failed logins (delay, lockout of the client
// address, not of the user), the drain.

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
    const s = await SmtpTranscript.open(node.ports.submission);
    try {
      await s.expect('220');
      const ehlo = await s.send('EHLO client.test', '250');
      assert.match(ehlo, /STARTTLS/);
      assert.doesNotMatch(ehlo, /AUTH/, 'no AUTH offered before TLS');
      await s.send('AUTH PLAIN ' + Buffer.from(`\0alice@example.test\0${PASSWORD}`).toString('base64'), '530 5.7.0 Must issue a STARTTLS command first');
      await s.send('MAIL FROM:<alice@example.test>', '530 5.7.0 Authentication required');
      await s.send('STARTTLS', '220');
      await s.startTls();
      assert.match(await s.send('EHLO client.test', '250'), /AUTH PLAIN LOGIN/);
      await s.send('AUTH PLAIN ' + Buffer.from(`\0alice@example.test\0${PASSWORD}`).toString('base64'), '235 2.7.0 Authentication successful');
      await s.send('MAIL FROM:<bob@example.test>', '553 5.7.1 <bob@example.test>: Sender address is not owned by alice@example.test');
      // An alias of the user may send to the outside.
      await s.send('MAIL FROM:<sales@example.test>', '250');
      await s.send('RCPT TO:<someone@outside.test>', '250');
    } finally {
      s.close();
    }
    // smtplib agrees.
    const r = await pyClient([
      ['session', 'smtp', node.ports.submission, 'starttls'],
      ['login', 'login', 'alice@example.test', PASSWORD],
      ['spoof', 'send', 'bob@example.test', 'bob@example.test', 'Subject: spoof\r\n\r\nx\r\n'],
      ['asAlias', 'send', 'sales@example.test', 'someone@outside.test', 'Subject: as an alias\r\n\r\nx\r\n'],
    ]);
    assert.deepEqual(r.login, [235, '2.7.0 Authentication successful']);
    assert.match(String(r.spoof.error), /^553 5\.7\.1 <bob@example\.test>: Sender address is not owned by alice@example\.test/);
    assert.deepEqual(r.asAlias, {}, 'nobody refused');
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
    const mx = await SmtpTranscript.open(node.smtpPort);
    try {
      await mx.expect('220');
      assert.doesNotMatch(await mx.send('EHLO client.test', '250'), /AUTH|STARTTLS/);
      await mx.send('MAIL FROM:<alice@example.test>', '250');
      await mx.send('RCPT TO:<friend@outside.test>', '554 5.7.1');
    } finally {
      mx.close();
    }
    // Implicit TLS submission (465's role).
    const s465 = await SmtpTranscript.open(node.ports.submissions, '127.0.0.1', undefined, { tls: true });
    try {
      await s465.expect('220');
      assert.match(await s465.send('EHLO client.test', '250'), /AUTH PLAIN LOGIN/);
      await s465.send('AUTH PLAIN ' + Buffer.from(`\0bob@example.test\0${PASSWORD}`).toString('base64'), '235 2.7.0');
    } finally {
      s465.close();
    }
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
    const submitted = await pyClient([
      ['session', 'smtp', node.ports.submission, 'starttls'],
      ['login', 'login', 'alice@example.test', PASSWORD],
      ['send', 'send', 'alice@example.test', 'alice@example.test', sent],
    ]);
    assert.deepEqual(submitted.send, {});
    const login = async (port: number, options: { tls?: boolean; stls?: boolean } = {}) => {
      const pop = await Pop3Transcript.open(port, { tls: options.tls });
      await pop.expect('+OK');
      if (options.stls) await pop.stls();
      return pop;
    };
    await eventually('stored', async () => {
      const pop = await login(node.ports.pop3s, { tls: true });
      try {
        await pop.login('alice@example.test', PASSWORD);
        return Number((await pop.send('STAT', '+OK')).split(' ')[1]) >= 1 || undefined;
      } finally {
        pop.close();
      }
    });
    const first = await login(node.ports.pop3, { stls: true });
    const second = await login(node.ports.pop3s, { tls: true });
    let uidls: string[];
    try {
      await first.login('alice@example.test', PASSWORD, '+OK Logged in, 1 messages');
      uidls = await first.multi('UIDL');
      const retrieved = (await first.multi('RETR 1')).join('\r\n') + '\r\n';
      // What the client sent, byte for byte, after the trace fields the server adds on top (RFC 5321 §4.4).
      assert.equal(retrieved.replace(/^(?:(?:Return-Path|Received):[^\r]*\r\n(?:[ \t][^\r]*\r\n)*)+/, ''), sent);
      await second.login('alice@example.test', PASSWORD, '-ERR [IN-USE] Mailbox is in use by another session');
    } finally {
      first.close();
      second.close();
    }
    // A session dropped after DELE, without QUIT, removes nothing.
    const dropped = await login(node.ports.pop3, { stls: true });
    await eventually('the first session let go', async () => ((await dropped.login('alice@example.test', PASSWORD, '')).startsWith('+OK') ? true : undefined));
    await dropped.send('DELE 1', '+OK Marked to be deleted');
    dropped.close();
    const again = await eventually('the dropped session let go', async () => {
      const pop = await login(node.ports.pop3, { stls: true });
      if ((await pop.login('alice@example.test', PASSWORD, '')).startsWith('+OK')) return pop;
      pop.close();
      return undefined;
    });
    assert.deepEqual(await again.multi('UIDL'), uidls, 'still there after DELE and a dropped connection, with the same UIDL');
    await again.send('DELE 1', '+OK');
    assert.match(await again.send('STAT', '+OK'), new RegExp(`^\\+OK ${uidls.length - 1} `), 'STAT leaves out a marked message');
    await again.send('RETR 1', '-ERR Message is deleted');
    await again.send('QUIT', '+OK Logging out, 1 messages deleted');
    // poplib sees what is left.
    const gone = await pyClient([
      ['session', 'pop', node.ports.pop3, 'stls'],
      ['user', 'user', 'alice@example.test'],
      ['pass', 'pass', PASSWORD],
      ['uidl', 'uidl'],
      ['quit', 'quit'],
    ]);
    assert.deepEqual(gone.uidl, uidls.slice(1).map((u, i) => `${i + 1} ${u.split(' ')[1]}`), 'gone after DELE and QUIT');
  });

  it('POP3 refuses a login before STLS; an unknown user and a wrong password get the same answer', async () => {
    const plain = await Pop3Transcript.open(node.ports.pop3);
    try {
      await plain.expect('+OK');
      const capa = await plain.multi('CAPA');
      assert.ok(capa.includes('STLS') && !capa.includes('USER'), capa.join(' '));
      await plain.send('USER alice@example.test', '-ERR [AUTH] Plaintext authentication disallowed on non-secure connections: STLS first');
      await plain.send('QUIT', '+OK');
    } finally {
      plain.close();
    }
    const secure = await Pop3Transcript.open(node.ports.pop3s, { tls: true, localAddress: '127.0.0.9' });
    try {
      await secure.expect('+OK');
      const unknown = await secure.login('nobody@example.test', PASSWORD, '-ERR');
      const wrong = await secure.login('alice@example.test', 'wrong', '-ERR');
      assert.equal(unknown, '-ERR [AUTH] Authentication failed');
      assert.equal(wrong, unknown);
    } finally {
      secure.close();
    }
  });

  it('a changed password takes effect at once (the credential cache is keyed by the stored hash)', async () => {
    const login = async (pw: string) => {
      const pop = await Pop3Transcript.open(node.ports.pop3s, { tls: true, localAddress: '127.0.0.10' });
      try {
        await pop.expect('+OK');
        const reply = await pop.login('bob@example.test', pw, '');
        await pop.send('QUIT', '+OK');
        return reply;
      } finally {
        pop.close();
      }
    };
    assert.match(await login(PASSWORD), /^\+OK Logged in/);
    assert.match(await login(PASSWORD), /^\+OK Logged in/, 'again, from the cache');
    const set = passwd('bob@example.test', 'new secret\n');
    assert.equal(set.status, 0, set.stderr);
    assert.equal(await login(PASSWORD), '-ERR [AUTH] Authentication failed');
    assert.match(await login('new secret'), /^\+OK Logged in/);
    const metrics = await (await fetch(`http://127.0.0.1:${node.ports.http}/metrics`)).text();
    assert.match(metrics, /^mailgrid_auth_failures_total\{protocol="pop3",reason="credentials"\} [1-9]/m);
    // The second login came from the cache (the backend thread's answer is counted where /metrics is served).
    assert.match(metrics, /^mailgrid_auth_cache_lookups_total\{result="hit"\} [1-9]/m);
    assert.match(metrics, /^mailgrid_auth_cache_lookups_total\{result="miss"\} [1-9]/m);
  });

  it('6 wrong passwords lock the client address out (POP3 and SMTP); the right password from another address still works', async () => {
    const attacker = '127.0.0.3';
    // One session takes at most 5 failures, then it is closed.
    const session = await Pop3Transcript.open(node.ports.pop3s, { tls: true, localAddress: attacker });
    await session.expect('+OK');
    for (let i = 1; i < 5; i++) await session.login('alice@example.test', 'guess', '-ERR [AUTH] Authentication failed');
    await session.login('alice@example.test', 'guess', '-ERR [AUTH] Too many failed authentications, closing connection');
    await session.closed();
    // Locked out now: a sixth guess, and the right password from that address too, over POP3 and SMTP.
    const locked = await Pop3Transcript.open(node.ports.pop3s, { tls: true, localAddress: attacker });
    try {
      await locked.expect('+OK');
      await locked.login('alice@example.test', 'guess', '-ERR [SYS/TEMP] Too many failed authentications from your address');
      await locked.login('alice@example.test', PASSWORD, '-ERR [SYS/TEMP] Too many failed authentications from your address');
    } finally {
      locked.close();
    }
    const smtp = await pyClient([
      ['session', 'smtp', node.ports.submission, 'starttls', attacker],
      ['login', 'login', 'alice@example.test', PASSWORD],
    ]);
    assert.match(String(smtp.login.error), /^454 4\.7\.0 Too many failed authentications/);
    const other = await pyClient([
      ['session', 'pop', node.ports.pop3s, 'implicit', '127.0.0.4'],
      ['user', 'user', 'alice@example.test'],
      ['pass', 'pass', PASSWORD],
      ['quit', 'quit'],
    ]);
    assert.match(String(other.pass), /^\+OK Logged in/);
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
      // Shared holds (IMAP's) sit beside the exclusive one and beside each other.
      const shared = await Promise.all([calls.hold('bob@example.test', 'imap-1', true), calls.hold('bob@example.test', 'imap-2', true)]);
      for (const h of shared) await h.release();
      assert.equal(lost, false, 'the long hold was not lost');
      await long.release();
      // Once it is let go, an exclusive hold is granted while a shared one is held.
      const reader = await calls.hold('bob@example.test', 'imap-3', true);
      await (await calls.hold('bob@example.test', 'pop-again')).release();
      await reader.release();
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

  it('sessions that upgraded with STARTTLS or STLS stop counting against maxClients when they end', async () => {
    // smtp-server takes every listener off the plain socket at STARTTLS: a count kept by the
    // socket's close grew by one per session, and a bench found the node refusing all.
    const small = await startNode({ env: { MAILGRID_SUBMISSION_MAX_CLIENTS: '2', MAILGRID_POP3_MAX_CLIENTS: '2' } });
    try {
      for (let i = 0; i < 5; i++) {
        const s = await SmtpTranscript.open(small.ports.submission);
        await s.expect('220');
        await s.send('EHLO client.test', '250');
        await s.send('STARTTLS', '220');
        await s.startTls();
        await s.send('EHLO client.test', '250');
        await s.send('QUIT', '221');
        await s.closed();
        const pop = await Pop3Transcript.open(small.ports.pop3);
        await pop.expect('+OK');
        await pop.stls();
        await pop.send('QUIT', '+OK');
        await pop.closed();
      }
      const metrics = await (await fetch(`http://127.0.0.1:${small.ports.http}/metrics`)).text();
      await eventually('every session ended', async () => {
        const text = await (await fetch(`http://127.0.0.1:${small.ports.http}/metrics`)).text();
        return /^mailgrid_sessions_active\{protocol="submission",listener="submission"\} 0$/m.test(text) && /^mailgrid_sessions_active\{protocol="pop3",listener="pop3"\} 0$/m.test(text) ? true : undefined;
      });
      assert.match(metrics, /^mailgrid_sessions_total\{protocol="submission",listener="submission"\} 5$/m);
    } finally {
      await small.stop();
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
    // Kept, they would sit in CLOSE-WAIT for the idle timeout (minutes).
    await eventually('no connection left half-open', async () => (run('ss', ['-Htn', 'state', 'close-wait', `( sport = :${node.ports.pop3s} )`]).out.trim() === '' ? true : undefined), 5_000);
  });

  it('SIGTERM: idle sessions end at once (POP3 without removing what they marked), a transaction under way finishes, and the node exits', async () => {
    const pop = await Pop3Transcript.open(node.ports.pop3s, { tls: true, localAddress: '127.0.0.11' });
    await pop.expect('+OK');
    await pop.login('alice@example.test', PASSWORD, '+OK Logged in, 1 messages');
    await pop.send('DELE 1', '+OK');
    const idle = await SmtpTranscript.open(node.smtpPort);
    await idle.expect('220');
    await idle.send('EHLO idle.test', '250');
    const busy = await SmtpTranscript.open(node.smtpPort);
    await busy.expect('220');
    await busy.send('EHLO busy.test', '250');
    await busy.send('MAIL FROM:<someone@sender.test>', '250');
    await busy.send('RCPT TO:<bob@example.test>', '250');
    const stopped = node.stop();
    await pop.expect('-ERR [SYS/TEMP] Service shutting down, try again later');
    await pop.closed();
    await idle.expect('421 4.3.2 Service shutting down');
    await idle.closed();
    // The transaction under way is taken; the next one is not.
    await busy.send('DATA', '354');
    await busy.send('Subject: during the drain\r\n\r\ntaken\r\n.', '250 2.0.0');
    await busy.send('MAIL FROM:<someone@sender.test>', '421 4.3.2');
    assert.equal(await stopped, 0);
    // Back on its data: what the POP3 session marked is still there, and so is the message taken during the drain.
    node = await startNode({ dataDir: node.dataDir });
    const after = await Pop3Transcript.open(node.ports.pop3s, { tls: true });
    try {
      await after.expect('+OK');
      await after.login('alice@example.test', PASSWORD, '+OK Logged in, 1 messages');
    } finally {
      after.close();
    }
    const bob = await Pop3Transcript.open(node.ports.pop3s, { tls: true });
    try {
      await bob.expect('+OK');
      await bob.login('bob@example.test', 'new secret', '+OK Logged in, 1 messages');
      assert.ok((await bob.multi('TOP 1 0')).includes('Subject: during the drain'));
    } finally {
      bob.close();
    }
  });
});
