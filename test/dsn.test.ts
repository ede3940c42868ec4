import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually, MailboxProbe, SmtpTranscript, startNode, startSink, type NodeHandle } from '@mailgrid/testing';

// The DSN extension (RFC 3461) and what mailgrid reports to senders, 8-bit mail and long
// lines when relaying: two nodes, each relaying to an outside server (a sink) with or
// without DSN and 8BITMIME.

type Sink = Awaited<ReturnType<typeof startSink>>;

/** One transaction with MAIL and RCPT parameters; the reply to the final dot. */
async function submit(port: number, m: { from: string; mail?: string; rcpts: [string, string?][]; data: string }): Promise<string> {
  const s = await SmtpTranscript.open(port);
  try {
    await s.expect('220');
    await s.send('EHLO client.test', '250');
    await s.send(`MAIL FROM:<${m.from}>${m.mail ? ' ' + m.mail : ''}`, '250');
    for (const [to, params] of m.rcpts) await s.send(`RCPT TO:<${to}>${params ? ' ' + params : ''}`, '250');
    await s.send('DATA', '354');
    s.write(m.data + '.\r\n');
    return await s.reply();
  } finally {
    s.close();
  }
}

async function mailboxTexts(mailbox: MailboxProbe, account: string): Promise<string[]> {
  return Promise.all((await mailbox.list(account)).map((m) => mailbox.fetch(account, m.uid).then((b) => b.toString('latin1'))));
}

const queueEmpty = (node: NodeHandle) =>
  eventually('the queue is empty', async () => (JSON.parse((await node.cli('queue', 'list', '--json')).stdout).length === 0 ? true : undefined), 20_000);

async function startWith(sink: Sink): Promise<{ node: NodeHandle; mailbox: MailboxProbe }> {
  const node = await startNode({
    env: {
      MAILGRID_SMTP_TRUSTED_NETWORKS: '127.0.0.1',
      MAILGRID_RELAY_SMARTHOST: `127.0.0.1:${sink.port}`,
      MAILGRID_QUEUE_MIN_RETRY_MS: '200',
      MAILGRID_QUEUE_MAX_RETRY_MS: '400',
    },
  });
  for (const args of [['domain', 'add', 'example.test'], ['account', 'add', 'alice@example.test'], ['account', 'add', 'bob@example.test']])
    assert.equal((await node.cli(...args)).code, 0);
  return { node, mailbox: new MailboxProbe(`127.0.0.1:${node.grpcPort}`) };
}

describe('DSN: next hop without DSN or 8BITMIME', () => {
  let sink: Sink;
  let node: NodeHandle;
  let mailbox: MailboxProbe;
  before(async () => {
    sink = await startSink({ no8bit: true, reject: (rcpt) => (rcpt.startsWith('nobody') ? '550 5.1.1 no such user here' : undefined) });
    ({ node, mailbox } = await startWith(sink));
  });
  after(async () => {
    mailbox.close();
    await node.stop();
    await sink.close();
  });

  it('advertises DSN and refuses a parameter it did not advertise with 555 5.5.4', async () => {
    const s = await SmtpTranscript.open(node.smtpPort);
    try {
      await s.expect('220');
      assert.match(await s.send('EHLO client.test', '250'), /^250[- ]DSN$/m);
      await s.send('MAIL FROM:<x@sender.test> FOO=BAR', '555 5.5.4');
      await s.send('MAIL FROM:<x@sender.test> ENVID=abc', '250');
      await s.send('RCPT TO:<bob@example.test> XRCPT=1', '555 5.5.4');
      await s.send('RCPT TO:<bob@example.test> NOTIFY=FAILURE', '250');
    } finally {
      s.close();
    }
  });

  it('sends no report for NOTIFY=NEVER', async () => {
    const before = (await mailbox.list('alice@example.test')).length;
    assert.match(await submit(node.smtpPort, { from: 'alice@example.test', rcpts: [['nobody@far.test', 'NOTIFY=NEVER']], data: 'Subject: never\r\n\r\nx\r\n' }), /^250/);
    await queueEmpty(node);
    assert.equal((await mailbox.list('alice@example.test')).length, before);
  });

  it('reports a local delivery for NOTIFY=SUCCESS, with ORCPT as Original-Recipient', async () => {
    const before = (await mailbox.list('alice@example.test')).length;
    assert.match(
      await submit(node.smtpPort, { from: 'alice@example.test', rcpts: [['bob@example.test', 'NOTIFY=SUCCESS ORCPT=rfc822;Bob@Example.test']], data: 'Subject: ok\r\n\r\nx\r\n' }),
      /^250/,
    );
    const texts = await eventually('a success report', async () => {
      const t = await mailboxTexts(mailbox, 'alice@example.test');
      return t.length > before ? t : undefined;
    });
    const report = texts[texts.length - 1];
    assert.match(report, /Subject: Successful Mail Delivery Report/);
    assert.match(report, /Original-Recipient: rfc822;Bob@Example\.test\r\nFinal-Recipient: rfc822; bob@example\.test\r\nAction: delivered\r\nStatus: 2\.0\.0/);
    assert.equal((await mailbox.list('bob@example.test')).length, 1, 'and the message itself');
  });

  it('reports a relay for NOTIFY=SUCCESS when the next hop does not offer DSN', async () => {
    const before = (await mailbox.list('alice@example.test')).length;
    assert.match(await submit(node.smtpPort, { from: 'alice@example.test', rcpts: [['far@remote.test', 'NOTIFY=SUCCESS']], data: 'Subject: out\r\n\r\nx\r\n' }), /^250/);
    const texts = await eventually('a relayed report', async () => {
      const t = await mailboxTexts(mailbox, 'alice@example.test');
      return t.length > before ? t : undefined;
    });
    assert.match(texts[texts.length - 1], /Final-Recipient: rfc822; far@remote\.test\r\nAction: relayed\r\nStatus: 2\.0\.0/);
  });

  it('returns the whole message for RET=FULL, says ENVID, and uses one report for every failure of a pass', async () => {
    const before = (await mailbox.list('alice@example.test')).length;
    const data = 'Subject: full\r\nX-Test: ret-full\r\n\r\nthe body itself\r\n';
    assert.match(
      await submit(node.smtpPort, { from: 'alice@example.test', mail: 'RET=FULL ENVID=env+2Dfull', rcpts: [['nobody@one.test'], ['nobody@two.test']], data }),
      /^250/,
    );
    await queueEmpty(node);
    const texts = (await mailboxTexts(mailbox, 'alice@example.test')).slice(before);
    assert.equal(texts.length, 1, 'one report for both');
    assert.match(texts[0], /Original-Envelope-Id: env-full/);
    assert.match(texts[0], /Final-Recipient: rfc822; nobody@one\.test[\s\S]*Final-Recipient: rfc822; nobody@two\.test/);
    assert.match(texts[0], /Content-Type: message\/rfc822\r\n[\s\S]*X-Test: ret-full[\s\S]*the body itself/);
  });

  it('bounces 8-bit mail for a next hop without 8BITMIME with 5.6.3', async () => {
    const before = (await mailbox.list('alice@example.test')).length;
    assert.match(await submit(node.smtpPort, { from: 'alice@example.test', mail: 'BODY=8BITMIME', rcpts: [['far@remote.test']], data: 'Subject: 8bit\r\n\r\ngr\u00fc\u00dfe\r\n' }), /^250/);
    const texts = await eventually('a bounce', async () => {
      const t = await mailboxTexts(mailbox, 'alice@example.test');
      return t.length > before ? t : undefined;
    });
    assert.match(texts[texts.length - 1], /Action: failed\r\nStatus: 5\.6\.3\r\n/);
    assert.ok(!sink.messages.some((m) => m.raw.toString('latin1').includes('Subject: 8bit')), 'never sent as 7-bit');
  });

  it('keeps its counts exact after many failures at once', async () => {
    const before = (await mailbox.list('alice@example.test')).length;
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        submit(node.smtpPort, { from: 'alice@example.test', rcpts: [[`nobody${i}@one.test`], [`nobody${i}@two.test`]], data: `Subject: burst ${i}\r\n\r\nx\r\n` }),
      ),
    );
    await queueEmpty(node);
    await eventually('20 reports', async () => ((await mailbox.list('alice@example.test')).length - before === 20 ? true : undefined));
    const stats = JSON.parse((await node.cli('queue', 'stats', '--json')).stdout);
    assert.deepEqual(stats, [{ node: 'test-node', messages: 0, bytes: 0 }], 'nothing counted that is not queued');
  });
});

describe('DSN: next hop with DSN and 8BITMIME', () => {
  let sink: Sink;
  let node: NodeHandle;
  let mailbox: MailboxProbe;
  before(async () => {
    sink = await startSink({ dsn: true });
    ({ node, mailbox } = await startWith(sink));
  });
  after(async () => {
    mailbox.close();
    await node.stop();
    await sink.close();
  });

  it('passes NOTIFY, ORCPT, RET and ENVID on, and leaves the reporting to the next hop', async () => {
    assert.match(
      await submit(node.smtpPort, {
        from: 'alice@example.test',
        mail: 'RET=HDRS ENVID=e1',
        rcpts: [['far@remote.test', 'NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;far@remote.test']],
        data: 'Subject: passed on\r\n\r\nx\r\n',
      }),
      /^250/,
    );
    const got = await eventually('the next hop has it', async () => sink.messages.find((m) => m.to.includes('far@remote.test')));
    assert.deepEqual(got.dsn, { ret: 'HDRS', envid: 'e1' });
    assert.deepEqual(got.rcptDsn, [{ address: 'far@remote.test', notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;far@remote.test' }]);
    await queueEmpty(node);
    assert.equal((await mailbox.list('alice@example.test')).length, 0, 'no relayed report from us');
  });

  it('relays 8-bit mail with BODY=8BITMIME', async () => {
    assert.match(await submit(node.smtpPort, { from: 'alice@example.test', rcpts: [['eight@remote.test']], data: 'Subject: 8bit\r\n\r\ngr\u00fc\u00dfe\r\n' }), /^250/);
    const got = await eventually('relayed', async () => sink.messages.find((m) => m.to.includes('eight@remote.test')));
    assert.equal(got.bodyType, '8bitmime');
  });

  it('never sends a line over 998 octets, folding it as Postfix does', async () => {
    const long = 'L'.repeat(2500);
    assert.match(await submit(node.smtpPort, { from: 'alice@example.test', rcpts: [['long@remote.test']], data: `Subject: long\r\n\r\n${long}\r\nend\r\n` }), /^250/);
    const got = await eventually('relayed', async () => sink.messages.find((m) => m.to.includes('long@remote.test')));
    const raw = got.raw.toString('latin1');
    assert.ok(raw.split('\r\n').every((l) => l.length <= 998), 'no line over 998 octets');
    assert.ok(raw.replace(/\r\n /g, '').includes(`\r\n${long}\r\nend\r\n`), 'unfolded, the line is whole');
  });
});
