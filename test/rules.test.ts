import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { GrpcSubmitter } from '@mailgrid/mailflow';
import { createRulesClient, deadline } from '@mailgrid/protocol';
import { eventually, MailboxProbe, sendMail, startNode, startSink, type NodeHandle } from '@mailgrid/testing';

// Account rules (Sieve) on a single node, a real process: fileinto, a refused script,
// vacation, reject, redirect loops, and `mailgrid send --as`. Mail for outside goes to a sink.

type Sink = Awaited<ReturnType<typeof startSink>>;

describe('account rules on a single node', () => {
  let sink: Sink;
  let node: NodeHandle;
  let mailbox: MailboxProbe;
  const dir = mkdtempSync(join(tmpdir(), 'mailgrid-rules-'));
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const setRules = async (account: string, script: string) => {
    const r = await node.cli('rules', 'set', account, file(`${account}.sieve`, script));
    assert.equal(r.code, 0, r.stderr);
  };
  const send = (to: string, head: string, from = 'bob@outside.test') =>
    sendMail(node.smtpPort, { from, to: [to], data: `From: ${from}\r\nTo: ${to}\r\n${head}\r\n\r\nhello\r\n` });
  const queueEmpty = () =>
    eventually('the queue is empty', async () => (JSON.parse((await node.cli('queue', 'list', '--json')).stdout).length === 0 ? true : undefined), 20_000);
  /** What the sink got from the null sender (vacation replies, DSNs) for `to`. */
  const autoReplies = (to: string) => sink.messages.filter((m) => m.from === '' && m.to.includes(to));

  before(async () => {
    sink = await startSink();
    node = await startNode({ env: { MAILGRID_RELAY_SMARTHOST: `127.0.0.1:${sink.port}`, MAILGRID_QUEUE_MIN_RETRY_MS: '200', MAILGRID_QUEUE_MAX_RETRY_MS: '400' } });
    for (const args of [['domain', 'add', 'example.test'], ['account', 'add', 'alice@example.test'], ['account', 'add', 'carol@example.test'], ['account', 'add', 'dan@example.test']])
      assert.equal((await node.cli(...args)).code, 0);
    mailbox = new MailboxProbe(`127.0.0.1:${node.grpcPort}`);
  });
  after(async () => {
    mailbox.close();
    assert.equal(await node.stop(), 0);
    await sink.close();
  });

  it('fileinto stores into the named folder, made on first use', async () => {
    await setRules('alice@example.test', 'require "fileinto";\nif header :contains "subject" "report" { fileinto "Reports/Weekly"; }\n');
    assert.match(await send('alice@example.test', 'Subject: the weekly REPORT'), /^250 /);
    assert.match(await send('alice@example.test', 'Subject: lunch?'), /^250 /);
    const filed = await mailbox.list('alice@example.test', 'Reports/Weekly');
    assert.equal(filed.length, 1);
    assert.match((await mailbox.fetch('alice@example.test', filed[0].uid, 'Reports/Weekly')).toString(), /weekly REPORT/);
    const inbox = await mailbox.list('alice@example.test');
    assert.equal(inbox.length, 1);
    assert.match((await mailbox.fetch('alice@example.test', inbox[0].uid)).toString(), /lunch/);
    const listed = JSON.parse((await node.cli('--json', 'mailbox', 'list', 'alice@example.test', '--folder', 'Reports/Weekly')).stdout);
    assert.equal(listed.length, 1);
  });

  it('refuses a bad script with its line and column, and the old one stays in force', async () => {
    const bad = 'require "fileinto";\nif header :contains "subject" "report" {\n  fileinto "Reports";\n  bogus;\n}\n';
    const check = await node.cli('rules', 'check', file('bad.sieve', bad));
    assert.notEqual(check.code, 0);
    assert.match(check.stderr, /bad\.sieve:4:3: unknown command "bogus"/);
    const set = await node.cli('rules', 'set', 'alice@example.test', file('bad.sieve', bad));
    assert.notEqual(set.code, 0);
    assert.match(set.stderr, /4:3: unknown command "bogus"/);
    // The node itself refuses it too, whatever client sends it.
    const client = createRulesClient(`127.0.0.1:${node.grpcPort}`);
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.Set({ account: 'alice@example.test', script: 'keep;\nfileinto "x";' }, { deadline: deadline(5_000) }, (e) => resolve(e)),
    );
    client.close();
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err!.details, /line 2, column 1: fileinto needs require "fileinto"/);
    assert.match((await node.cli('rules', 'get', 'alice@example.test')).stdout, /fileinto "Reports\/Weekly"/);
    assert.match(await send('alice@example.test', 'Subject: another report'), /^250 /);
    assert.equal((await mailbox.list('alice@example.test', 'Reports/Weekly')).length, 2, 'the old rules still file');
  });

  it('answers a sender once per period with a vacation reply, and never a list, bulk mail or <>', async () => {
    await setRules('carol@example.test', 'require "vacation";\nvacation :days 7 :subject "Out of office" "I am away until Monday.";\n');
    assert.match(await send('carol@example.test', 'Subject: first\r\nMessage-ID: <first@outside.test>'), /^250 /);
    assert.match(await send('carol@example.test', 'Subject: second'), /^250 /);
    assert.match(await send('carol@example.test', 'Subject: news\r\nList-Id: <news.lists.test>', 'news@lists.test'), /^250 /);
    assert.match(await send('carol@example.test', 'Subject: offer\r\nPrecedence: bulk', 'offers@shop.test'), /^250 /);
    assert.match(await send('carol@example.test', 'Subject: bounce', ''), /^250 /);
    // The rules ran on each of the four to leave unanswered (what they make is queued before the 250), and the queue has sent what was made.
    const skipped = await eventually('no vacation reply decided for the other four', async () => {
      const to = node.logs.filter((l) => l.event === 'rules.vacation-skipped' && l.account === 'carol@example.test').map((l) => `${l.to}: ${l.why}`);
      return to.length >= 4 ? to.sort() : undefined;
    });
    assert.deepEqual(skipped, [': null sender', 'bob@outside.test: answered within the period', 'news@lists.test: list mail', 'offers@shop.test: bulk mail']);
    await queueEmpty();
    const replies = autoReplies('bob@outside.test');
    assert.equal(replies.length, 1, 'one reply to bob for two messages');
    const text = replies[0].raw.toString();
    assert.match(text, /^Subject: Out of office\r$/m);
    assert.match(text, /^Auto-Submitted: auto-replied\r$/m);
    assert.match(text, /^In-Reply-To: <first@outside.test>\r$/m);
    assert.deepEqual([autoReplies('news@lists.test').length, autoReplies('offers@shop.test').length], [0, 0]);
    assert.equal((await mailbox.list('carol@example.test')).length, 5, 'vacation keeps every message');
  });

  it('reject sends a DSN to the sender, not an SMTP refusal', async () => {
    await setRules('dan@example.test', 'require "reject";\nif address :domain :is "from" "spam.test" { reject "No thanks."; }\n');
    assert.match(await send('dan@example.test', 'Subject: buy now', 'seller@spam.test'), /^250 /);
    const dsn = await eventually('the reject DSN', async () => autoReplies('seller@spam.test')[0]);
    assert.match(dsn.raw.toString(), /Status: 5\.7\.1/);
    assert.match(dsn.raw.toString(), /No thanks\./);
    assert.equal((await mailbox.list('dan@example.test')).length, 0);
  });

  it('keeps a message that comes back to an account it was redirected from', async () => {
    await setRules('alice@example.test', 'redirect "carol@example.test";');
    await setRules('carol@example.test', 'redirect "alice@example.test";');
    const before = (await mailbox.list('alice@example.test')).length;
    assert.match(await send('alice@example.test', 'Subject: round and round'), /^250 /);
    await queueEmpty();
    const after = await mailbox.list('alice@example.test');
    assert.equal(after.length, before + 1, 'kept once at alice');
    assert.match((await mailbox.fetch('alice@example.test', after[after.length - 1].uid)).toString(), /X-Sieve-Redirected-From: carol@example.test[\s\S]*X-Sieve-Redirected-From: alice@example.test/);
    assert.equal((await node.cli('rules', 'remove', 'alice@example.test')).code, 0);
    assert.equal((await node.cli('rules', 'remove', 'carol@example.test')).code, 0);
  });

  it('keeps a message whose redirect is refused for good, rather than losing it', async () => {
    await setRules('dan@example.test', 'redirect "nobody@example.test";');
    assert.match(await send('dan@example.test', 'Subject: to nowhere'), /^250 /);
    const kept = await mailbox.list('dan@example.test');
    assert.equal(kept.length, 1, 'kept in INBOX');
    assert.match((await mailbox.fetch('dan@example.test', kept[0].uid)).toString(), /to nowhere/);
    assert.equal((await node.cli('rules', 'remove', 'dan@example.test')).code, 0);
  });

  it('takes mail on its Submit service only from a member or sent as an account (no relay for anyone who reaches the port)', async () => {
    const submitter = new GrpcSubmitter({ timeoutMs: 5_000, chunkBytes: 65_536, node: 'test' });
    try {
      const m = { id: 'submit-probe-1', mailFrom: 'spammer@outside.test', recipients: ['victim@far.test'], body: Buffer.from('Subject: x\r\n\r\nx\r\n'), mayRelay: true };
      await assert.rejects(submitter.submit(`127.0.0.1:${node.grpcPort}`, m, { origin: '', log: [], asAccount: false }), (err: Error & { reply?: { code: number } }) => err.reply?.code === 554);
      await assert.rejects(submitter.submit(`127.0.0.1:${node.grpcPort}`, m, { origin: '', log: [], asAccount: true }), /not an account here/);
    } finally {
      submitter.close();
    }
    assert.equal(sink.messages.filter((x) => x.to.includes('victim@far.test')).length, 0);
  });

  it('refuses on its Submit service, as at SMTP, a message with a bare LF, a bare CR or a NUL', async () => {
    const before = (await mailbox.list('carol@example.test')).length;
    const submitter = new GrpcSubmitter({ timeoutMs: 5_000, chunkBytes: 65_536, node: 'test' });
    try {
      for (const [i, body] of ['Subject: x\n\nsmuggled\r\n', 'Subject: x\r\n\r\na\rb\r\n', 'Subject: x\r\n\r\na\0b\r\n'].entries()) {
        const m = { id: `submit-bytes-${i}`, mailFrom: 'alice@example.test', recipients: ['carol@example.test'], body: Buffer.from(body, 'latin1'), mayRelay: false };
        await assert.rejects(submitter.submit(`127.0.0.1:${node.grpcPort}`, m, { origin: 'fe-x', log: [], asAccount: false }), (err: Error & { reply?: { code: number; enhanced: string } }) => err.reply?.code === 550 && err.reply.enhanced === '5.6.0');
      }
    } finally {
      submitter.close();
    }
    assert.equal((await mailbox.list('carol@example.test')).length, before, 'nothing stored');
  });

  it('sends as an account through the submit mode, and refuses a sender that is not an account', async () => {
    const msg = file('out.eml', 'To: friend@outside.test\nBcc: hidden@outside.test\nSubject: from the CLI\n\nhi there\n');
    const sent = await node.cli('send', '--as', 'alice@example.test', msg);
    assert.equal(sent.code, 0, sent.stderr);
    const got = await eventually('the sent message', async () => sink.messages.find((m) => m.to.includes('friend@outside.test')));
    assert.deepEqual([got.from, [...got.to].sort()], ['alice@example.test', ['friend@outside.test', 'hidden@outside.test']]);
    const text = got.raw.toString();
    assert.doesNotMatch(text, /^Bcc:/im);
    assert.match(text, /^From: alice@example.test\r$/m);
    assert.match(text, /^Message-ID: </m);
    assert.match(text, /hi there\r\n/);
    const refused = await node.cli('send', '--as', 'nobody@elsewhere.test', msg);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /not an account here/);
  });
});
