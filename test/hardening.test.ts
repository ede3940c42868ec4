import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { freePort } from '@mailgrid/core';
import { runCli, SmtpTranscript, startNode, type NodeHandle } from '@mailgrid/testing';

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
        MAILGRID_SMTP_PROXY_PROTOCOL: 'true',
        MAILGRID_SMTP_PROXY_FROM: '127.0.0.1',
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
    const r = await runCli(['start', '--print-config'], { MAILGRID_SMTP_PROXY_PROTOCOL: 'true' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /smtp\.proxyFrom: the PROXY protocol is on/);
    const bad = await runCli(['start', '--print-config'], { MAILGRID_SMTP_PROXY_PROTOCOL: 'true', MAILGRID_SMTP_PROXY_FROM: '10.0.0.0/99' });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /smtp\.proxyFrom: not an address or CIDR block: 10\.0\.0\.0\/99/);
  });
});
