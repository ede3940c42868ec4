import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { deliverRaw, eventually, nodeLog, runCli, sendMail, startSink, clusterFolder } from '@mailgrid/testing';

// Submit modes and queue takers in a cluster of real processes (etcd, HAProxy, 2 frontends,
// 1 backend): mail made on the backend by an account's rules goes to a queue taker, or waits
// in the backend's own queue while there is none.

interface Member {
  id: string;
  role: string;
  submitMode?: string;
  epoch: number;
  grpc: string;
}

describe('submit modes: mail made on a backend, queue takers', () => {
  const { cwd, cli, ok, proc } = clusterFolder('submit-test');
  let sink: Awaited<ReturnType<typeof startSink>>;
  let state: { dir: string; smtp: string };
  const members = async () => JSON.parse((await cli('member', 'list', '--json')).stdout) as Member[];
  const modeOf = async (id: string) => (await members()).find((m) => m.id === id)?.submitMode;
  const takers = async () => (JSON.parse((await cli('queue', 'takers', '--json')).stdout) as Member[]).map((m) => m.id).sort();
  const logOf = (id: string) => nodeLog(state.dir, id);
  const sunk = (id: string) => sink.messages.filter((m) => m.raw.toString().includes(`X-Test-Id: ${id}\r\n`));
  const queued = async (node: string) => JSON.parse((await cli('queue', 'list', '--node', node, '--json')).stdout) as { recipients: { address: string; lastError?: { text: string } }[] }[];
  /**
   * Resolves once a line `id` logs after this call is in its log file: a log is written in
   * order (in batches, up to 250 ms late), so then is every line it logged before.
   */
  const logWrittenPastNow = async (id: string) => {
    const reply = await sendMail(`127.0.0.1:${proc(id).ports.smtp}`, { proxy: 'PROXY TCP4 192.0.2.20 127.0.0.1 40020 25\r\n', to: ['plain@example.test'], data: 'Subject: marker\r\n\r\nmarker\r\n' });
    const messageId = /as (\S+)/.exec(reply)?.[1];
    assert.ok(messageId, `${id}: ${reply}`);
    await eventually(`${id}'s log written past now`, async () => (logOf(id).some((l) => l.event === 'mail.accepted' && l.messageId === messageId) ? true : undefined));
  };

  before(async () => {
    sink = await startSink();
    const env = { MAILGRID_RELAY_SMARTHOST: `127.0.0.1:${sink.port}`, MAILGRID_QUEUE_MIN_RETRY_MS: '300', MAILGRID_QUEUE_MAX_RETRY_MS: '600' };
    const up = await runCli(['cluster', 'up', '--frontends', '2', '--groups', '1'], env, cwd);
    assert.equal(up.code, 0, up.stderr);
    state = JSON.parse(readFileSync(join(cwd, '.mailgrid', 'cluster.json'), 'utf8'));
    await ok('domain', 'add', 'example.test');
    await ok('account', 'add', 'fwd@example.test');
    await ok('account', 'add', 'plain@example.test');
    const rules = join(cwd, 'fwd.sieve');
    writeFileSync(rules, 'redirect "far@outside.test";\n');
    await ok('rules', 'set', 'fwd@example.test', rules);
    // Two copies to two other domains.
    await ok('account', 'add', 'fwd2@example.test');
    writeFileSync(rules, 'redirect "far@outside.test";\nredirect "near@other.test";\n');
    await ok('rules', 'set', 'fwd2@example.test', rules);
  });
  after(async () => {
    await ok('cluster', 'down');
    await sink.close();
  });

  it('publishes each member\'s submit mode and lists the frontends as queue takers', async () => {
    const byId = Object.fromEntries((await members()).map((m) => [m.id, m.submitMode]));
    assert.deepEqual(byId, { 'fe-1': 'local-for-others', 'fe-2': 'local-for-others', 'be-1': 'remote' });
    assert.deepEqual(await takers(), ['fe-1', 'fe-2']);
  });

  it('hands a redirect made on a backend in remote mode to a queue taker, which relays it, with the SUBMIT records in its log', async () => {
    await ok('node', 'set', 'be-1', 'submit.log', 'all');
    const reply = await sendMail(state.smtp, { from: 'someone@sender.test', to: ['fwd@example.test'], data: 'Subject: fwd\r\nX-Test-Id: remote-1\r\n\r\nredirect me\r\n' });
    assert.match(reply, /^250 /);
    const out = await eventually('the redirect at the outside server', async () => sunk('remote-1')[0]);
    assert.deepEqual([out.from, out.to], ['someone@sender.test', ['far@outside.test']]);
    assert.match(out.raw.toString(), /^X-Sieve-Redirected-From: fwd@example.test\r$/m);
    // The backend's record of what the rules did is in the log of the frontend that took it.
    // (Logs are written in batches: a line may come up to 250 ms after the fact.)
    const records = () => ['fe-1', 'fe-2'].flatMap((id) => logOf(id).filter((l) => l.tag === 'SUBMIT' && l.origin === 'be-1' && l.event === 'rules.applied'));
    await eventually('the SUBMIT record', async () => (records().length ? true : undefined));
    // be-1's hand-over is answered and nothing of it waits there: no other hand-over is to come; then each frontend's log is read past it.
    await eventually("be-1's hand-over answered", async () => (logOf('be-1').some((l) => l.event === 'submit.handed-over') ? true : undefined));
    assert.equal((await queued('be-1')).length, 0, 'nothing waits on the backend');
    for (const fe of ['fe-1', 'fe-2']) await logWrittenPastNow(fe);
    assert.equal(records().length, 1, 'one SUBMIT record in one frontend log');
    assert.equal(records()[0].actions, 'redirect:far@outside.test');
  });

  it('applies a submit mode changed in etcd without a restart', async () => {
    await ok('node', 'set', 'be-1', 'submit.mode', 'local');
    await eventually('be-1 in local mode', async () => ((await modeOf('be-1')) === 'local' ? true : undefined));
    assert.match(await sendMail(state.smtp, { to: ['fwd@example.test'], data: 'Subject: fwd\r\nX-Test-Id: local-1\r\n\r\nredirect me\r\n' }), /^250 /);
    await eventually('the redirect at the outside server', async () => sunk('local-1')[0]);
    // Queued and relayed by the backend itself (in remote mode its intake took none).
    const accepted = () => logOf('be-1').filter((l) => l.event === 'mail.accepted' && String(l.rcpts).startsWith('far@outside.test'));
    await eventually('the backend queued the redirect itself', async () => (accepted().length ? true : undefined));
    assert.equal(accepted().length, 1, 'once');
    await ok('node', 'unset', 'be-1', 'submit.mode');
    await eventually('be-1 back in remote mode', async () => ((await modeOf('be-1')) === 'remote' ? true : undefined));
  });

  it('takes a member whose queue has no room off the list of queue takers, and back', async () => {
    await ok('node', 'set', 'fe-2', 'queue.minFreeBytes', String(2 ** 50));
    await eventually('fe-2 off the list', async () => ((await takers()).join() === 'fe-1' ? true : undefined));
    await ok('node', 'unset', 'fe-2', 'queue.minFreeBytes');
    await eventually('fe-2 back on the list', async () => ((await takers()).join() === 'fe-1,fe-2' ? true : undefined));
  });

  it('queues on the backend while every queue taker is down, and hands it over once, when one returns', async () => {
    await ok('node', 'set', 'be-1', 'relay.viaFrontends', 'true');
    await ok('cluster', 'stop', 'fe-1');
    await ok('cluster', 'stop', 'fe-2');
    await eventually('no queue taker left', async () => ((await takers()).length === 0 ? true : undefined));
    const be = (await members()).find((m) => m.id === 'be-1')!;
    const body = Buffer.from('Subject: fwd\r\nX-Test-Id: waits-1\r\n\r\nredirect me later\r\n');
    const res = await deliverRaw(be.grpc, { messageId: 'waits-1-msg', mailFrom: 'someone@sender.test', group: 'g1', epoch: (JSON.parse((await cli('group', 'list', '--json')).stdout) as { epoch: number }[])[0].epoch, recipients: [{ address: 'fwd2@example.test', account: 'fwd2@example.test', idempotencyKey: 'waits-1-msg:fwd2@example.test' }] }, body);
    assert.equal(res.results[0].outcome, 'STORED', res.results[0].reply?.text);
    const waiting = JSON.parse((await cli('queue', 'list', '--node', 'be-1', '--json')).stdout) as { recipients: { address: string }[] }[];
    assert.deepEqual(waiting.map((m) => m.recipients.map((r) => r.address).sort()), [['far@outside.test', 'near@other.test']], 'the redirect waits in the backend queue');
    // be-1 tries it, and with no frontend live, keeps it instead of sending it out itself.
    await eventually('be-1 tried both recipients and found no frontend', async () =>
      (await queued('be-1')).flatMap((m) => m.recipients).filter((r) => /No frontend is live/.test(r.lastError?.text ?? '')).length === 2 ? true : undefined,
    );
    assert.equal(sunk('waits-1').length, 0, 'not relayed by the backend itself (relay.viaFrontends)');
    await ok('cluster', 'start', 'fe-1');
    await eventually('the redirect at the outside server', async () => sunk('waits-1')[0], 20_000);
    await eventually('the backend queue is empty', async () => (JSON.parse((await cli('queue', 'list', '--node', 'be-1', '--json')).stdout).length === 0 ? true : undefined));
    await eventually('both copies at the outside server', async () => (sunk('waits-1').flatMap((m) => m.to).length === 2 ? true : undefined));
    // The taker's queue has settled them too: nothing is left anywhere to send again.
    await eventually("fe-1's queue is empty", async () => ((await queued('fe-1')).length === 0 ? true : undefined));
    assert.deepEqual(sunk('waits-1').flatMap((m) => m.to).sort(), ['far@outside.test', 'near@other.test'], 'each sent once');
    await eventually("the wait told in the taker's log", async () => (logOf('fe-1').some((l) => l.tag === 'SUBMIT' && l.origin === 'be-1' && l.event === 'submit.waited') ? true : undefined));
    await ok('cluster', 'start', 'fe-2');
  });
});
