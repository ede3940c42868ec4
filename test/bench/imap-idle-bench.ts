/**
 * `npm run bench:imap-idle`: how many idle IMAP sessions one frontend carries, and how fast
 * an idling client hears of new mail. The IMAP issue's targets: 10,000 idle connections on
 * one frontend under 300 MB RSS, and an IDLE notification p99 under 100 ms.
 *
 *   npm run bench:imap-idle -- [--connections 10000] [--users 100] [--rate 250] [--parallel 64]
 *                              [--messages 20] [--quiet 65] [--settle 15]
 *                              [--notify-users 10] [--notify-messages 100] [--notify-rate 5] [--via append|smtp]
 *                              [--rss-mb 300] [--p99-ms 100] [--key ec|rsa] [--env KEY=VALUE ...]
 *
 * A mailgrid single node (`startNode`, a child process: its descriptors are its own) with a
 * throwaway certificate (ECDSA P-256 by default), `imap.maxClients` raised to take every
 * connection (the default cap is `listen.maxClients`, 1000; there is no per-account cap).
 * USERS accounts, each INBOX pre-filled with MESSAGES messages by APPEND (which also puts
 * every password in the node's credential cache: the ramp's logins do not hash). The
 * baseline waits QUIET seconds after the pre-fill: each of its sessions opened its account's
 * change feed, which lingers a minute after the last session (ChangeFeeds), and a feed the
 * idling sessions open is theirs to count.
 *
 * 1. Idle sessions: CONNECTIONS sessions over implicit TLS (the `imaps` port), spread evenly
 *    over the accounts (CONNECTIONS / USERS each), opened at RATE a second with at most
 *    PARALLEL on their way at once; each: TLS handshake, greeting, LOGIN, SELECT INBOX, IDLE
 *    (the time to its `+` is the setup time). The node's RSS (VmRSS in /proc/<pid>/status,
 *    the frontend and the backend thread together, as the single node is one process) and
 *    its V8 heap (`nodejs_heap_size_used_bytes` on /metrics, every thread's) are read before
 *    the first connection and again SETTLE seconds after the last is idling; the difference
 *    over CONNECTIONS is the cost of one idle session. The node's CPU over SETTLE seconds of
 *    pure idling is printed too.
 * 2. Notification latency: NOTIFY-MESSAGES messages, at NOTIFY-RATE a second, each to the
 *    next of the first NOTIFY-USERS accounts in turn, every one of whose idling sessions must
 *    tell `* n EXISTS`. `--via append`: an APPEND on a separate (not idling) session of that
 *    account, timed from its send; `--via smtp`: a message through the node's port 25
 *    (`sendMail`), timed from the start of the SMTP session. Each (message, idling session)
 *    pair is one latency sample: p50, p99, max. Also the node's own
 *    `mailgrid_imap_notify_seconds` (a change's commit at the primary to the idling client
 *    being told), as the bucket its p50 and p99 fall in.
 *
 * It prints the figures and a verdict against each target (RSS-MB, P99-MS), then a JSON
 * line with every figure (also in bench-results/). The exit code is 1 when a target is
 * missed, a session could not be set up or a notification never came.
 * The bench's own process holds the other end of every connection: both need CONNECTIONS
 * descriptors and some (`ulimit -n`), which is checked before the start.
 * --env passes settings (or NODE_OPTIONS) to the node, e.g. MAILGRID_LOG_LEVEL=warn.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { hashPassword } from '@mailgrid/core';
import { createAdminClient, createMailboxClient, deadline, MailboxCalls } from '@mailgrid/protocol';
import { sendMail, startNode, type NodeHandle } from '@mailgrid/testing';
import { ImapClient, type Reply } from './imap-client.js';
import { CLK_TCK, machineTicks } from './proc.js';

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '10000' },
    users: { type: 'string', default: '100' },
    rate: { type: 'string', default: '250' },
    parallel: { type: 'string', default: '64' },
    messages: { type: 'string', default: '20' },
    quiet: { type: 'string', default: '65' },
    settle: { type: 'string', default: '15' },
    'notify-users': { type: 'string', default: '10' },
    'notify-messages': { type: 'string', default: '100' },
    'notify-rate': { type: 'string', default: '5' },
    via: { type: 'string', default: 'append' },
    'rss-mb': { type: 'string', default: '300' },
    'p99-ms': { type: 'string', default: '100' },
    key: { type: 'string', default: 'ec' },
    env: { type: 'string', multiple: true, default: [] },
  },
});

const positive = (flag: string, min = 1): number => {
  const raw = values[flag as keyof typeof values] as string;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new Error(`--${flag} must be a number of at least ${min}, not ${raw}`);
  return n;
};
const CONNECTIONS = Math.round(positive('connections'));
const USERS = Math.min(Math.round(positive('users')), CONNECTIONS);
const RATE = positive('rate');
const PARALLEL = Math.round(positive('parallel'));
const MESSAGES = Math.round(positive('messages', 0));
const QUIET_S = positive('quiet', 0);
const SETTLE_S = positive('settle', 0);
const NOTIFY_USERS = Math.min(Math.round(positive('notify-users')), USERS);
const NOTIFY_MESSAGES = Math.round(positive('notify-messages', 0));
const NOTIFY_RATE = positive('notify-rate');
const RSS_MB = positive('rss-mb');
const P99_MS = positive('p99-ms');
const VIA = values.via;
if (VIA !== 'append' && VIA !== 'smtp') throw new Error('--via append or smtp');
if (values.key !== 'ec' && values.key !== 'rsa') throw new Error('--key ec or rsa');
const EXTRA_ENV = Object.fromEntries(
  values.env.map((kv) => {
    const at = kv.indexOf('=');
    if (at < 1) throw new Error(`--env KEY=VALUE, not ${kv}`);
    return [kv.slice(0, at), kv.slice(at + 1)];
  }),
);

const DOMAIN = 'example.test';
const PASSWORD = 'bench-secret';
const user = (i: number) => `u${i}@${DOMAIN}`;
/** Connection i belongs to account i mod USERS: every account gets its share, the first ones one more when it does not divide. */
const userOf = (i: number) => i % USERS;
const log = (msg: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN);
const r1 = (x: number) => Math.round(x * 10) / 10;
const mb = (kb: number) => r1(kb / 1024);

// ---- the node and what it says of itself ---------------------------------------------------

/** VmRSS (and its anonymous and file-backed parts: the binary's code, LMDB's map) and VmHWM of a process, in KB. */
function memory(pid: number): { rssKb: number; anonKb: number; fileKb: number; hwmKb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  return { rssKb: field('VmRSS'), anonKb: field('RssAnon'), fileKb: field('RssFile'), hwmKb: field('VmHWM') };
}

/** utime+stime of a process (its threads included), in ms. */
function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

/** A process's soft limit of open files. */
function openFilesLimit(pid: number | 'self'): number {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
  const soft = line?.split(/\s{2,}/)[1];
  return soft === 'unlimited' ? Infinity : Number(soft);
}

/** The node's /metrics as name{labels} → value (the lines we read are few; no parser needed). */
async function scrape(node: NodeHandle): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${node.ports.http}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

/** Sum of every series of a metric (the single node's threads each report their own). */
const metricSum = (m: Map<string, number>, name: string) => [...m].filter(([k]) => k === name || k.startsWith(`${name}{`)).reduce((s, [, v]) => s + v, 0);

/** The histogram's cumulative counts by upper bound (`le`), summed over label sets. */
function histogram(m: Map<string, number>, name: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const [k, v] of m) {
    if (!k.startsWith(`${name}_bucket{`)) continue;
    const le = /le="([^"]+)"/.exec(k)?.[1];
    if (!le) continue;
    const bound = le === '+Inf' ? Infinity : Number(le);
    out.set(bound, (out.get(bound) ?? 0) + v);
  }
  return out;
}

/** The bucket (upper bound, seconds) that the p-th percentile of the observations between two scrapes falls in. */
function bucketOf(before: Map<number, number>, after: Map<number, number>, p: number): { count: number; le: number | undefined } {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const count = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0);
  if (!count) return { count, le: undefined };
  const want = Math.ceil((p / 100) * count);
  for (const b of bounds) if ((after.get(b) ?? 0) - (before.get(b) ?? 0) >= want) return { count, le: b };
  return { count, le: Infinity };
}

function certificate(dir: string): { key: string; cert: string } {
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  const alg = values.key === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'] : ['-newkey', 'rsa:2048'];
  const r = spawnSync('openssl', ['req', '-x509', ...alg, '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=bench.local'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl req failed: ${r.stderr}`);
  return { key, cert };
}

async function startMailgrid(dir: string): Promise<NodeHandle> {
  const tls = certificate(dir);
  const node = await startNode({
    dataDir: join(dir, 'mailgrid'),
    logFile: join(dir, 'mailgrid.log'),
    env: {
      MAILGRID_TLS_KEY_FILE: tls.key,
      MAILGRID_TLS_CERT_FILE: tls.cert,
      // Every idling session, the APPEND sessions, and room for the pre-fill's.
      MAILGRID_IMAP_MAX_CLIENTS: String(CONNECTIONS + NOTIFY_USERS + 100),
      ...EXTRA_ENV,
    },
  });
  const address = `127.0.0.1:${node.grpcPort}`;
  const admin = createAdminClient(address);
  const call = (method: 'AddDomain' | 'AddAccount', req: object) =>
    new Promise<void>((resolve, reject) =>
      (admin[method] as Function)(req, { deadline: deadline(30_000) }, (err: Error | null) => (err && !/exist/i.test(err.message) ? reject(err) : resolve())),
    );
  await call('AddDomain', { domain: DOMAIN });
  const mailbox = createMailboxClient(address);
  const calls = new MailboxCalls(mailbox, { address, epoch: 0 }, { timeoutMs: 30_000 });
  const hash = await hashPassword(PASSWORD);
  for (let i = 0; i < USERS; i++) {
    await call('AddAccount', { address: user(i) });
    await calls.setPassword(user(i), hash);
  }
  admin.close();
  mailbox.close();
  return node;
}

function message(i: number, to: string): Buffer {
  const lines = [
    `From: "Sender ${i % 17}" <sender${i % 17}@outside.test>`,
    `To: <${to}>`,
    `Subject: Idle bench message ${i}`,
    `Date: ${new Date(Date.UTC(2026, 10, 1) + i * 60_000).toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <idle-${i}-${Math.random().toString(36).slice(2)}@outside.test>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    ...Array.from({ length: 20 }, () => 'The quick brown fox jumps over the lazy dog, and an idling client hears of it.'),
    '',
  ];
  return Buffer.from(lines.join('\r\n'));
}

/** Each INBOX gets MESSAGES messages (8 accounts at a time); every account logs in once, so its password is in the node's cache. */
async function prefill(port: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(8, USERS) }, async () => {
      while (next < USERS) {
        const u = next++;
        const c = await ImapClient.open({ port, tls: true });
        await c.ok(`LOGIN ${user(u)} ${PASSWORD}`);
        const inFlight: Promise<Reply>[] = [];
        for (let i = 0; i < MESSAGES; i++) inFlight.push(c.ok('APPEND INBOX (\\Seen)', message(i, user(u))));
        await Promise.all(inFlight);
        await c.logout();
      }
    }),
  );
}

// ---- the idling sessions ---------------------------------------------------------------------

/** One idling session: logged in, INBOX selected, in IDLE; it notes when the EXISTS count grows. */
class Idler {
  client: ImapClient | undefined;
  /** In IDLE (its setup went through). */
  idling = false;
  exists = -1;
  /** When each message past the first EXISTS was announced: index k is the k-th new message. */
  readonly heard: number[] = [];
  private base = -1;

  constructor(readonly user: number) {}

  async start(port: number): Promise<void> {
    const c = await ImapClient.open({ port, tls: true, timeoutMs: 60_000 });
    this.client = c;
    try {
      await c.ok(`LOGIN ${user(this.user)} ${PASSWORD}`);
      c.onUntagged = (line) => {
        const m = /^\* (\d+) (EXISTS|EXPUNGE)/.exec(line);
        if (!m) return;
        if (m[2] === 'EXPUNGE') return void this.exists--;
        const n = Number(m[1]);
        if (this.base < 0) {
          this.base = this.exists = n;
          return;
        }
        const now = performance.now();
        for (; this.exists < n; this.exists++) this.heard.push(now);
      };
      await c.ok('SELECT INBOX');
      await c.idle();
      this.idling = true;
    } catch (err) {
      c.destroy();
      throw err;
    }
  }
}

interface RampResult {
  opened: number;
  failed: number;
  seconds: number;
  setupP50Ms: number;
  setupP99Ms: number;
  errors: Record<string, number>;
}

/** Opens every idler at RATE a second, at most PARALLEL on their way at once. */
async function ramp(port: number, idlers: Idler[]): Promise<RampResult> {
  const setup: number[] = [];
  const errors = new Map<string, number>();
  let failed = 0;
  let inFlight = 0;
  let wake: (() => void) | undefined;
  const t0 = performance.now();
  let lastReport = t0;
  const started: Promise<void>[] = [];
  for (let i = 0; i < idlers.length; i++) {
    const due = t0 + (i * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    while (inFlight >= PARALLEL) await new Promise<void>((r) => (wake = r));
    inFlight++;
    const begin = performance.now();
    started.push(
      idlers[i]
        .start(port)
        .then(
          () => void setup.push(performance.now() - begin),
          (err: Error) => {
            failed++;
            const key = err.message.replace(/\d+/g, 'N').slice(0, 120);
            errors.set(key, (errors.get(key) ?? 0) + 1);
          },
        )
        .finally(() => {
          inFlight--;
          wake?.();
          wake = undefined;
        }),
    );
    if (performance.now() - lastReport > 10_000) {
      lastReport = performance.now();
      log(`ramp: ${i + 1}/${idlers.length} started, ${setup.length} idling, ${failed} failed`);
    }
  }
  await Promise.all(started);
  setup.sort((a, b) => a - b);
  return {
    opened: setup.length,
    failed,
    seconds: r1((performance.now() - t0) / 1000),
    setupP50Ms: r1(pct(setup, 50)),
    setupP99Ms: r1(pct(setup, 99)),
    errors: Object.fromEntries(errors),
  };
}

// ---- notifications ---------------------------------------------------------------------------

interface NotifyResult {
  messages: number;
  /** (message, idling session) pairs that should have heard, and those that did. */
  expected: number;
  heard: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The node's mailgrid_imap_notify_seconds over the same messages: how many, and the bucket (upper bound, ms) p50 and p99 fall in. */
  server: { observations: number; p50BucketMs: number | undefined; p99BucketMs: number | undefined };
  errors: number;
}

async function notify(node: NodeHandle, idlers: Idler[]): Promise<NotifyResult> {
  const port = node.ports.imaps;
  const byUser = new Map<number, Idler[]>();
  for (const d of idlers) if (d.idling && d.user < NOTIFY_USERS) byUser.set(d.user, [...(byUser.get(d.user) ?? []), d]);
  // APPEND sessions: logged in, nothing selected (they are not the sessions measured).
  const writers = new Map<number, ImapClient>();
  if (VIA === 'append')
    for (const u of byUser.keys()) {
      const c = await ImapClient.open({ port, tls: true });
      await c.ok(`LOGIN ${user(u)} ${PASSWORD}`);
      writers.set(u, c);
    }
  const sent = new Map<number, number[]>();
  for (const u of byUser.keys()) sent.set(u, []);
  const before = histogram(await scrape(node), 'mailgrid_imap_notify_seconds');
  let errors = 0;
  const deliveries: Promise<unknown>[] = [];
  const users = [...byUser.keys()].sort((a, b) => a - b);
  const t0 = performance.now();
  for (let i = 0; i < NOTIFY_MESSAGES && users.length; i++) {
    const due = t0 + (i * 1000) / NOTIFY_RATE;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const u = users[i % users.length];
    const body = message(1_000_000 + i, user(u));
    sent.get(u)!.push(performance.now());
    const d =
      VIA === 'append'
        ? writers.get(u)!.ok('APPEND INBOX ()', body)
        : sendMail(node.smtpPort, { to: [user(u)], data: body.toString('latin1') + '\r\n' }).then((reply) => {
            if (!reply.startsWith('250')) throw new Error(reply);
          });
    deliveries.push(
      d.catch((err: Error) => {
        errors++;
        log(`delivery to ${user(u)} failed: ${err.message}`);
      }),
    );
  }
  await Promise.all(deliveries);
  // Every idler of a user should hear of every message sent to it: a moment for the last ones.
  const expected = [...byUser].reduce((n, [u, ds]) => n + ds.length * sent.get(u)!.length, 0);
  const heardNow = () => [...byUser].reduce((n, [u, ds]) => n + ds.reduce((k, d) => k + Math.min(d.heard.length, sent.get(u)!.length), 0), 0);
  for (let i = 0; i < 100 && heardNow() < expected; i++) await sleep(100);
  const after = histogram(await scrape(node), 'mailgrid_imap_notify_seconds');
  for (const c of writers.values()) await c.logout();
  const latencies: number[] = [];
  for (const [u, ds] of byUser) {
    const times = sent.get(u)!;
    for (const d of ds) for (let k = 0; k < Math.min(times.length, d.heard.length); k++) latencies.push(d.heard[k] - times[k]);
  }
  latencies.sort((a, b) => a - b);
  const p50 = bucketOf(before, after, 50);
  const p99 = bucketOf(before, after, 99);
  const ms = (le: number | undefined) => (le === undefined ? undefined : le === Infinity ? Infinity : le * 1000);
  return {
    messages: NOTIFY_MESSAGES,
    expected,
    heard: latencies.length,
    p50Ms: r1(pct(latencies, 50)),
    p99Ms: r1(pct(latencies, 99)),
    maxMs: r1(latencies[latencies.length - 1] ?? NaN),
    server: { observations: p50.count, p50BucketMs: ms(p50.le), p99BucketMs: ms(p99.le) },
    errors,
  };
}

// ---- the run ---------------------------------------------------------------------------------

async function main() {
  const need = CONNECTIONS + NOTIFY_USERS + 200;
  const mine = openFilesLimit('self');
  if (mine < need) throw new Error(`ulimit -n is ${mine} here; ${CONNECTIONS} connections need about ${need}`);
  const dir = mkdtempSync(join(tmpdir(), 'mailgrid-imap-idle-'));
  const perUser = `${Math.floor(CONNECTIONS / USERS)}${CONNECTIONS % USERS ? '-' + Math.ceil(CONNECTIONS / USERS) : ''}`;
  const shape = `${CONNECTIONS} idle IMAP sessions (${USERS} accounts x ${perUser}, INBOX of ${MESSAGES}) over implicit TLS (${values.key === 'ec' ? 'ECDSA P-256' : 'RSA 2048'}) at ${RATE}/s; ${NOTIFY_MESSAGES} messages by ${VIA} at ${NOTIFY_RATE}/s to ${NOTIFY_USERS} accounts`;
  const load0 = loadavg();
  console.log(`# bench:imap-idle ${new Date().toISOString()}: ${shape}; ${cpus().length} cores (${cpus()[0]?.model.trim()}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, load average ${load0.map((x) => x.toFixed(2)).join(' ')} at the start`);
  if (Object.keys(EXTRA_ENV).length) console.log(`# node settings: ${Object.entries(EXTRA_ENV).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  let node: NodeHandle | undefined;
  const idlers = Array.from({ length: CONNECTIONS }, (_, i) => new Idler(userOf(i)));
  try {
    log('starting the node');
    node = await startMailgrid(dir);
    const pid = node.process.pid!;
    const theirs = openFilesLimit(pid);
    if (theirs < need) throw new Error(`the node's open-files limit is ${theirs}; ${CONNECTIONS} connections need about ${need}`);
    log(`pre-filling ${USERS} INBOXes with ${MESSAGES} messages`);
    await prefill(node.ports.imaps);
    // What the pre-fill left (its sessions' change feeds, garbage) is gone before the baseline.
    log(`waiting ${QUIET_S} s for the pre-fill's change feeds to close`);
    await sleep(QUIET_S * 1000);
    const mem0 = memory(pid);
    const heap0 = metricSum(await scrape(node), 'nodejs_heap_size_used_bytes');
    log(`baseline: RSS ${mb(mem0.rssKb)} MB, V8 heap used ${r1(heap0 / 2 ** 20)} MB; opening ${CONNECTIONS} sessions`);

    const machine0 = machineTicks();
    const rampResult = await ramp(node.ports.imaps, idlers);
    log(`${rampResult.opened} idling (${rampResult.failed} failed) after ${rampResult.seconds} s; settling ${SETTLE_S} s`);
    const cpu0 = cpuMs(pid);
    const idleMachine0 = machineTicks();
    await sleep(SETTLE_S * 1000);
    const idleCpuMs = cpuMs(pid) - cpu0;
    const idleMachine1 = machineTicks();
    const mem1 = memory(pid);
    const metrics1 = await scrape(node);
    const heap1 = metricSum(metrics1, 'nodejs_heap_size_used_bytes');
    const idleGauge = metricSum(metrics1, 'mailgrid_imap_idle_sessions');

    log(`notifications: ${NOTIFY_MESSAGES} messages by ${VIA}`);
    const notifyMachine0 = machineTicks();
    const notifyResult = await notify(node, idlers);
    const notifyMachine1 = machineTicks();
    const mem2 = memory(pid);
    const busy = (a: { busy: number; total: number }, b: { busy: number; total: number }) => Math.round((100 * (b.busy - a.busy)) / Math.max(1, b.total - a.total));

    const opened = rampResult.opened;
    const rss = {
      beforeMb: mb(mem0.rssKb),
      idlingMb: mb(mem1.rssKb),
      idlingAnonMb: mb(mem1.anonKb),
      idlingFileMb: mb(mem1.fileKb),
      afterNotifyMb: mb(mem2.rssKb),
      peakMb: mb(mem2.hwmKb),
      perConnectionKb: opened ? r1((mem1.rssKb - mem0.rssKb) / opened) : NaN,
    };
    const heap = {
      beforeMb: r1(heap0 / 2 ** 20),
      idlingMb: r1(heap1 / 2 ** 20),
      perConnectionKb: opened ? r1((heap1 - heap0) / 1024 / opened) : NaN,
    };
    const rssPass = opened === CONNECTIONS && rss.idlingMb <= RSS_MB;
    const notifyPass = notifyResult.heard === notifyResult.expected && notifyResult.expected > 0 && notifyResult.p99Ms <= P99_MS;

    console.log(`ramp              ${opened}/${CONNECTIONS} idling in ${rampResult.seconds} s (${rampResult.failed} failed); setup (connect, TLS, LOGIN, SELECT, IDLE) p50 ${rampResult.setupP50Ms} ms, p99 ${rampResult.setupP99Ms} ms; the node counts ${idleGauge} in IDLE`);
    for (const [e, k] of Object.entries(rampResult.errors).slice(0, 5)) console.log(`  !! x${k}: ${e}`);
    console.log(`node RSS          ${rss.beforeMb} MB before, ${rss.idlingMb} MB with ${opened} idling (${rss.idlingAnonMb} MB anonymous, ${rss.idlingFileMb} MB file-backed): ${rss.perConnectionKb} KB per connection; ${rss.afterNotifyMb} MB after the notifications, peak ${rss.peakMb} MB`);
    console.log(`node V8 heap used ${heap.beforeMb} MB before, ${heap.idlingMb} MB idling: ${heap.perConnectionKb} KB per connection (used heap, garbage not collected yet included; the rest of the RSS is outside V8's heap: TLS, sockets, buffers)`);
    console.log(`idle CPU          ${r1(idleCpuMs / SETTLE_S)} ms/s of the node's CPU while ${opened} sessions idled ${SETTLE_S} s (machine ${busy(idleMachine0, idleMachine1)} % busy)`);
    console.log(`notify latency    p50 ${notifyResult.p50Ms} ms, p99 ${notifyResult.p99Ms} ms, max ${notifyResult.maxMs} ms over ${notifyResult.heard}/${notifyResult.expected} (message, idling session) pairs (${VIA}, from ${VIA === 'append' ? 'the APPEND sent' : 'the SMTP session start'} to * n EXISTS)`);
    console.log(`  node's histogram: ${notifyResult.server.observations} observations, p50 <= ${notifyResult.server.p50BucketMs} ms, p99 <= ${notifyResult.server.p99BucketMs} ms (commit at the primary to the client told)`);
    console.log(`machine           ${busy(machine0, idleMachine0)} % busy during the ramp, ${busy(notifyMachine0, notifyMachine1)} % during the notifications (2 cores shared with other work: figures are as measured)`);
    console.log(`verdict           RSS ${rss.idlingMb} MB with ${opened} idle connections ${rssPass ? 'PASSES' : 'FAILS'} the ${RSS_MB} MB target; notify p99 ${notifyResult.p99Ms} ms ${notifyPass ? 'PASSES' : 'FAILS'} the ${P99_MS} ms target${CONNECTIONS < 10_000 ? " (the issue's targets are for 10,000 connections)" : ''}`);

    const figures = {
      bench: 'imap-idle',
      date: new Date().toISOString(),
      shape,
      settings: EXTRA_ENV,
      loadAverageAtStart: load0,
      ramp: rampResult,
      rss,
      heap,
      idle: { seconds: SETTLE_S, nodeCpuMsPerSec: r1(idleCpuMs / SETTLE_S), machineBusyPct: busy(idleMachine0, idleMachine1), idleGauge },
      machineBusyPct: { ramp: busy(machine0, idleMachine0), notify: busy(notifyMachine0, notifyMachine1) },
      notify: notifyResult,
      targets: { rssMb: RSS_MB, p99Ms: P99_MS },
      verdict: { rss: rssPass ? 'pass' : 'fail', notify: notifyPass ? 'pass' : 'fail' },
    };
    mkdirSync('bench-results', { recursive: true });
    writeFileSync(`bench-results/imap-idle-${Date.now()}.json`, JSON.stringify(figures, null, 2));
    console.log(JSON.stringify(figures));
    if (!rssPass || !notifyPass || rampResult.failed || notifyResult.errors) process.exitCode = 1;
  } finally {
    log('closing the sessions and stopping the node');
    for (const d of idlers) d.client?.destroy();
    await node?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
