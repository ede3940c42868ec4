import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually, repoRoot, runCli, sendMail, startNode, startSink, clusterFolder } from '@mailgrid/testing';

// /metrics of every node of a local cluster (etcd, HAProxy, 2 frontends, one group of a
// primary and a replica), read by the Prometheus project's own Python parser and linted by
// promtool: the counters move with the mail the test sends, the state gauges say what the
// cluster is. And a replica's /readyz: 503 until it has every write of its group.

const SCRAPER = join(repoRoot, 'test', 'clients', 'scrape_metrics.py');

type Sample = [name: string, labels: Record<string, string>, value: number];
type Page = { types: Record<string, string>; samples: Sample[] };

const scrape = (urls: string[]): Promise<Record<string, Page>> =>
  new Promise((resolve, reject) =>
    execFile('/usr/bin/python3', [SCRAPER, ...urls], { timeout: 30_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout)))),
  );

/** The sum of a sample over pages, for the samples whose labels include `labels`. */
const total = (pages: Page[], name: string, labels: Record<string, string> = {}) =>
  pages.flatMap((p) => p.samples).filter(([n, l]) => n === name && Object.entries(labels).every(([k, v]) => l[k] === v)).reduce((sum, [, , v]) => sum + v, 0);

interface Proc {
  id: string;
  pid: number;
  role: string;
  ports: Record<string, number>;
}

describe('metrics: every node of a cluster, read by an independent parser', () => {
  const { cwd, cli, ok, state } = clusterFolder('metrics');
  const nodes = (role: string) => state().processes.filter((p) => p.role === role);
  const url = (p: Proc, path = '/metrics') => `http://127.0.0.1:${p.ports.http}${path}`;
  const pages = async (role: string) => Object.values(await scrape(nodes(role).map((p) => url(p))));
  let sink: Awaited<ReturnType<typeof startSink>>;

  before(async () => {
    sink = await startSink();
    const env = { MAILGRID_RELAY_SMARTHOST: `127.0.0.1:${sink.port}`, MAILGRID_SMTP_TRUSTED_NETWORKS: '127.0.0.1' };
    const up = await runCli(['cluster', 'up', '--frontends', '2', '--groups', '1', '--replicas', '1'], env, cwd);
    assert.equal(up.code, 0, up.stderr);
    await ok('domain', 'add', 'example.test');
    await ok('account', 'add', 'ann@example.test');
  });
  after(async () => {
    for (const p of state().processes) {
      try {
        process.kill(p.pid, 'SIGCONT');
      } catch {
        // not running
      }
    }
    await cli('cluster', 'down');
    await sink?.close();
  });

  it('counters move with the mail sent; replication, lease and process figures are there; promtool finds nothing to fix in ours', async () => {
    const before = await pages('frontend');
    const n = (name: string, labels?: Record<string, string>) => total(before, name, labels);
    for (let i = 0; i < 5; i++) assert.match(await sendMail(state().smtp, { to: ['ann@example.test'], data: `Subject: local ${i}\r\n\r\nhi\r\n` }), /^250 /);
    for (let i = 0; i < 2; i++) assert.match(await sendMail(state().smtp, { to: ['out@outside.test'], data: `Subject: remote ${i}\r\n\r\nhi\r\n` }), /^250 /);
    assert.match(await sendMail(state().smtp, { to: ['nobody@example.test'], data: 'Subject: x\r\n\r\nhi\r\n' }).catch((e: Error) => e.message), /550/);
    await eventually('the sink has both', async () => (sink.messages.length >= 2 ? true : undefined), 30_000);

    const after = await eventually(
      'the relayed recipients counted',
      async () => {
        const p = await pages('frontend');
        return total(p, 'mailgrid_messages_relayed_total') - n('mailgrid_messages_relayed_total') === 2 ? p : undefined;
      },
      30_000,
    );
    const d = (name: string, labels?: Record<string, string>) => total(after, name, labels) - n(name, labels);
    assert.equal(d('mailgrid_messages_accepted_total', { listener: 'smtp' }), 7);
    assert.equal(d('mailgrid_messages_delivered_total'), 5);
    assert.equal(d('mailgrid_delivery_duration_seconds_count', { route: 'local' }), 5);
    assert.equal(d('mailgrid_delivery_duration_seconds_count', { route: 'remote' }), 2);
    assert.ok(d('mailgrid_delivery_duration_seconds_sum', { route: 'local' }) > 0);
    assert.equal(d('mailgrid_messages_bounced_total'), 0);
    assert.ok(d('mailgrid_sessions_total', { protocol: 'smtp', listener: 'smtp' }) >= 8);
    assert.ok(d('mailgrid_smtp_replies_total', { class: '5xx' }) >= 1, 'the 550 counted');
    assert.ok(d('mailgrid_smtp_replies_total', { class: '2xx' }) >= 8 * 4, 'greeting, EHLO, MAIL, RCPT of each session');
    assert.ok(d('mailgrid_smtp_replies_total', { class: '3xx' }) >= 7, 'a 354 for each DATA');
    assert.equal(total(after, 'mailgrid_queue_messages'), 0);
    assert.equal(total(after, 'mailgrid_queue_oldest_age_seconds'), 0);
    // A partnership is set up after the node is ready: wait for both, not for a moment.
    await eventually("each frontend's queue has its partner's copy", async () => (total(await pages('frontend'), 'mailgrid_queue_protected') === 2 ? true : undefined), 30_000);
    assert.equal(after[0].types.mailgrid_messages_accepted, 'counter');
    assert.equal(after[0].types.mailgrid_delivery_duration_seconds, 'histogram');

    const backends = await eventually(
      'the replica in sync, as the primary reports it',
      async () => {
        const p = await pages('backend');
        return total(p, 'mailgrid_replication_in_sync_members', { group: 'g1' }) === 2 ? p : undefined;
      },
      30_000,
    );
    assert.equal(total(backends, 'mailgrid_group_primary', { group: 'g1' }), 1, 'one primary');
    const epochs = backends.map((p) => total([p], 'mailgrid_replication_epoch', { group: 'g1' }));
    assert.ok(epochs[0] > 0 && epochs[0] === epochs[1], `both members in one epoch: ${epochs}`);
    assert.equal(backends.flatMap((p) => p.samples).filter(([name]) => name === 'mailgrid_replication_lag_entries').length, 1, "the replica's lag, from the primary");
    const all = [...after, ...backends];
    assert.equal(total(all, 'mailgrid_lease_held'), 4, 'every node holds its lease');
    assert.equal(total(all, 'mailgrid_node_info', { role: 'frontend' }), 2);
    assert.equal(total(all, 'mailgrid_node_info', { role: 'backend' }), 2);
    assert.equal(total(all, 'mailgrid_disk_guard_active'), 0);
    for (const p of all) {
      assert.equal(p.types.process_cpu_seconds, 'counter');
      assert.ok(total([p], 'process_resident_memory_bytes') > 0);
    }

    // promtool's lint (Prometheus' naming rules): nothing about our metrics (prom-client's own nodejs_* gauges end in _total).
    for (const p of [...nodes('frontend'), ...nodes('backend')]) {
      const text = await (await fetch(url(p))).text();
      const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      assert.ok(lint.status === 0 || lint.status === 3, `promtool ran: ${lint.stderr}`);
      assert.deepEqual(`${lint.stdout}${lint.stderr}`.split('\n').filter((l) => l.includes('mailgrid_')), [], `${p.id}: promtool's findings`);
    }
  });

  it("a replica's /readyz says 503 until it has every write of its group, then 200", async () => {
    const members = JSON.parse((await ok('member', 'list', '--json')).stdout) as { id: string; groupRole: string }[];
    const replica = nodes('backend').find((p) => members.find((m) => m.id === p.id)?.groupRole === 'replica')!;
    const primary = nodes('backend').find((p) => p !== replica)!;
    assert.equal((await fetch(url(replica, '/readyz'))).status, 200);
    // The replica dies; its primary takes it out of the in-sync set. The primary is then
    // paused, so the replica, started again, cannot catch up.
    process.kill(replica.pid, 'SIGKILL');
    const alone = async () => total(Object.values(await scrape([url(primary)])), 'mailgrid_replication_in_sync_members') === 1;
    await eventually('the primary alone in sync', async () => ((await alone()) ? true : undefined), 30_000);
    process.kill(primary.pid, 'SIGSTOP');
    try {
      await ok('cluster', 'start', replica.id);
      // Started and registered, every service running, and still not ready: it has not caught up.
      const res = await eventually('the replica answering', async () => {
        const r = await fetch(url(nodes('backend').find((p) => p.id === replica.id)!, '/readyz'));
        const body = (await r.json()) as { reason?: string };
        return r.status === 503 && !/not running/.test(String(body.reason)) ? body : undefined;
      });
      assert.equal(res.reason, 'not in the in-sync set of hosting group g1');
    } finally {
      process.kill(primary.pid, 'SIGCONT');
    }
    const restarted = nodes('backend').find((p) => p.id === replica.id)!;
    await eventually('the replica ready once it has caught up', async () => ((await fetch(url(restarted, '/readyz'))).status === 200 ? true : undefined), 60_000);
    assert.equal((await fetch(url(primary, '/readyz'))).status, 200);
  });
});

describe('metrics: a single node, whose backend runs in a worker thread with its own registry', () => {
  it("one /metrics with both threads' figures, each once", async () => {
    const node = await startNode();
    try {
      assert.equal((await node.cli('domain', 'add', 'example.test')).code, 0);
      assert.equal((await node.cli('account', 'add', 'ann@example.test')).code, 0);
      assert.match(await sendMail(node.smtpPort, { to: ['ann@example.test'], data: 'Subject: one\r\n\r\nhi\r\n' }), /^250 /);
      const url = `http://127.0.0.1:${node.ports.http}/metrics`;
      const page = Object.values(await scrape([url]))[0];
      assert.equal(total([page], 'mailgrid_messages_accepted_total', { listener: 'smtp' }), 1);
      assert.equal(total([page], 'mailgrid_messages_delivered_total'), 1);
      assert.equal(total([page], 'mailgrid_node_info', { role: 'single' }), 1);
      // The store's disk guard lives on the backend thread, the queue's on the main one.
      assert.deepEqual(page.samples.filter(([n]) => n === 'mailgrid_disk_guard_active').map(([, l]) => l.guard).sort(), ['queue', 'store']);
      // Process figures come from the main thread alone, not summed with the worker's.
      assert.equal(page.samples.filter(([n]) => n === 'process_resident_memory_bytes').length, 1);
      const rss = total([page], 'process_resident_memory_bytes');
      assert.ok(rss > 0 && rss < 4 * 1024 ** 3, `a plausible RSS: ${rss}`);
    } finally {
      await node.stop();
    }
  });
});
