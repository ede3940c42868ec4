import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually, freePort, MailboxProbe, sendMail, startNode, startSink, type NodeHandle } from '@mailgrid/testing';

const send = (port: number, from: string, to: string[], data: string) => sendMail(port, { from, to, data });

describe('queue on a single node: relay, DSN, backpressure, admin', () => {
  let node: NodeHandle;
  let mailbox: MailboxProbe;
  let sink: Awaited<ReturnType<typeof startSink>>;
  let deadPort: number;

  before(async () => {
    sink = await startSink({ reject: (rcpt) => (rcpt.startsWith('nobody@') ? '550 5.1.1 no such user here' : undefined) });
    deadPort = await freePort();
    node = await startNode({
      env: {
        MAILGRID_SMTP_TRUSTED_NETWORKS: '127.0.0.0/8',
        MAILGRID_RELAY_SMARTHOST: `127.0.0.1:${sink.port}`,
        MAILGRID_QUEUE_MIN_RETRY_MS: '300',
        MAILGRID_QUEUE_MAX_RETRY_MS: '600',
      },
    });
    mailbox = new MailboxProbe(`127.0.0.1:${node.grpcPort}`);
    await node.cli('domain', 'add', 'example.test');
    await node.cli('account', 'add', 'alice@example.test');
  });
  after(async () => {
    mailbox.close();
    await node.stop();
    await sink.close();
  });

  it('relays mail for another domain from a trusted client over STARTTLS, CRLF-clean as the outside server receives it', async () => {
    const body = 'From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: relayed\r\n\r\nline one\r\n..leading dot\r\nline three\r\n';
    assert.match(await send(node.smtpPort, 'alice@example.test', ['bob@remote.test'], body), /^250 2\.0\.0 Ok: queued as /);
    const got = await eventually('the sink receives it', async () => sink.messages.find((m) => m.to.includes('bob@remote.test')));
    assert.equal(got.from, 'alice@example.test');
    assert.equal(got.secure, true, 'opportunistic STARTTLS was used');
    const raw = got.raw.toString('latin1');
    assert.match(raw, /^Received: from /);
    assert.match(raw, /\r\n\.\.leading dot\r\n|\r\n\.leading dot\r\n/);
    for (let i = 0; i < got.raw.length; i++) {
      if (got.raw[i] === 0x0a) assert.equal(got.raw[i - 1], 0x0d, `bare LF at ${i}`);
      if (got.raw[i] === 0x0d) assert.equal(got.raw[i + 1], 0x0a, `bare CR at ${i}`);
    }
  });

  it('bounces a permanent failure with an RFC 3464 report to the local sender', async () => {
    const before = (await mailbox.list('alice@example.test')).length;
    const body = 'From: alice@example.test\r\nTo: nobody@remote.test\r\nSubject: will bounce\r\nMessage-ID: <bounce-me@example.test>\r\n\r\nhello\r\n';
    assert.match(await send(node.smtpPort, 'alice@example.test', ['nobody@remote.test'], body), /^250/);
    const list = await eventually('a DSN reaches alice', async () => {
      const l = await mailbox.list('alice@example.test');
      return l.length > before ? l : undefined;
    });
    const dsn = (await mailbox.fetch('alice@example.test', list[list.length - 1].uid)).toString('latin1');
    assert.match(dsn, /^Return-Path: <>\r\n/m);
    assert.match(dsn, /Content-Type: multipart\/report; report-type=delivery-status;/);
    assert.match(dsn, /Content-Type: message\/delivery-status/);
    assert.match(dsn, /Final-Recipient: rfc822; nobody@remote\.test/);
    assert.match(dsn, /Action: failed/);
    assert.match(dsn, /Status: 5\.1\.1/);
    assert.match(dsn, /Diagnostic-Code: smtp; 550 5\.1\.1 no such user here/);
    assert.match(dsn, /Content-Type: text\/rfc822-headers[\s\S]*Message-ID: <bounce-me@example\.test>/);
    assert.doesNotMatch(dsn.split('text/rfc822-headers')[1], /^hello$/m, 'headers only, not the body');
    assert.equal(JSON.parse((await node.cli('queue', 'list', '--json')).stdout).length, 0, 'nothing left queued');
  });

  it('never bounces to the null sender', async () => {
    assert.match(await send(node.smtpPort, '', ['nobody@remote.test'], 'Subject: dsn of a dsn\r\n\r\nx\r\n'), /^250/);
    await eventually('the queue is empty again', async () => (JSON.parse((await node.cli('queue', 'list', '--json')).stdout).length === 0 ? true : undefined));
    assert.ok(node.logs.some((l) => l.event === 'queue.dsn-suppressed'));
  });
});

describe('queue limit and queue admin', () => {
  let node: NodeHandle;
  let deadPort: number;
  before(async () => {
    deadPort = await freePort();
    node = await startNode({
      env: {
        MAILGRID_SMTP_TRUSTED_NETWORKS: '127.0.0.1',
        // Nothing listens there yet: every relay attempt is a temporary failure.
        MAILGRID_RELAY_SMARTHOST: `127.0.0.1:${deadPort}`,
        MAILGRID_RELAY_TIMEOUT_MS: '2000',
        MAILGRID_QUEUE_MAX_MESSAGES: '3',
        MAILGRID_QUEUE_MIN_RETRY_MS: '60000',
      },
    });
  });
  after(async () => {
    await node.stop();
  });

  it('answers 452 4.3.1 once the queue is full and accepts again after it drains', async () => {
    for (let i = 0; i < 3; i++) assert.match(await send(node.smtpPort, 'x@sender.test', [`r${i}@far.test`], `Subject: q${i}\r\n\r\nx\r\n`), /^250 2\.0\.0 Ok: queued/);
    assert.match(await send(node.smtpPort, 'x@sender.test', ['r9@far.test'], 'Subject: over\r\n\r\nx\r\n'), /^452 4\.3\.1 /);

    const list = await node.cli('queue', 'list', '--json');
    const queued = JSON.parse(list.stdout) as { id: string; recipients: { attempts: number; lastError: { code: number } | null; state: string }[] }[];
    assert.equal(queued.length, 3);
    await eventually('first attempts made', async () => {
      const q = JSON.parse((await node.cli('queue', 'list', '--json')).stdout) as typeof queued;
      return q.every((m) => m.recipients[0].attempts >= 1) ? q : undefined;
    });
    const shown = JSON.parse((await node.cli('queue', 'show', queued[0].id)).stdout);
    assert.equal(shown[0].recipients[0].lastError.code, 451, 'connection refused is temporary');

    assert.equal((await node.cli('queue', 'hold', queued[0].id)).code, 0);
    assert.equal((await node.cli('queue', 'delete', queued[1].id)).code, 0);
    const sink = await startSink({ port: deadPort });
    try {
      assert.equal((await node.cli('queue', 'retry', '--all')).code, 0);
      await eventually('the released part drains', async () => (sink.messages.length === 1 ? true : undefined));
      const left = JSON.parse((await node.cli('queue', 'list', '--json')).stdout) as typeof queued;
      assert.deepEqual(left.map((m) => [m.id, m.recipients[0].state]), [[queued[0].id, 'held']]);
      assert.equal((await node.cli('queue', 'release', queued[0].id)).code, 0);
      await eventually('everything drains', async () => (sink.messages.length === 2 ? true : undefined));
      assert.match(await send(node.smtpPort, 'x@sender.test', ['r10@far.test'], 'Subject: again\r\n\r\nx\r\n'), /^250/);
    } finally {
      await sink.close();
    }
    const bad = await node.cli('queue', 'retry');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--all/);
  });
});

describe('queue lifetime', () => {
  it('sends one delay notice, then bounces at the end of the queue lifetime with the last remote reply', async (t) => {
    // The next hop keeps deferring: its own reply is what the bounce reports.
    const sink = await startSink({ reject: () => '451 4.3.0 Greylisted, try again later' });
    t.after(() => sink.close());
    const node = await startNode({
      env: {
        MAILGRID_SMTP_TRUSTED_NETWORKS: '127.0.0.1',
        MAILGRID_RELAY_SMARTHOST: `127.0.0.1:${sink.port}`,
        MAILGRID_QUEUE_MIN_RETRY_MS: '200',
        MAILGRID_QUEUE_MAX_RETRY_MS: '300',
        MAILGRID_QUEUE_DELAY_WARNING_MS: '600',
        MAILGRID_QUEUE_LIFETIME_MS: '2500',
      },
    });
    const mailbox = new MailboxProbe(`127.0.0.1:${node.grpcPort}`);
    try {
      await node.cli('domain', 'add', 'example.test');
      await node.cli('account', 'add', 'alice@example.test');
      assert.match(await send(node.smtpPort, 'alice@example.test', ['far@away.test'], 'Subject: slow\r\n\r\nx\r\n'), /^250/);
      const reports = await eventually(
        'a delay notice and a bounce',
        async () => {
          const list = await mailbox.list('alice@example.test');
          return list.length >= 2 ? Promise.all(list.map((m) => mailbox.fetch('alice@example.test', m.uid).then((b) => b.toString()))) : undefined;
        },
        20_000,
      );
      assert.equal(reports.length, 2, 'exactly one delay notice and one bounce');
      assert.match(reports[0], /Subject: Delayed Mail \(still being retried\)[\s\S]*Action: delayed[\s\S]*Will-Retry-Until: /);
      assert.match(reports[1], /Subject: Undelivered Mail Returned to Sender[\s\S]*Action: failed\r\nStatus: 5\.4\.7\r\nRemote-MTA: dns; 127\.0\.0\.1\r\n/);
      assert.match(reports[1], /Diagnostic-Code: smtp; 451 4\.3\.0 Greylisted, try again later\r\n/);
      assert.equal(JSON.parse((await node.cli('queue', 'list', '--json')).stdout).length, 0);
    } finally {
      mailbox.close();
      await node.stop();
    }
  });
});
