/**
 * `npm run bench`: throughput and latency of a single node, printed as figures (not a test).
 *
 *   npm run bench -- [--messages 20000] [--size 4096] [--concurrency 32] [--rate 300]
 *                    [--latency-messages 3000] [--recipients 1]
 *                    [--target 127.0.0.1:2525 --grpc 127.0.0.1:7525]
 *
 * 1. Throughput: Postfix's smtp-source (-s C -m N -l S, one message per connection) when
 *    installed, else our own client with C sessions; every message must be stored.
 * 2. Latency: our own client at a fixed rate, one message per connection; time from the
 *    end of DATA (the final dot) to the 250.
 * 3. The node's peak RSS (VmHWM) after both.
 * Without --target it starts its own node on a temporary data dir; with --cluster it runs
 * `mailgrid cluster up --frontends 2 --groups 2` and sends through HAProxy, half of the
 * messages to an account of each group. --queue puts every message through the durable
 * queue (delivery.inline=false) and also reports when the last one was stored.
 * --recipients N sends each message to N accounts of the same group (smtp-source's -r:
 * bench@, 2bench@, ... Nbench@), the shape that takes the queue-first way in (Intake).
 * --cluster runs the load twice, with the queue partner copy on (the default) and off
 * (queue.partnerCopy=false), and prints what the copy costs; --partner-copy on|off runs one.
 * --cluster --shared-ports both runs it through HAProxy and then with no balancer, the two
 * frontends sharing their ports (`cluster up --shared-ports`, listen.reusePort: the kernel
 * spreads the connections), and prints the ratio; --shared-ports on runs only the latter.
 */
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fillerMessage, MailboxProbe, runCli, SmtpTranscript, startNode, type NodeHandle } from '@mailgrid/testing';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '20000' },
    size: { type: 'string', default: '4096' },
    concurrency: { type: 'string', default: '32' },
    rate: { type: 'string', default: '300' },
    'latency-messages': { type: 'string', default: '3000' },
    target: { type: 'string' },
    grpc: { type: 'string' },
    client: { type: 'string', default: 'auto' },
    cluster: { type: 'boolean', default: false },
    queue: { type: 'boolean', default: false },
    recipients: { type: 'string', default: '1' },
    'partner-copy': { type: 'string', default: 'both' },
    /** both: the cluster with HAProxy, then with the frontends sharing their ports (listen.reusePort), and the ratio. */
    'shared-ports': { type: 'string', default: 'off' },
  },
});
const N = Number(values.messages);
const SIZE = Number(values.size);
const C = Number(values.concurrency);
const RATE = Number(values.rate);
const LN = Number(values['latency-messages']);
const R = Number(values.recipients);
/** The accounts smtp-source -r R sends one message to, for its -t address. */
const recipientsOf = (rcpt: string) => [rcpt, ...Array.from({ length: R - 1 }, (_, i) => `${i + 2}${rcpt}`)];
/** One recipient per hosting group (the single node has one group). */
let RCPTS = ['bench@example.test'];
const RCPT = RCPTS[0];

const body = (size: number, id: string) => fillerMessage(size, `From: load@sender.test\r\nTo: ${RCPT}\r\nSubject: bench ${id}`);

async function sendOne(port: number, host: string, data: string, rcpt = RCPTS[Math.floor(Math.random() * RCPTS.length)]): Promise<number> {
  const s = await SmtpTranscript.open(port, host);
  try {
    await s.expect('220');
    await s.send('EHLO bench.test', '250');
    await s.send('MAIL FROM:<load@sender.test>', '250');
    for (const r of recipientsOf(rcpt)) await s.send(`RCPT TO:<${r}>`, '250');
    await s.send('DATA', '354');
    const t0 = process.hrtime.bigint();
    s.write(data + '.\r\n');
    await s.expect('250');
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    s.write('QUIT\r\n');
    return ms;
  } finally {
    s.close();
  }
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

async function ownClientThroughput(host: string, port: number): Promise<{ seconds: number; acked: number; latencies: number[] }> {
  const data = body(SIZE, 'throughput');
  let next = 0;
  let acked = 0;
  const latencies: number[] = [];
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: C }, async () => {
      while (next < N) {
        next++;
        latencies.push(await sendOne(port, host, data));
        acked++;
      }
    }),
  );
  return { seconds: (Date.now() - t0) / 1000, acked, latencies };
}

/** smtp-source, one instance per recipient (it takes one -t), sessions and messages split evenly. */
async function smtpSource(host: string, port: number): Promise<{ seconds: number }> {
  const t0 = Date.now();
  await Promise.all(
    RCPTS.map(
      (rcpt) =>
        new Promise<void>((resolve, reject) =>
          execFile(
            'smtp-source',
            ['-s', String(C / RCPTS.length), '-m', String(N / RCPTS.length), '-r', String(R), '-l', String(SIZE), '-f', 'load@sender.test', '-t', rcpt, '-c', `${host}:${port}`],
            { maxBuffer: 64 * 1024 * 1024 },
            (err, _stdout, stderr) => (err ? reject(new Error(`smtp-source failed: ${stderr || err.message}`)) : resolve()),
          ),
        ),
    ),
  );
  return { seconds: (Date.now() - t0) / 1000 };
}

async function fixedRate(host: string, port: number): Promise<number[]> {
  const data = body(SIZE, 'latency');
  const latencies: number[] = [];
  const interval = 1000 / RATE;
  const start = Date.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < LN; i++) {
    const due = start + i * interval;
    const wait = due - Date.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    pending.push(sendOne(port, host, data).then((ms) => void latencies.push(ms)));
  }
  await Promise.all(pending);
  return latencies;
}

function peakRss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

async function main() {
  if (!values.cluster) return void (await run({}));
  if (values['shared-ports'] !== 'off') {
    const balanced = values['shared-ports'] === 'both' ? await run({}, 'through HAProxy') : undefined;
    const shared = await run({}, 'frontends sharing their ports, no balancer', true);
    if (balanced)
      console.log(
        `shared ports / HAProxy: ${(shared.throughputMsgsPerSec / balanced.throughputMsgsPerSec).toFixed(2)} acknowledged, ${(shared.deliveredMsgsPerSec / balanced.deliveredMsgsPerSec).toFixed(2)} stored; ` +
          `p50 at ${RATE}/s ${shared.latencyP50Ms} vs ${balanced.latencyP50Ms} ms`,
      );
    return;
  }
  const which = values['partner-copy'] === 'both' ? ['on', 'off'] : [values['partner-copy']!];
  const figures: Record<string, Figures> = {};
  for (const copy of which) figures[copy] = await run({ MAILGRID_QUEUE_PARTNER_COPY: String(copy === 'on') }, `partner copy ${copy}`);
  if (figures.on && figures.off) {
    const cost = (a: number, b: number) => `${Math.round((1 - a / b) * 100)} %`;
    console.log(
      `partner copy cost: ${cost(figures.on.throughputMsgsPerSec, figures.off.throughputMsgsPerSec)} of the acknowledged rate (${figures.on.throughputMsgsPerSec} vs ${figures.off.throughputMsgsPerSec} msgs/s), ` +
        `${cost(figures.on.deliveredMsgsPerSec, figures.off.deliveredMsgsPerSec)} of the stored rate (${figures.on.deliveredMsgsPerSec} vs ${figures.off.deliveredMsgsPerSec}); ` +
        `p50 at ${RATE}/s ${figures.on.latencyP50Ms} vs ${figures.off.latencyP50Ms} ms`,
    );
  }
}

type Figures = Awaited<ReturnType<typeof run>>;

async function run(extraEnv: NodeJS.ProcessEnv, label?: string, sharedPorts = false) {
  RCPTS = ['bench@example.test'];
  const nodeEnv: NodeJS.ProcessEnv = { ...(values.queue ? { MAILGRID_DELIVERY_INLINE: 'false' } : {}), ...extraEnv };
  let node: NodeHandle | undefined;
  let host = '127.0.0.1';
  let port: number;
  /** Mailbox of each recipient, and the processes whose memory is reported. */
  let probes: MailboxProbe[];
  let pids: [string, number][] = [];
  let clusterDir: string | undefined;
  /** With --recipients in a cluster: how many messages the second group's first account got. */
  let spreadCheck: (() => Promise<number>) | undefined;
  if (values.cluster) {
    clusterDir = mkdtempSync(join(tmpdir(), 'mailgrid-bench-cluster-'));
    const up = await runCli(['cluster', 'up', '--frontends', '2', '--groups', '2', ...(sharedPorts ? ['--shared-ports'] : [])], nodeEnv, clusterDir);
    if (up.code !== 0) throw new Error(up.stderr);
    const state = JSON.parse(readFileSync(join(clusterDir, '.mailgrid', 'cluster.json'), 'utf8'));
    [host, port] = [state.smtp.split(':')[0], Number(state.smtp.split(':')[1])];
    await runCli(['domain', 'add', 'example.test'], {}, clusterDir);
    const be = (id: string) => state.processes.find((p: { id: string }) => p.id === id);
    const [g1, g2] = [new MailboxProbe(`127.0.0.1:${be('be-1').ports.grpc}`), new MailboxProbe(`127.0.0.1:${be('be-2').ports.grpc}`)];
    if (R > 1) {
      // Each message's recipients spread over both groups: bench@ in g1, 2bench@ in g2, ...
      for (const [i, a] of recipientsOf(RCPT).entries()) await runCli(['account', 'add', a, '--group', i % 2 ? 'g2' : 'g1'], {}, clusterDir);
      probes = [g1];
      spreadCheck = () => g2.list(`2${RCPT}`).then((l) => l.length);
    } else {
      // One recipient per message, half of them in each group.
      RCPTS = ['bench@example.test', 'bench2@example.test'];
      for (const [i, group] of ['g1', 'g2'].entries()) await runCli(['account', 'add', RCPTS[i], '--group', group], {}, clusterDir);
      probes = [g1, g2];
    }
    pids = state.processes.filter((p: { role: string }) => p.role === 'frontend' || p.role === 'backend').map((p: { id: string; pid: number }) => [p.id, p.pid]);
  } else if (values.target) {
    [host, port] = [values.target.split(':')[0], Number(values.target.split(':')[1])];
    probes = [new MailboxProbe(values.grpc ?? '127.0.0.1:7525')];
  } else {
    node = await startNode({ env: nodeEnv, logFile: join(tmpdir(), `mailgrid-bench-${process.pid}.log`) });
    port = node.smtpPort;
    await node.cli('domain', 'add', 'example.test');
    for (const a of recipientsOf(RCPT)) await node.cli('account', 'add', a);
    probes = [new MailboxProbe(`127.0.0.1:${node.grpcPort}`)];
    pids = [['node', node.process.pid!]];
  }
  const count = async () => (await Promise.all(RCPTS.map((r, i) => probes[i].list(r)))).reduce((n, l) => n + l.length, 0);
  const before = await count();

  const useSmtpSource = values.client === 'smtp-source' || (values.client === 'auto' && spawnSync('which', ['smtp-source']).status === 0);
  const mode =
    (values.cluster ? `cluster: ${sharedPorts ? 'no balancer (shared ports)' : 'HAProxy'}, 2 frontends, 2 backends` : 'single node') +
    (values.queue ? ', every message through the queue' : '') +
    (R > 1 ? `, ${R} recipients per message${values.cluster ? ' over both groups' : ''}` : '') +
    (label ? `, ${label}` : '');
  console.log(`# mailgrid bench (${mode}): ${N} messages of ${SIZE} B over ${C} sessions (${useSmtpSource ? 'smtp-source' : 'own client'}), ${cpus().length} cores`);
  let seconds: number;
  let throughputLatencies: number[] | undefined;
  if (useSmtpSource) seconds = (await smtpSource(host, port)).seconds;
  else {
    const r = await ownClientThroughput(host, port);
    seconds = r.seconds;
    throughputLatencies = r.latencies.sort((a, b) => a - b);
  }
  const ackedAt = Date.now();
  // Peak memory of the load itself, before the bench lists the mailboxes to count them.
  const loadRss = Object.fromEntries(pids.map(([id, p]) => [id, Math.round(peakRss(p))]));
  // Acknowledged is not yet stored when the queue takes the messages: wait for the last.
  let stored = (await count()) - before;
  const waitUntil = Date.now() + 600_000;
  while (stored < N && Date.now() < waitUntil) {
    await new Promise((r) => setTimeout(r, 250));
    stored = (await count()) - before;
  }
  const deliveredSeconds = seconds + (Date.now() - ackedAt) / 1000;

  if (spreadCheck) {
    const other = (await spreadCheck()) - before;
    if (other !== stored) throw new Error(`the second group stored ${other} messages, the first ${stored}`);
  }
  const lat = (await fixedRate(host, port)).sort((a, b) => a - b);
  const figures = {
    date: new Date().toISOString(),
    mode,
    client: useSmtpSource ? 'smtp-source' : 'own',
    messages: N,
    recipients: R,
    sizeBytes: SIZE,
    concurrency: C,
    stored,
    throughputMsgsPerSec: Math.round(N / seconds),
    deliveredMsgsPerSec: Math.round(stored / deliveredSeconds),
    ...(throughputLatencies ? { throughputP50Ms: +pct(throughputLatencies, 50).toFixed(2), throughputP99Ms: +pct(throughputLatencies, 99).toFixed(2) } : {}),
    latencyRate: RATE,
    latencyMessages: LN,
    latencyP50Ms: +pct(lat, 50).toFixed(2),
    latencyP99Ms: +pct(lat, 99).toFixed(2),
    latencyMaxMs: +lat[lat.length - 1].toFixed(2),
    peakRssUnderLoadMB: loadRss,
    peakRssMB: Object.fromEntries(pids.map(([id, p]) => [id, Math.round(peakRss(p))])),
  };
  console.log(`throughput        ${figures.throughputMsgsPerSec} msgs/s acknowledged (${seconds.toFixed(1)} s), ${figures.deliveredMsgsPerSec} msgs/s stored (${stored}/${N}, last after ${deliveredSeconds.toFixed(1)} s)`);
  if (throughputLatencies) console.log(`  under full load: p50 ${figures.throughputP50Ms} ms, p99 ${figures.throughputP99Ms} ms (end of DATA to 250)`);
  console.log(`latency @${RATE}/s   p50 ${figures.latencyP50Ms} ms, p99 ${figures.latencyP99Ms} ms, max ${figures.latencyMaxMs} ms (end of DATA to 250, ${LN} msgs)`);
  for (const [id, mb] of Object.entries(figures.peakRssMB))
    console.log(`peak RSS ${id.padEnd(8)} ${loadRss[id]} MB under the load, ${mb} MB after the latency run and listing ${stored} stored messages`);
  mkdirSync('bench-results', { recursive: true });
  writeFileSync(`bench-results/smtp-${Date.now()}.json`, JSON.stringify(figures, null, 2));
  for (const p of probes) p.close();
  if (node) await node.stop();
  if (clusterDir) await runCli(['cluster', 'down'], {}, clusterDir);
  if (stored !== N) {
    console.error(`only ${stored} of ${N} messages were stored`);
    process.exitCode = 1;
  }
  return figures;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
