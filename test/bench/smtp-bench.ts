/**
 * `npm run bench`: throughput and latency of a single node, printed as figures (not a test).
 *
 *   npm run bench -- [--messages 20000] [--size 4096] [--concurrency 32] [--rate 300]
 *                    [--latency-messages 3000] [--target 127.0.0.1:2525 --grpc 127.0.0.1:7525]
 *
 * 1. Throughput: Postfix's smtp-source (-s C -m N -l S, one message per connection) when
 *    installed, else our own client with C sessions; every message must be stored.
 * 2. Latency: our own client at a fixed rate, one message per connection; time from the
 *    end of DATA (the final dot) to the 250.
 * 3. The node's peak RSS (VmHWM) after both.
 * Without --target it starts its own node on a temporary data dir.
 */
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { MailboxProbe, SmtpTranscript, startNode, type NodeHandle } from '@mailgrid/testing';

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
  },
});
const N = Number(values.messages);
const SIZE = Number(values.size);
const C = Number(values.concurrency);
const RATE = Number(values.rate);
const LN = Number(values['latency-messages']);
const RCPT = 'bench@example.test';

function body(size: number, id: string): string {
  const head = `From: load@sender.test\r\nTo: ${RCPT}\r\nSubject: bench ${id}\r\n\r\n`;
  const line = 'x'.repeat(76) + '\r\n';
  let b = head;
  while (b.length + line.length <= size) b += line;
  return b + 'y'.repeat(Math.max(0, size - b.length - 2)) + '\r\n';
}

async function sendOne(port: number, host: string, data: string): Promise<number> {
  const s = await SmtpTranscript.open(port, host);
  try {
    await s.expect('220');
    await s.send('EHLO bench.test', '250');
    await s.send('MAIL FROM:<load@sender.test>', '250');
    await s.send(`RCPT TO:<${RCPT}>`, '250');
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

function smtpSource(host: string, port: number): Promise<{ seconds: number; output: string }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) =>
    execFile(
      'smtp-source',
      ['-s', String(C), '-m', String(N), '-l', String(SIZE), '-f', 'load@sender.test', '-t', RCPT, '-c', `${host}:${port}`],
      { maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => (err ? reject(new Error(`smtp-source failed: ${stderr || err.message}`)) : resolve({ seconds: (Date.now() - t0) / 1000, output: stdout + stderr })),
    ),
  );
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
  let node: NodeHandle | undefined;
  let host = '127.0.0.1';
  let port: number;
  let grpc: string;
  let pid: number | undefined;
  if (values.target) {
    [host, port] = [values.target.split(':')[0], Number(values.target.split(':')[1])];
    grpc = values.grpc ?? '127.0.0.1:7525';
  } else {
    node = await startNode({ env: { MAILGRID_LOG_LEVEL: 'warn' } });
    port = node.smtpPort;
    grpc = `127.0.0.1:${node.grpcPort}`;
    pid = node.process.pid;
    await node.cli('domain', 'add', 'example.test');
    await node.cli('account', 'add', RCPT);
  }
  const mailbox = new MailboxProbe(grpc);
  const before = (await mailbox.list(RCPT)).length;

  const useSmtpSource = values.client === 'smtp-source' || (values.client === 'auto' && spawnSync('which', ['smtp-source']).status === 0);
  console.log(`# mailgrid bench: ${N} messages of ${SIZE} B over ${C} sessions (${useSmtpSource ? 'smtp-source' : 'own client'}), ${cpus().length} cores`);
  let seconds: number;
  let throughputLatencies: number[] | undefined;
  if (useSmtpSource) seconds = (await smtpSource(host, port)).seconds;
  else {
    const r = await ownClientThroughput(host, port);
    seconds = r.seconds;
    throughputLatencies = r.latencies.sort((a, b) => a - b);
  }
  const stored = (await mailbox.list(RCPT)).length - before;

  const lat = (await fixedRate(host, port)).sort((a, b) => a - b);
  const figures = {
    date: new Date().toISOString(),
    client: useSmtpSource ? 'smtp-source' : 'own',
    messages: N,
    sizeBytes: SIZE,
    concurrency: C,
    stored,
    throughputMsgsPerSec: Math.round(N / seconds),
    ...(throughputLatencies ? { throughputP50Ms: +pct(throughputLatencies, 50).toFixed(2), throughputP99Ms: +pct(throughputLatencies, 99).toFixed(2) } : {}),
    latencyRate: RATE,
    latencyMessages: LN,
    latencyP50Ms: +pct(lat, 50).toFixed(2),
    latencyP99Ms: +pct(lat, 99).toFixed(2),
    latencyMaxMs: +lat[lat.length - 1].toFixed(2),
    peakRssMB: pid ? Math.round(peakRss(pid)) : undefined,
  };
  console.log(`throughput        ${figures.throughputMsgsPerSec} msgs/s acknowledged (${stored}/${N} stored, ${seconds.toFixed(1)} s)`);
  if (throughputLatencies) console.log(`  under full load: p50 ${figures.throughputP50Ms} ms, p99 ${figures.throughputP99Ms} ms (end of DATA to 250)`);
  console.log(`latency @${RATE}/s   p50 ${figures.latencyP50Ms} ms, p99 ${figures.latencyP99Ms} ms, max ${figures.latencyMaxMs} ms (end of DATA to 250, ${LN} msgs)`);
  if (pid) console.log(`peak RSS          ${figures.peakRssMB} MB`);
  mkdirSync('bench-results', { recursive: true });
  writeFileSync(`bench-results/smtp-${Date.now()}.json`, JSON.stringify(figures, null, 2));
  mailbox.close();
  if (node) await node.stop();
  if (stored !== N) {
    console.error(`only ${stored} of ${N} messages were stored`);
    process.exitCode = 1;
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
