import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { createTransport } from 'nodemailer';
import { deliverRaw, MailboxProbe, runCli, SmtpTranscript, startNode, type NodeHandle } from '@mailgrid/testing';

const msg = (subject: string, body = 'hello') => `From: a@sender.test\r\nTo: alice@example.test\r\nSubject: ${subject}\r\n\r\n${body}\r\n`;

describe('single node end to end', () => {
  let node: NodeHandle;
  let mailbox: MailboxProbe;

  before(async () => {
    node = await startNode({ env: { MAILGRID_SMTP_MAX_MESSAGE_BYTES: String(64 * 1024) } });
    mailbox = new MailboxProbe(`127.0.0.1:${node.grpcPort}`);
    for (const args of [['domain', 'add', 'example.test'], ['account', 'add', 'alice@example.test'], ['account', 'add', 'bob@example.test']]) {
      const r = await node.cli(...args);
      assert.equal(r.code, 0, r.stderr);
    }
  });
  after(async () => {
    mailbox.close();
    assert.equal(await node.stop(), 0, 'drains and exits cleanly on SIGTERM');
  });

  it('stores a message sent with nodemailer, readable with `mailbox get`', async () => {
    const transport = createTransport({ host: '127.0.0.1', port: node.smtpPort, secure: false, ignoreTLS: true });
    const info = await transport.sendMail({ from: 'carol@sender.test', to: 'alice@example.test', subject: 'hello alice', text: 'first message' });
    assert.match(info.response, /^250 2\.0\.0 /);
    const list = await node.cli('mailbox', 'list', 'alice@example.test', '--json');
    assert.equal(list.code, 0, list.stderr);
    const messages = JSON.parse(list.stdout) as { uid: number }[];
    const uid = messages[messages.length - 1].uid;
    const got = await node.cli('mailbox', 'get', 'alice@example.test', String(uid));
    assert.equal(got.code, 0, got.stderr);
    assert.match(got.stdout, /^Return-Path: <carol@sender\.test>\r\nReceived: from /);
    assert.match(got.stdout, /Subject: hello alice/);
    assert.match(got.stdout, /first message/);
  });

  it('answers RCPT with 550 5.1.1 for an unknown user and 554 5.7.1 for a relay attempt', async () => {
    const s = await SmtpTranscript.open(node.smtpPort);
    await s.expect('220');
    await s.send('EHLO client.test', '250');
    await s.send('MAIL FROM:<x@sender.test>', '250 2.1.0');
    await s.send('RCPT TO:<nobody@example.test>', '550 5.1.1');
    await s.send('RCPT TO:<someone@elsewhere.test>', '554 5.7.1');
    await s.send('RCPT TO:<bob@example.test>', '250 2.1.5');
    await s.send('QUIT', '221');
    s.close();
  });

  it('refuses a non-ASCII address without SMTPUTF8 with 553 5.6.7', async () => {
    const s = await SmtpTranscript.open(node.smtpPort);
    await s.expect('220');
    await s.send('EHLO client.test', '250');
    await s.send('MAIL FROM:<x@sender.test>', '250');
    await s.send('RCPT TO:<jürgen@example.test>', '553 5.6.7');
    s.close();
  });

  it('refuses an over-size message: SIZE= at MAIL and the real byte count at DATA', async () => {
    const s = await SmtpTranscript.open(node.smtpPort);
    await s.expect('220');
    await s.send('EHLO client.test', '250');
    await s.send(`MAIL FROM:<x@sender.test> SIZE=${1024 * 1024}`, '552 5.3.4');
    await s.send('MAIL FROM:<x@sender.test>', '250');
    await s.send('RCPT TO:<bob@example.test>', '250');
    await s.send('DATA', '354');
    s.write(msg('big', 'x'.repeat(998) + '\r\n' + ('y'.repeat(998) + '\r\n').repeat(80)) + '.\r\n');
    await s.expect('552 5.3.4');
    s.close();
    assert.equal((await mailbox.list('bob@example.test')).length, 0);
  });

  for (const [name, body] of [
    ['bare LF', 'line one\nline two'],
    ['bare CR', 'line one\rline two'],
    ['NUL', 'line one\0 line two'],
    ['smuggled end of data', 'x\r\n\n.\r\nMAIL FROM:<evil@sender.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nsmuggled'],
  ]) {
    it(`rejects a message with ${name} and stores nothing`, async () => {
      const before = (await mailbox.list('bob@example.test')).length;
      const s = await SmtpTranscript.open(node.smtpPort);
      await s.expect('220');
      await s.send('EHLO client.test', '250');
      await s.send('MAIL FROM:<x@sender.test>', '250');
      await s.send('RCPT TO:<bob@example.test>', '250');
      await s.send('DATA', '354');
      s.write(`Subject: ${name}\r\n\r\n${body}\r\n.\r\n`);
      await s.expect('550 5.6.0');
      await s.send('QUIT', '221');
      s.close();
      assert.equal((await mailbox.list('bob@example.test')).length, before);
    });
  }

  it('answers 452 4.5.3 past the recipient limit', async () => {
    const small = await startNode({ env: { MAILGRID_SMTP_MAX_RECIPIENTS: '2' } });
    try {
      await small.cli('domain', 'add', 'example.test');
      for (const a of ['a', 'b', 'c']) await small.cli('account', 'add', `${a}@example.test`);
      const t = await SmtpTranscript.open(small.smtpPort);
      await t.expect('220');
      await t.send('EHLO client.test', '250');
      await t.send('MAIL FROM:<x@sender.test>', '250');
      await t.send('RCPT TO:<a@example.test>', '250');
      await t.send('RCPT TO:<b@example.test>', '250');
      await t.send('RCPT TO:<c@example.test>', '452 4.5.3');
      t.close();
    } finally {
      await small.stop();
    }
  });

  it('accepts mail from Python smtplib, an independent client', async () => {
    const script = `
import smtplib, sys
with smtplib.SMTP('127.0.0.1', ${node.smtpPort}, timeout=10) as s:
    s.ehlo('py.test')
    refused = s.sendmail('py@sender.test', ['bob@example.test'], b'Subject: from python\\r\\n\\r\\nhi from smtplib\\r\\n')
    print('ok', refused)
    try:
        s.sendmail('py@sender.test', ['ghost@example.test'], b'Subject: x\\r\\n\\r\\nx\\r\\n')
    except smtplib.SMTPRecipientsRefused as e:
        code, text = e.recipients['ghost@example.test']
        print('refused', code, text.decode())
`;
    const out = await new Promise<string>((resolve, reject) =>
      execFile('python3', ['-c', script], (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout))),
    );
    assert.match(out, /^ok \{\}/m);
    assert.match(out, /^refused 550 5\.1\.1 /m);
    const list = await mailbox.list('bob@example.test');
    const last = await mailbox.fetch('bob@example.test', list[list.length - 1].uid);
    assert.match(last.toString(), /hi from smtplib/);
  });

  it('accepts mail from swaks', async () => {
    const out = await new Promise<string>((resolve, reject) =>
      execFile(
        'swaks',
        ['--server', `127.0.0.1:${node.smtpPort}`, '--from', 'sw@sender.test', '--to', 'alice@example.test', '--header', 'Subject: from swaks', '--body', 'swaks body'],
        (err, stdout, stderr) => (err ? reject(new Error(stdout + stderr)) : resolve(stdout)),
      ),
    );
    assert.match(out, /<- {2}250 2\.0\.0 Ok: stored as /);
  });

  it('delivers mail for an alias to its account', async () => {
    assert.equal((await node.cli('alias', 'add', 'postmaster@example.test', 'alice@example.test')).code, 0);
    const bad = await node.cli('alias', 'add', 'abuse@example.test', 'ghost@example.test');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /not an account/);
    assert.deepEqual(JSON.parse((await node.cli('alias', 'list', '--json')).stdout), [{ alias: 'postmaster@example.test', target: 'alice@example.test' }]);
    const before = (await mailbox.list('alice@example.test')).length;
    const s = await SmtpTranscript.open(node.smtpPort);
    await s.expect('220');
    await s.send('EHLO client.test', '250');
    await s.send('MAIL FROM:<x@sender.test>', '250');
    await s.send('RCPT TO:<Postmaster@example.test>', '250');
    await s.send('DATA', '354');
    s.write(msg('to the postmaster') + '.\r\n');
    await s.expect('250 2.0.0');
    s.close();
    assert.equal((await mailbox.list('alice@example.test')).length, before + 1);
  });

  it('stores a delivery retried with the same idempotency key once', async () => {
    const before = (await mailbox.list('alice@example.test')).length;
    const envelope = {
      messageId: 'retry-test-1',
      mailFrom: 'r@sender.test',
      recipients: [{ address: 'alice@example.test', account: 'alice@example.test', idempotencyKey: 'retry-test-1:alice@example.test' }],
    };
    const body = Buffer.from(msg('retried'));
    const first = await deliverRaw(`127.0.0.1:${node.grpcPort}`, envelope, body);
    const second = await deliverRaw(`127.0.0.1:${node.grpcPort}`, envelope, body);
    assert.equal(first.results[0].outcome, 'STORED');
    assert.equal(first.results[0].duplicate, false);
    assert.equal(second.results[0].outcome, 'STORED');
    assert.equal(second.results[0].duplicate, true);
    assert.equal(second.results[0].uid, first.results[0].uid);
    assert.equal((await mailbox.list('alice@example.test')).length, before + 1);
  });

  it('answers "no such user" for good only from a directory at least as current as the sender\'s', async () => {
    const envelope = (id: string, directoryRevision: number) => ({
      messageId: id,
      mailFrom: 'x@sender.test',
      directoryRevision,
      recipients: [{ address: 'later@example.test', account: 'later@example.test', idempotencyKey: `${id}:later` }],
    });
    // A sender that resolved the recipient at a revision this backend has not reached yet.
    const behind = await deliverRaw(`127.0.0.1:${node.grpcPort}`, envelope('lag-1', 1_000_000), Buffer.from(msg('lag')));
    assert.equal(behind.results[0].outcome, 'TEMPORARY_FAILURE');
    assert.equal(behind.results[0].reply?.code, 451);
    assert.equal(behind.results[0].reply?.enhanced, '4.4.3');
    const current = await deliverRaw(`127.0.0.1:${node.grpcPort}`, envelope('lag-2', 1), Buffer.from(msg('lag')));
    assert.equal(current.results[0].outcome, 'PERMANENT_FAILURE');
    assert.equal(current.results[0].reply?.enhanced, '5.1.1');
  });

  it('answers a malformed delivery request with a 4xx, never a 5xx', async () => {
    const call = deliverRaw(
      `127.0.0.1:${node.grpcPort}`,
      { messageId: 'bad-size', mailFrom: '', size: 999, recipients: [{ address: 'bob@example.test', account: 'bob@example.test', idempotencyKey: 'bad-size:bob' }] },
      Buffer.from(msg('short')),
    );
    await assert.rejects(call, (err: { metadata: { get(k: string): unknown[] } }) => {
      const { code, reply } = JSON.parse(String(err.metadata.get('x-mailgrid-reply')[0]));
      assert.equal(code, 'MALFORMED_REQUEST');
      assert.equal(reply.code, 451);
      return true;
    });
  });

  it('answers a delivery for an unknown account with a permanent 5.1.1 per recipient', async () => {
    const res = await deliverRaw(
      `127.0.0.1:${node.grpcPort}`,
      {
        messageId: 'unknown-1',
        mailFrom: '',
        recipients: [
          { address: 'ghost@example.test', account: 'ghost@example.test', idempotencyKey: 'unknown-1:ghost' },
          { address: 'bob@example.test', account: 'bob@example.test', idempotencyKey: 'unknown-1:bob' },
        ],
      },
      Buffer.from(msg('mixed')),
    );
    assert.equal(res.results[0].outcome, 'PERMANENT_FAILURE');
    assert.equal(res.results[0].reply?.enhanced, '5.1.1');
    assert.equal(res.results[1].outcome, 'STORED');
  });
});

describe('CLI errors', () => {
  let node: NodeHandle;
  before(async () => {
    node = await startNode();
  });
  after(async () => {
    await node.stop();
  });

  const cases: [string, string[], RegExp][] = [
    ['invalid address', ['account', 'add', 'not-an-address'], /invalid address/],
    ['invalid domain', ['domain', 'add', 'bad_domain!'], /invalid domain/],
    ['unknown domain', ['account', 'add', 'x@unhosted.test'], /not hosted/],
    ['unknown account', ['mailbox', 'list', 'x@unhosted.test'], /no such account/],
    ['bad uid', ['mailbox', 'get', 'x@unhosted.test', 'abc'], /invalid uid/],
    ['unknown command', ['frobnicate'], /unknown command/],
  ];
  for (const [name, args, want] of cases) {
    it(`${name}: clear message, non-zero exit`, async () => {
      const r = await node.cli(...args);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, want);
    });
  }

  it('says which address is taken when a second node is started on the same ports', async () => {
    const r = await runCli(['start'], { ...node.env, MAILGRID_DATA_DIR: `${node.dataDir}-second` });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /could not start: 127\.0\.0\.1:\d+ is already in use/);
  });

  it('says so when the node is not running', async () => {
    const r = await runCli(['domain', 'list'], { MAILGRID_GRPC_PORT: '1' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot reach the mailgrid node at 127\.0\.0\.1:1/);
  });

  it('reports every invalid setting with its key', async () => {
    const r = await runCli(['start', '--print-config'], { MAILGRID_SMTP_PORT: 'abc', MAILGRID_LOG_LEVEL: 'loud' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /smtp\.port: MAILGRID_SMTP_PORT=abc is not a number/);
    assert.match(r.stderr, /log\.level/);
  });

  it('prints the effective config', async () => {
    const r = await runCli(['start', '--print-config', '--smtp-port', '2600'], { MAILGRID_DATA_DIR: '/tmp/x' });
    assert.equal(r.code, 0, r.stderr);
    const c = JSON.parse(r.stdout);
    assert.equal(c.smtp.port, 2600);
    assert.equal(c.dataDir, '/tmp/x');
    // The limits a mail server needs, not smtp-server's defaults.
    assert.equal(c.smtp.maxMessageBytes, 25 * 1024 * 1024);
    assert.equal(c.smtp.maxRecipients, 100);
    assert.equal(c.smtp.idleTimeoutMs, 300_000);
    assert.equal(c.listen.host, '127.0.0.1');
    assert.equal(c.pop3.tlsPort, 2995);
  });
});
