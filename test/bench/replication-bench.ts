/**
 * `npm run bench:replication`: hosting groups with replicas, printed as figures (not a test).
 *
 *   npm run bench:replication -- [--messages 2000] [--sessions 8] [--kills 20]
 *                                [--catchup 100000] [--import 1000000] [--only a,b,c,d]
 *
 * a. Throughput through HAProxy into one group, unreplicated (1 backend) and then
 *    replicated (primary + 1 replica, every write acked by both), in the same run: messages/s
 *    and the ratio (each its own `cluster up`, one frontend).
 * b. Failover: kill -9 of the primary, `--kills` times; the time from the kill until etcd
 *    names another primary (polled every 20 ms), median and worst. The killed member is
 *    started again and waited for in the in-sync set before the next kill.
 * c. Catch-up: the replica is killed, `--catchup` messages are delivered to the primary over
 *    the delivery channel, the replica is started again; the time until it is back in the
 *    in-sync set, and the rate.
 * d. Import: `mailgrid account import` of `--import` CSV lines into a fresh etcd.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, createWriteStream } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connectEtcd, Keys } from '@mailgrid/cluster';
import { createDeliveryClient, deadline } from '@mailgrid/protocol';
import { cliPath, runCli, sendMail, sleep, startEtcd } from '@mailgrid/testing';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '2000' },
    sessions: { type: 'string', default: '8' },
    kills: { type: 'string', default: '20' },
    catchup: { type: 'string', default: '100000' },
    import: { type: 'string', default: '1000000' },
    only: { type: 'string', default: 'a,b,c,d' },
  },
});
const only = new Set(values.only.split(','));
const figures: Record<string, unknown> = {};
const PREFIX = '/mailgrid/v1';
const keys = new Keys(PREFIX);

interface Cluster {
  cwd: string;
  state: () => { smtp: string; etcd: string; processes: { id: string; pid: number }[] };
  cli: (...args: string[]) => ReturnType<typeof runCli>;
}

async function up(replicas: number): Promise<Cluster> {
  const cwd = mkdtempSync(join(tmpdir(), 'mailgrid-bench-repl-'));
  const cli = (...args: string[]) => runCli(args, {}, cwd);
  const r = await runCli(['cluster', 'up', '--frontends', '1', '--groups', '1', '--replicas', String(replicas)], { MAILGRID_LOG_LEVEL: 'warn' }, cwd);
  if (r.code !== 0) throw new Error(r.stderr);
  await cli('domain', 'add', 'example.test');
  await cli('account', 'add', 'a@example.test', '--group', 'g1');
  const state = () => JSON.parse(readFileSync(join(cwd, '.mailgrid', 'cluster.json'), 'utf8'));
  return { cwd, state, cli };
}

async function leader(etcd: string): Promise<{ id: string; grpc: string; epoch: number } | undefined> {
  const c = connectEtcd(etcd);
  try {
    const kv = (await c.get(keys.election('g1')).exec()).kvs[0];
    return kv && { ...JSON.parse(kv.value.toString()), epoch: Number(kv.create_revision) };
  } finally {
    c.close();
  }
}

async function inSync(etcd: string): Promise<string[]> {
  const c = connectEtcd(etcd);
  try {
    const v = await c.get(keys.inSync('g1')).string();
    return v ? JSON.parse(v).members : [];
  } finally {
    c.close();
  }
}

async function waitFor(what: string, probe: () => Promise<boolean>, ms = 120_000, every = 20): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await probe().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(every);
  }
}

async function throughput(replicas: number): Promise<number> {
  const c = await up(replicas);
  try {
    if (replicas) await waitFor('replica in sync', async () => (await inSync(c.state().etcd)).length === 1 + replicas);
    const N = Number(values.messages);
    const body = `Subject: bench\r\n\r\n${'x'.repeat(2000)}\r\n`;
    let next = 0;
    let acked = 0;
    const t0 = Date.now();
    await Promise.all(
      Array.from({ length: Number(values.sessions) }, async () => {
        while (next < N) {
          next++;
          if ((await sendMail(c.state().smtp, { to: ['a@example.test'], data: body })).startsWith('250')) acked++;
        }
      }),
    );
    const seconds = (Date.now() - t0) / 1000;
    return acked / seconds;
  } finally {
    await c.cli('cluster', 'down');
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  console.log(`# mailgrid bench:replication, ${cpus().length} cores`);
  if (only.has('a')) {
    const plain = await throughput(0);
    const replicated = await throughput(1);
    figures.throughput = { unreplicated: Math.round(plain), replicated: Math.round(replicated), ratio: +(replicated / plain).toFixed(2), messages: Number(values.messages), sessions: Number(values.sessions) };
    console.log(`throughput through HAProxy: unreplicated ${plain.toFixed(0)} msg/s, replicated (1 + 1) ${replicated.toFixed(0)} msg/s, ratio ${(replicated / plain).toFixed(2)}`);
  }
  if (only.has('b') || only.has('c')) {
    const c = await up(1);
    try {
      const etcd = c.state().etcd;
      await waitFor('replica in sync', async () => (await inSync(etcd)).length === 2);
      if (only.has('b')) {
        const times: number[] = [];
        for (let i = 0; i < Number(values.kills); i++) {
          const old = (await leader(etcd))!;
          process.kill(c.state().processes.find((p) => p.id === old.id)!.pid, 'SIGKILL');
          const t0 = Date.now();
          await waitFor('a new primary', async () => {
            const l = await leader(etcd);
            return Boolean(l && l.id !== old.id);
          });
          times.push(Date.now() - t0);
          await c.cli('cluster', 'start', old.id);
          await waitFor('both in sync', async () => (await inSync(etcd)).length === 2);
          process.stdout.write(`  kill ${i + 1}: ${times[i]} ms\n`);
        }
        figures.failover = { kills: times.length, medianMs: median(times), worstMs: Math.max(...times), leaseTtlSec: 5 };
        console.log(`failover after kill -9 of the primary: median ${median(times)} ms, worst ${Math.max(...times)} ms over ${times.length} kills (lease TTL 5 s)`);
      }
      if (only.has('c')) {
        const M = Number(values.catchup);
        const l = (await leader(etcd))!;
        const replica = c.state().processes.find((p) => p.id.startsWith('be-1') && p.id !== l.id)!;
        process.kill(replica.pid, 'SIGKILL');
        await waitFor('replica dropped', async () => (await inSync(etcd)).length === 1);
        const body = Buffer.from(`Subject: catch-up\r\n\r\n${'y'.repeat(2000)}\r\n`);
        let next = 0;
        const client = createDeliveryClient(l.grpc);
        const deliver = (id: string) =>
          new Promise<void>((resolve, reject) =>
            client.DeliverWhole(
              { envelope: { messageId: id, mailFrom: 's@x.test', group: 'g1', epoch: l.epoch, size: body.length, receivedAtMs: Date.now(), recipients: [{ address: 'a@example.test', account: 'a@example.test', idempotencyKey: `${id}:a` }] }, chunk: body },
              { deadline: deadline(30_000) },
              (err) => (err ? reject(err) : resolve()),
            ),
          );
        const t0 = Date.now();
        await Promise.all(
          Array.from({ length: 16 }, async () => {
            while (next < M) await deliver(`cu-${++next}`);
          }),
        );
        client.close();
        const loadSeconds = (Date.now() - t0) / 1000;
        const t1 = Date.now();
        await c.cli('cluster', 'start', replica.id);
        await waitFor('the replica back in sync', async () => (await inSync(etcd)).length === 2, 600_000, 100);
        const seconds = (Date.now() - t1) / 1000;
        figures.catchUp = { messages: M, seconds: +seconds.toFixed(1), perSecond: Math.round(M / seconds), deliveredPerSecond: Math.round(M / loadSeconds) };
        console.log(`catch-up of a replica that was down for ${M} messages: ${seconds.toFixed(1)} s from its start to in sync (${Math.round(M / seconds)} msg/s; the primary took them at ${Math.round(M / loadSeconds)}/s)`);
      }
    } finally {
      await c.cli('cluster', 'down');
    }
  }
  if (only.has('d')) {
    const N = Number(values.import);
    const etcd = await startEtcd();
    try {
      const client = connectEtcd(etcd.endpoint);
      for (const g of ['g1', 'g2', 'g3', 'g4']) await client.put(keys.group(g)).value('{}');
      for (let d = 0; d < 4; d++) await client.put(keys.domain(`d${d}.test`)).value('{}');
      client.close();
      const dir = mkdtempSync(join(tmpdir(), 'mailgrid-bench-import-'));
      const file = join(dir, 'accounts.csv');
      const out = createWriteStream(file);
      for (let i = 0; i < N; i++) if (!out.write(`user${i}@d${i % 4}.test,g${(i % 4) + 1}\n`)) await new Promise<void>((r) => out.once('drain', () => r()));
      await new Promise<void>((r) => out.end(() => r()));
      const run = () =>
        new Promise<{ loaded: number; unchanged: number; seconds: number; perSecond: number }>((resolve, reject) =>
          execFile(process.execPath, [cliPath, '--json', 'account', 'import', file], { env: { ...process.env, MAILGRID_ETCD: etcd.endpoint }, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
            err && !stdout ? reject(new Error(stderr)) : resolve(JSON.parse(stdout)),
          ),
        );
      const first = await run();
      const again = await run();
      figures.import = { accounts: N, loaded: first.loaded, seconds: first.seconds, perSecond: first.perSecond, againSeconds: again.seconds, againUnchanged: again.unchanged };
      console.log(`account import of ${N} accounts: ${first.loaded} loaded in ${first.seconds.toFixed(1)} s (${first.perSecond}/s); run again: ${again.unchanged} already there in ${again.seconds.toFixed(1)} s`);
    } finally {
      await etcd.stop();
    }
  }
  mkdirSync('bench-results', { recursive: true });
  writeFileSync(join('bench-results', `replication-${Date.now()}.json`), JSON.stringify(figures, null, 2));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
