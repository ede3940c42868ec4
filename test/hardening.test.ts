import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { freePort } from '@mailgrid/core';
import { eventually, MailboxProbe, runCli, SmtpTranscript, startNode, type NodeHandle } from '@mailgrid/testing';

// Faults found by trying mailgrid as an operator and as an attacker would (issue 8).

/**
 * The reply to RCPT on a fresh session from loopback address `from`, which sends `proxy`
 * first: before the greeting, as a balancer does, when it is one (127.0.0.1); after it, as
 * one more line, when it is not.
 */
async function rcptFrom(port: number, from: string, rcpt: string, proxy: string): Promise<string> {
  const balancer = from === '127.0.0.1';
  const s = await SmtpTranscript.open(port, '127.0.0.1', from);
  try {
    if (balancer) s.write(proxy);
    await s.expect('220');
    if (!balancer) {
      s.write(proxy);
      await s.reply();
    }
    await s.send('EHLO attacker.test', '250');
    await s.send('MAIL FROM:<x@sender.test>', '250');
    s.write(`RCPT TO:<${rcpt}>\r\n`);
    return await s.reply();
  } finally {
    s.close();
  }
}

describe('PROXY protocol is trusted only from the balancers', () => {
  let node: NodeHandle;
  const claim = 'PROXY TCP4 10.1.2.3 127.0.0.1 40000 25\r\n';
  before(async () => {
    node = await startNode({
      env: {
        MAILGRID_LISTEN_PROXY_PROTOCOL: 'true',
        MAILGRID_LISTEN_PROXY_FROM: '127.0.0.1',
        MAILGRID_SMTP_TRUSTED_NETWORKS: '10.0.0.0/8',
        MAILGRID_RELAY_SMARTHOST: `127.0.0.1:${await freePort()}`,
      },
    });
  });
  after(async () => {
    await node.stop();
  });

  it('honours the client address a balancer passes on', async () => {
    assert.match(await rcptFrom(node.smtpPort, '127.0.0.1', 'far@remote.test', claim), /^250 /, 'a trusted client may relay');
  });

  it('ignores a PROXY header from anyone else: the real address counts, so no relay', async () => {
    assert.match(await rcptFrom(node.smtpPort, '127.0.0.2', 'far@remote.test', claim), /^554 5\.7\.1 /);
  });

  it('refuses to start with the PROXY protocol on and no balancer named', async () => {
    const r = await runCli(['start', '--print-config'], { MAILGRID_LISTEN_PROXY_PROTOCOL: 'true' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /listen\.proxyFrom: the PROXY protocol is on \(listen\.proxyProtocol\) but no balancer is named for smtp, submission, pop3/);
    // A protocol's own balancers: an invalid one is named by its key.
    const bad = await runCli(['start', '--print-config'], { MAILGRID_LISTEN_PROXY_PROTOCOL: 'true', MAILGRID_LISTEN_PROXY_FROM: '10.0.0.1', MAILGRID_POP3_PROXY_FROM: '10.0.0.0/99' });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /pop3\.proxyFrom: not an address or CIDR block: 10\.0\.0\.0\/99/);
  });

  it('takes the old names of renamed settings, with a warning (smtp.proxyFrom is listen.proxyFrom now)', async () => {
    const r = await runCli(['start', '--print-config'], { MAILGRID_SMTP_PROXY_PROTOCOL: 'true', MAILGRID_SMTP_PROXY_FROM: '10.9.0.0/16', MAILGRID_POP3S_PORT: '2996' });
    assert.equal(r.code, 0, r.stderr);
    const c = JSON.parse(r.stdout);
    assert.deepEqual([c.listen.proxyProtocol, c.listen.proxyFrom, c.pop3.tlsPort], [true, '10.9.0.0/16', 2996]);
    assert.match(r.stderr, /MAILGRID_SMTP_PROXY_FROM is deprecated, set MAILGRID_LISTEN_PROXY_FROM instead/);
    assert.match(r.stderr, /MAILGRID_POP3S_PORT is deprecated, set MAILGRID_POP3_TLS_PORT instead/);
  });
});

describe('internationalised domains are one domain in whichever form they are written', () => {
  let node: NodeHandle;
  let mailbox: MailboxProbe;
  before(async () => {
    node = await startNode();
    mailbox = new MailboxProbe(`127.0.0.1:${node.grpcPort}`);
    assert.equal((await node.cli('domain', 'add', 'bücher.test')).code, 0);
    assert.equal((await node.cli('account', 'add', 'anna@bücher.test')).code, 0);
  });
  after(async () => {
    mailbox.close();
    await node.stop();
  });

  it('keeps the domain as lower-case A-labels', async () => {
    assert.deepEqual(JSON.parse((await node.cli('domain', 'list', '--json')).stdout), ['xn--bcher-kva.test']);
  });

  it('accepts A-labels without SMTPUTF8, in any case, and stores the message for the account', async () => {
    const s = await SmtpTranscript.open(node.smtpPort);
    try {
      await s.expect('220');
      await s.send('EHLO client.test', '250');
      await s.send('MAIL FROM:<x@sender.test>', '250');
      await s.send('RCPT TO:<anna@xn--bcher-kva.test>', '250');
      await s.send('RCPT TO:<Anna@XN--BCHER-KVA.TEST>', '250');
      await s.send('RCPT TO:<nobody@xn--bcher-kva.test>', '550 5.1.1');
      await s.send('DATA', '354');
      s.write('Subject: idn\r\n\r\nvia A-labels\r\n.\r\n');
      await s.expect('250 2.0.0');
    } finally {
      s.close();
    }
    assert.equal((await mailbox.list('anna@xn--bcher-kva.test')).length, 1, 'stored once for the one account');
  });

  it('still requires SMTPUTF8 for an address written in UTF-8', async () => {
    const s = await SmtpTranscript.open(node.smtpPort);
    try {
      await s.expect('220');
      await s.send('EHLO client.test', '250');
      await s.send('MAIL FROM:<x@sender.test>', '250');
      await s.send('RCPT TO:<anna@bücher.test>', '553 5.6.7');
      await s.send('RSET', '250');
      await s.send('MAIL FROM:<x@sender.test> SMTPUTF8', '250');
      await s.send('RCPT TO:<anna@bücher.test>', '250');
    } finally {
      s.close();
    }
  });
});

describe('postmaster', () => {
  let node: NodeHandle;
  let mailbox: MailboxProbe;
  const deliver = async (rcpt: string, subject: string) => {
    const s = await SmtpTranscript.open(node.smtpPort);
    try {
      await s.expect('220');
      await s.send('EHLO client.test', '250');
      await s.send('MAIL FROM:<x@sender.test>', '250');
      await s.send(`RCPT TO:<${rcpt}>`, '250');
      await s.send('DATA', '354');
      s.write(`Subject: ${subject}\r\n\r\nfor the postmaster\r\n.\r\n`);
      return await s.expect('250');
    } finally {
      s.close();
    }
  };
  const subjects = async (account: string) =>
    Promise.all((await mailbox.list(account)).map(async (m) => /Subject: (.*)/.exec((await mailbox.fetch(account, m.uid)).toString())?.[1]));

  before(async () => {
    const first = await startNode();
    await first.cli('domain', 'add', 'example.test');
    await first.cli('account', 'add', 'bob@example.test');
    await first.cli('account', 'add', 'alice@example.test');
    await first.stop();
    // Started again on the same data: the start-up check sees the domain.
    node = await startNode({ dataDir: first.dataDir });
    mailbox = new MailboxProbe(`127.0.0.1:${node.grpcPort}`);
  });
  after(async () => {
    mailbox.close();
    await node.stop();
  });

  it('warns at start that the postmaster of a domain falls back to its first account', async () => {
    // The log is written in batches: the line comes within a quarter of a second.
    const warned = await eventually('the warning', async () => node.logs.find((l) => l.event === 'postmaster.first-account' && l.domain === 'example.test'));
    assert.equal(warned.level, 'warn');
  });

  it('accepts postmaster@ a hosted domain and bare postmaster, for the first account', async () => {
    await deliver('postmaster@example.test', 'pm-domain');
    await deliver('Postmaster', 'pm-bare');
    assert.deepEqual((await subjects('alice@example.test')).sort(), ['pm-bare', 'pm-domain']);
  });

  it('takes a quoted local part for the same mailbox', async () => {
    await deliver('"bob"@example.test', 'quoted');
    assert.deepEqual(await subjects('bob@example.test'), ['quoted']);
  });

  it('follows an alias postmaster@ the domain', async () => {
    assert.equal((await node.cli('alias', 'add', 'postmaster@example.test', 'bob@example.test')).code, 0);
    await deliver('postmaster@example.test', 'pm-alias');
    assert.ok((await subjects('bob@example.test')).includes('pm-alias'));
  });
});

describe('postmaster setting', () => {
  it('sends postmaster mail of every hosted domain to the configured account', async () => {
    const node = await startNode({ env: { MAILGRID_POSTMASTER: 'bob@example.test' } });
    const mailbox = new MailboxProbe(`127.0.0.1:${node.grpcPort}`);
    try {
      await node.cli('domain', 'add', 'example.test');
      await node.cli('domain', 'add', 'other.test');
      await node.cli('account', 'add', 'alice@example.test');
      await node.cli('account', 'add', 'bob@example.test');
      await node.cli('account', 'add', 'carol@other.test');
      for (const rcpt of ['postmaster@example.test', 'postmaster@other.test', 'postmaster']) {
        const s = await SmtpTranscript.open(node.smtpPort);
        await s.expect('220');
        await s.send('EHLO client.test', '250');
        await s.send('MAIL FROM:<x@sender.test>', '250');
        await s.send(`RCPT TO:<${rcpt}>`, '250');
        await s.send('DATA', '354');
        s.write(`Subject: ${rcpt}\r\n\r\nx\r\n.\r\n`);
        await s.expect('250');
        s.close();
      }
      assert.equal((await mailbox.list('bob@example.test')).length, 3);
      assert.equal((await mailbox.list('alice@example.test')).length, 0);
    } finally {
      mailbox.close();
      await node.stop();
    }
  });
});
