import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually, MailboxProbe, nodeLog, runCli, SmtpLoad, startTcpProxy, type TcpProxy, clusterFolder } from '@mailgrid/testing';

// Hosting groups with replicas, in a cluster of real processes (etcd, HAProxy, 1 frontend,
// one group of a primary and a replica), under steady SMTP load through HAProxy: kill -9 of
// the primary and of the replica, a primary cut off from etcd by a proxy, an etcd restart.
// Every acknowledged message must be in the group's mailbox exactly once.

interface Group {
  group: string;
  primary: string;
  address: string;
  epoch: number | string;
  inSync: string;
  lag: string;
}
interface Proc {
  id: string;
  role: string;
  pid: number;
  env: Record<string, string>;
}

const ACCOUNTS = ['a@example.test', 'b@example.test'];
/** Messages the load gets acknowledged at each step: before a fault, after a recovery. */
const STEP = 20;

describe('hosting groups: replicas, fenced failover, recovery', () => {
  const { cwd, cli, ok } = clusterFolder('replication-test');
  const stateFile = join(cwd, '.mailgrid', 'cluster.json');
  const state = () => JSON.parse(readFileSync(stateFile, 'utf8')) as { dir: string; smtp: string; etcd: string; processes: Proc[] };
  const group = async () => (JSON.parse((await ok('group', 'list', '--json')).stdout) as Group[])[0];
  const pidOf = (id: string) => state().processes.find((p) => p.id === id)!.pid;
  const inSync = async () => (await group()).inSync.split(',').sort().join(',');
  const logOf = (id: string) => nodeLog(state().dir, id);
  /** A new primary other than `old`, with the time it took to appear. */
  const newPrimary = async (old: string, since: number) => {
    const g = await eventually(`a primary other than ${old}`, async () => {
      const g = await group().catch(() => undefined);
      return g && g.primary !== old && g.primary !== '-' ? g : undefined;
    }, 30_000);
    return { ...g, tookMs: Date.now() - since };
  };
  const queuesEmpty = () => eventually('the frontend queue is empty', async () => (JSON.parse((await cli('queue', 'list', '--json')).stdout).length === 0 ? true : undefined), 60_000);

  /** Every acknowledged message is in its account at the group's primary exactly once. */
  const exactlyOnce = async (acked: Iterable<string>) => {
    const g = await group();
    const probe = new MailboxProbe(g.address);
    try {
      const seen = await probe.testIds(ACCOUNTS);
      const missing = [...acked].filter((id) => !seen.has(id));
      const twice = [...seen].filter(([, n]) => n > 1).map(([id]) => id);
      assert.deepEqual(missing, [], `acknowledged but not stored at ${g.primary}`);
      assert.deepEqual(twice, [], 'stored more than once');
      return seen.size;
    } finally {
      probe.close();
    }
  };

  before(async () => {
    const env = { MAILGRID_QUEUE_MIN_RETRY_MS: '300', MAILGRID_QUEUE_MAX_RETRY_MS: '1000' };
    const up = await runCli(['cluster', 'up', '--frontends', '1', '--groups', '1', '--replicas', '1'], env, cwd);
    assert.equal(up.code, 0, up.stderr);
    await ok('domain', 'add', 'example.test');
    for (const a of ACCOUNTS) await ok('account', 'add', a);
  });
  after(async () => {
    await cli('cluster', 'down');
  });

  it('elects one primary; the replica catches up and joins the in-sync set; cluster status shows both', async () => {
    const g = await group();
    assert.equal(g.primary, 'be-1');
    await eventually('the replica in sync', async () => ((await inSync()) === 'be-1,be-1-r1' ? true : undefined));
    // A member republishes its place within a second of a change, so status may trail the election briefly.
    const status = await eventually('cluster status shows the places', async () => {
      const status = JSON.parse((await ok('cluster', 'status', '--json')).stdout);
      const places = status.members.filter((m: { role: string }) => m.role === 'backend').map((m: { id: string; place: string }) => `${m.id}:${m.place}`);
      return places.join(',') === 'be-1:primary,be-1-r1:replica' ? status : undefined;
    });
    assert.equal(status.groups[0].epoch, g.epoch);
  });

  it('kill -9 of the primary under load: the replica is elected, and every acknowledged message is stored exactly once', async (t) => {
    const load = new SmtpLoad(state().smtp, 'kill-primary', ACCOUNTS);
    t.after(() => load.stop());
    await load.acknowledged(STEP);
    const before = load.acked.size;
    process.kill(pidOf('be-1'), 'SIGKILL');
    const killedAt = Date.now();
    const g = await newPrimary('be-1', killedAt);
    assert.equal(g.primary, 'be-1-r1');
    process.stdout.write(`# failover after kill -9: ${g.tookMs} ms (lease TTL 5 s)\n`);
    await load.acknowledged(load.acked.size + STEP);
    await load.stop();
    assert.ok(before > 0 && load.acked.size > before, `mail acknowledged before (${before}) and after (${load.acked.size}) the kill`);
    await queuesEmpty();
    const stored = await exactlyOnce(load.acked.keys());
    assert.ok(stored >= load.acked.size);
    const events = logOf('be-1-r1').map((l) => l.event);
    assert.ok(events.includes('leadership.elected'));
  });

  it('the killed primary comes back as a replica, catches up from the log and rejoins; it then has everything', async (t) => {
    await ok('cluster', 'start', 'be-1');
    await eventually('be-1 in sync again', async () => ((await inSync()) === 'be-1,be-1-r1' ? true : undefined), 30_000);
    const caughtUp = logOf('be-1').find((l) => l.event === 'replication.following');
    assert.ok(caughtUp, 'be-1 follows the new primary');
    // More mail, then the new primary dies too: be-1 must hold all of it.
    const load = new SmtpLoad(state().smtp, 'rejoined', ACCOUNTS, 2);
    t.after(() => load.stop());
    await load.acknowledged(STEP);
    await load.stop();
    process.kill(pidOf('be-1-r1'), 'SIGKILL');
    assert.equal((await newPrimary('be-1-r1', Date.now())).primary, 'be-1');
    await queuesEmpty();
    await exactlyOnce(load.acked.keys());
    await ok('cluster', 'start', 'be-1-r1');
    await eventually('both in sync', async () => ((await inSync()) === 'be-1,be-1-r1' ? true : undefined), 30_000);
  });

  it('kill -9 of the replica: writes go on without it; restarted under load, it catches up and rejoins', async (t) => {
    process.kill(pidOf('be-1-r1'), 'SIGKILL');
    const load = new SmtpLoad(state().smtp, 'kill-replica', ACCOUNTS, 2);
    t.after(() => load.stop());
    await eventually('the replica out of the in-sync set', async () => ((await inSync()) === 'be-1' ? true : undefined));
    const left = load.acked.size;
    await load.acknowledged(left + STEP);
    const without = load.acked.size;
    assert.ok(without > left, 'writes go on without the replica');
    // Back while mail keeps coming: it must catch up with a moving log and rejoin.
    await ok('cluster', 'start', 'be-1-r1');
    await eventually('the replica in sync again under load', async () => ((await inSync()) === 'be-1,be-1-r1' ? true : undefined), 30_000);
    await load.acknowledged(load.acked.size + STEP);
    await load.stop();
    assert.ok(load.acked.size > without, 'writes went on while it rejoined');
    await queuesEmpty();
    await exactlyOnce(load.acked.keys());
    await eventually('lag 0', async () => ((await group()).lag === 'be-1-r1:0' ? true : undefined));
  });

  describe('a primary cut off from etcd', () => {
    let proxy: TcpProxy;
    before(async () => {
      // be-1 talks to etcd through a proxy the test controls; make it the primary.
      proxy = await startTcpProxy(state().etcd.replace('http://', ''));
      await ok('cluster', 'stop', 'be-1');
      const s = JSON.parse(readFileSync(stateFile, 'utf8'));
      s.processes.find((p: Proc) => p.id === 'be-1').env.MAILGRID_ETCD = `http://${proxy.address}`;
      writeFileSync(stateFile, JSON.stringify(s, null, 2));
      await ok('cluster', 'start', 'be-1');
      await eventually('be-1 in sync', async () => ((await inSync()) === 'be-1,be-1-r1' ? true : undefined), 30_000);
      await ok('cluster', 'stop', 'be-1-r1');
      await eventually('be-1 primary', async () => ((await group()).primary === 'be-1' ? true : undefined), 30_000);
      await ok('cluster', 'start', 'be-1-r1');
      await eventually('both in sync', async () => ((await inSync()) === 'be-1,be-1-r1' ? true : undefined), 30_000);
    });
    after(async () => {
      // Back to etcd directly. (Behind the proxy, be-1 did not re-register after an etcd
      // restart: open, see the issue notes.)
      await ok('cluster', 'stop', 'be-1');
      const s = JSON.parse(readFileSync(stateFile, 'utf8'));
      s.processes.find((p: Proc) => p.id === 'be-1').env.MAILGRID_ETCD = s.etcd;
      writeFileSync(stateFile, JSON.stringify(s, null, 2));
      await ok('cluster', 'start', 'be-1');
      await eventually('be-1 in sync', async () => ((await inSync()) === 'be-1,be-1-r1' ? true : undefined), 30_000);
      await proxy?.close();
    });

    it('stops taking writes before its lease can lapse; the replica takes over; no write is accepted by both', async (t) => {
      const load = new SmtpLoad(state().smtp, 'cut-off', ACCOUNTS, 2);
      t.after(() => load.stop());
      await load.acknowledged(STEP);
      proxy.cut();
      const cutAt = Date.now();
      const g = await newPrimary('be-1', cutAt);
      assert.equal(g.primary, 'be-1-r1');
      await load.acknowledged(load.acked.size + STEP);
      await load.stop();
      // be-1's last store write was before be-1-r1 was elected: never both at once.
      const elected = logOf('be-1-r1').filter((l) => l.event === 'leadership.elected').map((l) => Date.parse(String(l.time))).pop()!;
      const stored = logOf('be-1')
        .filter((l) => l.event === 'delivery.done' && /=STORED/.test(String(l.rcpts)))
        .map((l) => Date.parse(String(l.time)));
      assert.ok(stored.length > 0);
      assert.ok(Math.max(...stored) < elected, `be-1 stored mail ${Math.max(...stored) - elected} ms after be-1-r1 was elected`);
      proxy.restore();
      await queuesEmpty();
      await exactlyOnce(load.acked.keys());
      // Back in touch, it rejoins as a replica.
      await eventually('be-1 in sync again', async () => ((await inSync()) === 'be-1,be-1-r1' ? true : undefined), 30_000);
    });
  });

  it('an etcd restart never leaves two primaries', async (t) => {
    const load = new SmtpLoad(state().smtp, 'etcd-restart', ACCOUNTS, 2);
    t.after(() => load.stop());
    await load.acknowledged(STEP);
    const leader = (await group()).primary;
    const stoppedAt = Date.now();
    await ok('cluster', 'stop', 'etcd');
    // etcd stays away until the primary has stopped taking writes: its lease could lapse.
    const demoted = () => logOf(leader).some((l) => l.event === 'leadership.demoted' && l.pid === pidOf(leader) && Date.parse(String(l.time)) >= stoppedAt);
    await eventually(`${leader} steps down while etcd is away`, async () => (demoted() ? true : undefined), 30_000);
    await ok('cluster', 'start', 'etcd');
    // With etcd back, one is elected again.
    await eventually('a primary and both in sync', async () => ((await group().catch(() => undefined))?.primary !== '-' && (await inSync()) === 'be-1,be-1-r1' ? true : undefined), 30_000).catch(async (err) => {
      const events = ['be-1', 'be-1-r1'].flatMap((id) => logOf(id).filter((l) => /^(leadership|replication)\./.test(String(l.event))).slice(-8).map((l) => `${id} ${l.time} ${l.event} ${l.reason ?? l.err ?? ''}`));
      throw new Error(`${(err as Error).message}; group: ${JSON.stringify(await group().catch(() => undefined))}\n${events.join('\n')}`);
    });
    await load.acknowledged(load.acked.size + STEP);
    await load.stop();
    // The terms as primary (elected … writes ended) of the processes running now never overlap.
    const termsNow = () =>
      ['be-1', 'be-1-r1'].flatMap((id) => {
        const out: { id: string; from: number; to: number }[] = [];
        for (const l of logOf(id).filter((l) => l.pid === pidOf(id))) {
          const t = Date.parse(String(l.time));
          if (l.event === 'leadership.elected') out.push({ id, from: t, to: Infinity });
          // Its writes ended when its lease could no longer be trusted, which may be before it noticed.
          if (l.event === 'leadership.demoted' && out.length && out[out.length - 1].to === Infinity) out[out.length - 1].to = Date.parse(String(l.writableUntil));
        }
        return out;
      });
    const primary = await eventually('one primary, the one etcd names', async () => {
      const open = termsNow().filter((t) => t.to === Infinity);
      const g = await group().catch(() => undefined);
      return open.length === 1 && g?.primary === open[0].id ? g.primary : undefined;
    }, 30_000);
    const terms = termsNow();
    assert.equal(terms.filter((t) => t.to === Infinity).length, 1, `one primary (${primary}): ${JSON.stringify(terms)}`);
    for (const a of terms) for (const b of terms) if (a.id !== b.id) assert.ok(a.to <= b.from || b.to <= a.from, `terms overlap: ${JSON.stringify([a, b])}`);
    await queuesEmpty();
    await exactlyOnce(load.acked.keys());
  });
});
