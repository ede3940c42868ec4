import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, describe, it } from 'node:test';
import { eventually, MailboxProbe, sendMail, SmtpTranscript, startNode, type NodeHandle } from '@mailgrid/testing';

const sendOne = (port: number, id: string) =>
  sendMail(port, { from: 'load@sender.test', to: ['alice@example.test'], data: `Subject: durability\r\nX-Test-Id: ${id}\r\n\r\n${'body line\r\n'.repeat(50)}` });

describe('durability', () => {
  const nodes: NodeHandle[] = [];
  after(async () => {
    for (const n of nodes) await n.kill();
  });

  it('keeps every message that got a 250 when the node is killed with SIGKILL under load', async () => {
    const first = await startNode();
    nodes.push(first);
    assert.equal((await first.cli('domain', 'add', 'example.test')).code, 0);
    assert.equal((await first.cli('account', 'add', 'alice@example.test')).code, 0);

    const acked: string[] = [];
    let sent = 0;
    let killed = false;
    const worker = async (w: number) => {
      for (let i = 0; !killed; i++) {
        const id = `w${w}-m${i}`;
        sent++;
        try {
          const reply = await sendOne(first.smtpPort, id);
          if (reply.startsWith('250')) acked.push(id);
        } catch {
          // connection cut by the kill: not acknowledged, may or may not be stored
        }
        if (acked.length >= 150 && !killed) {
          killed = true;
          await first.kill();
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, (_, w) => worker(w)));
    assert.ok(acked.length >= 150, `acked ${acked.length} of ${sent}`);

    const second = await startNode({ dataDir: first.dataDir });
    nodes.push(second);
    const mailbox = new MailboxProbe(`127.0.0.1:${second.grpcPort}`);
    try {
      const stored = new Set<string>();
      for (const m of await mailbox.list('alice@example.test')) {
        const body = (await mailbox.fetch('alice@example.test', m.uid)).toString();
        const id = /X-Test-Id: (\S+)/.exec(body)?.[1];
        if (id) stored.add(id);
      }
      const lost = acked.filter((id) => !stored.has(id));
      assert.deepEqual(lost, [], `${lost.length} acknowledged messages lost of ${acked.length}`);
    } finally {
      mailbox.close();
      await second.stop();
    }
  });

  it('finishes a session under way when stopped with SIGTERM, then refuses new ones', async () => {
    const node = await startNode();
    nodes.push(node);
    await node.cli('domain', 'add', 'example.test');
    await node.cli('account', 'add', 'alice@example.test');
    const s = await SmtpTranscript.open(node.smtpPort);
    await s.expect('220');
    await s.send('EHLO drain.test', '250');
    await s.send('MAIL FROM:<d@sender.test>', '250');
    await s.send('RCPT TO:<alice@example.test>', '250');
    const exit = node.stop();
    // Once it has stopped listening (a connection still taken meanwhile is closed at once), finish the open session.
    const refused = () =>
      new Promise<boolean>((resolve) => {
        const c = connect(node.smtpPort, '127.0.0.1');
        c.once('connect', () => (c.destroy(), resolve(false)));
        c.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
      });
    await eventually('the draining node stops listening', async () => ((await refused()) ? true : undefined), 10_000);
    await assert.rejects(SmtpTranscript.open(node.smtpPort), /ECONNREFUSED/);
    await s.send('DATA', '354');
    s.write('Subject: drained\r\n\r\nsent while draining\r\n.\r\n');
    await s.expect('250 2.0.0');
    await s.send('QUIT', '221');
    s.close();
    assert.equal(await exit, 0);
  });
});
