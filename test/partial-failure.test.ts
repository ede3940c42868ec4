import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { dataDirWith, eventually, MailboxProbe, mountTmpfs, sendMail, startNode, startSink, type NodeHandle, type SmallDisk } from '@mailgrid/testing';

/**
 * A message for a local recipient and a relayed one, while the queue's disk is full. Before
 * the queue-first intake, the local recipient was stored inline, queueing the other failed,
 * the client got a 451 and its retry stored the message a second time.
 */
describe('a message refused with a 4xx is stored exactly once when the client retries', () => {
  let disk: SmallDisk;
  let node: NodeHandle;
  let mailbox: MailboxProbe;
  let sink: Awaited<ReturnType<typeof startSink>>;

  before(async () => {
    // A real full disk: the queue lives on an 8 MiB tmpfs.
    disk = mountTmpfs('8m');
    sink = await startSink();
    node = await startNode({
      dataDir: dataDirWith(disk, 'queue'),
      env: {
        MAILGRID_SMTP_TRUSTED_NETWORKS: '127.0.0.1',
        MAILGRID_RELAY_SMARTHOST: `127.0.0.1:${sink.port}`,
        // The free-space floor would refuse at MAIL; this test is about what happens past it.
        MAILGRID_QUEUE_MIN_FREE_BYTES: '0',
      },
    });
    mailbox = new MailboxProbe(`127.0.0.1:${node.grpcPort}`);
    assert.equal((await node.cli('domain', 'add', 'example.test')).code, 0);
    assert.equal((await node.cli('account', 'add', 'alice@example.test')).code, 0);
  });
  after(async () => {
    mailbox?.close();
    if (node) assert.equal(await node.stop(), 0, 'the node kept running and drains cleanly');
    await sink?.close();
    disk?.unmount();
  });

  it('answers 4xx with nothing stored while the queue cannot take the message, then stores it once', async () => {
    // About a megabyte, CRLF lines, with an id to find it by.
    const data = `Subject: partial\r\nX-Test-Id: partial-1\r\n\r\n${('z'.repeat(998) + '\r\n').repeat(1000)}`;
    const message = { from: 'carol@sender.test', to: ['alice@example.test', 'bob@remote.test'], data };
    disk.fill(256 * 1024);

    const first = await sendMail(node.smtpPort, message);
    assert.match(first, /^4\d\d 4\.\d+\.\d+ /, 'a temporary refusal');
    assert.equal((await mailbox.list('alice@example.test')).length, 0, 'nothing stored for the local recipient');
    assert.equal(sink.messages.length, 0);

    disk.empty();
    // The client retries, as clients do after a 4xx, until the node has seen the space back.
    const second = await eventually('accepted again once space returns', async () => {
      const reply = await sendMail(node.smtpPort, message);
      if (reply.startsWith('4')) return undefined;
      return reply;
    });
    assert.match(second, /^250 2\.0\.0 Ok: stored and queued as /);
    await eventually('the relayed copy arrives', async () => (sink.messages.length ? true : undefined));
    const stored = await mailbox.list('alice@example.test');
    assert.equal(stored.length, 1, 'stored exactly once');
    assert.match((await mailbox.fetch('alice@example.test', stored[0].uid)).toString(), /X-Test-Id: partial-1/);
    assert.equal(sink.messages.length, 1, 'relayed exactly once');
    assert.ok(node.logs.some((l) => l.event === 'intake.enqueue-failed'), 'the refusal is logged');
  });
});
