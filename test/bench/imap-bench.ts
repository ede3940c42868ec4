/**
 * `npm run bench:imap`: mailgrid's IMAP beside Dovecot's imapd, on one load from one client
 * program, one server under load at a time, so the ratios hold whatever this machine's speed.
 *
 *   npm run bench:imap -- [--duration 60] [--warmup 5] [--rounds 3] [--connections 24]
 *                         [--idle 32] [--users 32] [--messages 100] [--ops-per-session 30]
 *                         [--format maildir|sdbox] [--key ec|rsa] [--systems D,M]
 *
 *   D  Dovecot 2.3 imapd (Debian's dovecot-imapd, installed when missing), configured in a
 *      temporary folder: its own dovecot.conf (`dovecot -c`), base_dir, a passwd-file, Maildir
 *      (or sdbox) under the folder; everything not set there as shipped: fsync
 *      (mail_fsync=optimized), the login processes (service_count=1: a process per
 *      connection), the per-user connection limit.
 *   M  a mailgrid single node (`startNode`), default settings.
 *
 * TLS: both over implicit TLS (Dovecot's imaps listener with `ssl = required`, mailgrid's
 * `imaps` port), with the same throwaway certificate (ECDSA P-256 by default) and full
 * handshakes (no session resumption). mailgrid refuses LOGIN before TLS on its plain port,
 * so plain on both would mean STARTTLS on one and not the other; implicit TLS on both is the
 * one setup where each does the same cryptographic work per session.
 * Passwords: the same SHA512-CRYPT hash on both; mailgrid keeps a verified password 10
 * minutes (auth.cacheMs), so Dovecot gets its auth cache with the same lifetime
 * (auth_cache_ttl; as shipped it has none): a login is the session's setup, not a hash.
 *
 * Pre-fill: each user's INBOX gets the same MESSAGES messages (1 KB to 100 KB, 1 in 3 \Seen)
 * through IMAP APPEND on both (the same bytes the same way; pipelined).
 *
 * The load: IDLE clients (one per user, `--idle`) log in, SELECT INBOX and IDLE for the whole
 * round; CONNECTIONS workers loop over sessions, each on the next user in turn: connect (TCP,
 * TLS handshake, greeting), LOGIN, SELECT INBOX, OPS-PER-SESSION operations in a fixed cycle
 * of ten (3 header fetches of a 20-message page: ENVELOPE and BODY.PEEK[HEADER.FIELDS (From
 * To Subject Date)]; 3 whole-body fetches; 2 flag STOREs; 1 APPEND of a 4 KB message; 1
 * EXPUNGE: STORE \Deleted and UID EXPUNGE, pipelined, of the user's oldest message the load
 * appended once it is a second old), LOGOUT. Uids come from a PRNG seeded per worker, so both
 * servers get the same sequence of commands. Every APPEND, STORE and EXPUNGE wakes the user's
 * IDLE client: the time from an APPEND's send to the EXISTS there is the wake latency. A
 * warm-up, then the measured window of DURATION seconds: an operation counts when it ends in
 * the window. After each round every INBOX is put back to its pre-fill. Rounds alternate D, M,
 * D, M...: both servers are up, only one has connections; the idle one's CPU over the other's
 * round is printed as a check.
 *
 * It prints per round and per system: operations/s, p99 latency overall, server CPU ms per
 * operation (utime+stime of the server's whole process tree from /proc, reaped children
 * included: Dovecot's master, imap-login, imap, auth...; mailgrid's node with its threads),
 * the client's CPU per operation and the machine's busy share (is the client the
 * bottleneck?), idle wakes; per operation kind: ops/s and p50/p99; then the medians over the
 * rounds and the ratios, each written so that above 1 means mailgrid does better: ops/s M/D,
 * CPU per op D/M, p99 D/M. Then a JSON line with every figure (also in bench-results/).
 * Needs root (Dovecot runs as root and switches to its users).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createAdminClient, createMailboxClient, deadline, MailboxCalls } from '@mailgrid/protocol';
import { freePort, startNode, type NodeHandle } from '@mailgrid/testing';
import { ImapClient, type Reply } from './imap-client.js';
import { CLK_TCK, machineTicks, treeTicks } from './proc.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '60' },
    warmup: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '24' },
    idle: { type: 'string', default: '32' },
    users: { type: 'string', default: '32' },
    messages: { type: 'string', default: '100' },
    'ops-per-session': { type: 'string', default: '30' },
    format: { type: 'string', default: 'maildir' },
    key: { type: 'string', default: 'ec' },
    systems: { type: 'string', default: 'D,M' },
  },
});
const DURATION = Number(values.duration);
const WARMUP = Number(values.warmup);
const ROUNDS = Number(values.rounds);
const CONNECTIONS = Number(values.connections);
const USERS = Number(values.users);
const IDLERS = Math.min(Number(values.idle), USERS);
const MESSAGES = Number(values.messages);
const OPS_PER_SESSION = Number(values['ops-per-session']);
const FORMAT = values.format;
const SYSTEMS = values.systems.split(',').map((s) => s.trim().toUpperCase());
if (!['maildir', 'sdbox'].includes(FORMAT)) throw new Error('--format maildir or sdbox');
if (!['ec', 'rsa'].includes(values.key)) throw new Error('--key ec or rsa');
const DOMAIN = 'example.test';
const PASSWORD = 'bench-secret';
const user = (i: number) => `u${i}@${DOMAIN}`;
const log = (msg: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The kinds of operation, in the order of the tables. */
const KINDS = ['connect', 'login', 'select', 'fetch-headers', 'fetch-body', 'store', 'append', 'expunge', 'logout'] as const;
type Kind = (typeof KINDS)[number];
/** A session's cycle after LOGIN and SELECT. */
const CYCLE: Kind[] = ['fetch-headers', 'fetch-body', 'store', 'fetch-headers', 'append', 'fetch-body', 'store', 'fetch-headers', 'fetch-body', 'expunge'];
const PAGE = 20;
/**
 * An appended message lives at least this long before the load expunges it: Dovecot tells an
 * IDLE client of changes half a second after them, so a message added and expunged sooner is
 * (rightly) never announced, and a real user deletes older mail anyway.
 */
const EXPUNGE_AFTER_MS = 1_000;

// ---- the messages -------------------------------------------------------------------------

/** Sizes of the pre-fill, cycled: mostly a few KB, a tail to 100 KB (mean ~17 KB). */
const SIZES = [1_500, 2_500, 3_000, 4_000, 2_000, 6_000, 3_500, 10_000, 30_000, 100_000];

function message(i: number, size: number, to: string): Buffer {
  const head = [
    `Return-Path: <sender${i % 17}@outside.test>`,
    `From: "Sender ${i % 17}" <sender${i % 17}@outside.test>`,
    `To: <${to}>`,
    `Subject: Bench message ${i}: quarterly figures and a longer subject line`,
    `Date: ${new Date(Date.UTC(2026, 10, 1) + i * 60_000).toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <bench-${i}-${Math.random().toString(36).slice(2)}@outside.test>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 7bit',
  ].join('\r\n');
  let m = `${head}\r\n\r\n`;
  const line = 'The quick brown fox jumps over the lazy dog, and the bench counts every byte.\r\n';
  while (m.length + line.length <= size) m += line;
  return Buffer.from(m);
}

// ---- the systems --------------------------------------------------------------------------

interface System {
  label: 'D' | 'M';
  name: string;
  port: number;
  /** Roots of the process trees whose CPU counts. */
  pids(): number[];
  stop(): Promise<void>;
}

const systemTicks = (s: System) => s.pids().reduce((n, p) => n + treeTicks(p), 0);

function waitPort(port: number, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve()));
      s.once('error', () => (Date.now() > until ? reject(new Error(`nothing listens on ${port}`)) : setTimeout(attempt, 100)));
    };
    attempt();
  });
}

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** One throwaway certificate for both servers. */
function certificate(dir: string): { key: string; cert: string } {
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  const alg = values.key === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'] : ['-newkey', 'rsa:2048'];
  sh('openssl', ['req', '-x509', ...alg, '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=bench.local']);
  return { key, cert };
}

function ensureDovecot(): void {
  if (existsSync('/usr/sbin/dovecot') && existsSync('/usr/lib/dovecot/imap')) return;
  if (process.getuid?.() !== 0) throw new Error('install dovecot-imapd first (needs root)');
  log('installing dovecot-imapd');
  for (const args of [['update'], ['install', '-y', '--no-install-recommends', 'dovecot-imapd']]) {
    const r = spawnSync('apt-get', args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (r.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed`);
  }
  // Debian's package starts a system Dovecot where it can: the bench runs its own.
  spawnSync('sh', ['-c', 'systemctl disable --now dovecot 2>/dev/null || service dovecot stop 2>/dev/null'], { stdio: 'ignore' });
}

/** D: Dovecot's imapd in a temporary folder (nothing under /etc is read or touched). */
async function startDovecot(dir: string, tls: { key: string; cert: string }, hash: string): Promise<System> {
  ensureDovecot();
  if (spawnSync('id', ['vmail']).status !== 0) sh('useradd', ['-r', '-U', '-s', '/usr/sbin/nologin', 'vmail']);
  const port = await freePort();
  const [dc, mail] = ['dovecot', 'mail'].map((d) => join(dir, d));
  for (const d of [join(dc, 'run'), join(dc, 'state'), mail]) mkdirSync(d, { recursive: true });
  chmodSync(dir, 0o755);
  const vmail = Number(sh('id', ['-u', 'vmail']));
  const vmailGid = Number(sh('id', ['-g', 'vmail']));
  chownSync(mail, vmail, vmailGid);
  writeFileSync(join(dc, 'users'), Array.from({ length: USERS }, (_, i) => `${user(i)}:{SHA512-CRYPT}${hash}\n`).join(''));
  // Each of its sessions holds an imap-login process (the TLS proxy) and an imap one.
  const loginProcesses = CONNECTIONS + IDLERS + 8 > 100 ? `  process_limit = ${CONNECTIONS + IDLERS + 8}\n` : '';
  writeFileSync(join(dc, 'dovecot.conf'), `# bench:imap; mail_fsync and everything not set here as shipped
protocols = imap
listen = 127.0.0.1
base_dir = ${join(dc, 'run')}
state_dir = ${join(dc, 'state')}
log_path = ${join(dir, 'dovecot.log')}
ssl = required
ssl_cert = <${tls.cert}
ssl_key = <${tls.key}
${existsSync('/usr/share/dovecot/dh.pem') ? 'ssl_dh = </usr/share/dovecot/dh.pem' : ''}
first_valid_uid = 100
mail_uid = vmail
mail_gid = vmail
mail_location = ${FORMAT === 'sdbox' ? 'sdbox:~/sdbox' : 'maildir:~/Maildir'}
# mailgrid trusts a verified password for 10 minutes (auth.cacheMs): the same here.
auth_cache_size = 10M
auth_cache_ttl = 10 mins
passdb {
  driver = passwd-file
  args = ${join(dc, 'users')}
}
userdb {
  driver = static
  args = uid=vmail gid=vmail home=${mail}/%d/%n
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = ${port}
    ssl = yes
  }
${loginProcesses}}
`);
  // No pipes to a daemon: it keeps them open, and us waiting. It says what went wrong in its log.
  const started = spawnSync('dovecot', ['-c', join(dc, 'dovecot.conf')], { stdio: 'ignore' });
  const logTail = () => (existsSync(join(dir, 'dovecot.log')) ? readFileSync(join(dir, 'dovecot.log'), 'utf8').trim().split('\n').slice(-5).join('\n') : '');
  if (started.status !== 0) throw new Error(`dovecot did not start (${started.status}): ${logTail()}`);
  await waitPort(port).catch((err) => Promise.reject(new Error(`${err.message}: ${logTail()}`)));
  const masterPid = () => Number(readFileSync(join(dc, 'run', 'master.pid'), 'utf8').trim());
  const version = sh('dovecot', ['--version']).trim();
  return {
    label: 'D',
    name: `Dovecot ${version.split(' ')[0]} (${FORMAT})`,
    port,
    pids: () => [masterPid()],
    stop: async () => {
      let pid: number;
      try {
        pid = masterPid();
        process.kill(pid, 'SIGTERM');
      } catch {
        return; // not running
      }
      for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await sleep(100);
    },
  };
}

/** M: a mailgrid single node, its accounts with the same password hash. */
async function startMailgrid(dir: string, tls: { key: string; cert: string }, hash: string): Promise<System> {
  const node: NodeHandle = await startNode({
    dataDir: join(dir, 'mailgrid'),
    logFile: join(dir, 'mailgrid.log'),
    env: { MAILGRID_TLS_KEY_FILE: tls.key, MAILGRID_TLS_CERT_FILE: tls.cert },
  });
  const admin = createAdminClient(`127.0.0.1:${node.grpcPort}`);
  const call = (method: 'AddDomain' | 'AddAccount', req: object) =>
    new Promise<void>((resolve, reject) =>
      (admin[method] as Function)(req, { deadline: deadline(30_000) }, (err: Error | null) => (err && !/exist/i.test(err.message) ? reject(err) : resolve())),
    );
  await call('AddDomain', { domain: DOMAIN });
  const address = `127.0.0.1:${node.grpcPort}`;
  const mailbox = createMailboxClient(address);
  const calls = new MailboxCalls(mailbox, { address, epoch: 0 }, { timeoutMs: 30_000 });
  for (let i = 0; i < USERS; i++) {
    await call('AddAccount', { address: user(i) });
    await calls.setPassword(user(i), hash);
  }
  admin.close();
  mailbox.close();
  return {
    label: 'M',
    name: 'mailgrid single node',
    port: node.ports.imaps,
    pids: () => [node.process.pid!],
    stop: async () => void (await node.stop()),
  };
}

/** Each user's INBOX gets the same messages, APPENDed over one connection per user (16 in flight). */
async function prefill(s: System): Promise<void> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < USERS) {
        const u = next++;
        const c = await ImapClient.open({ port: s.port, tls: true });
        await c.ok(`LOGIN ${user(u)} ${PASSWORD}`);
        const inFlight = new Set<Promise<Reply>>();
        for (let i = 0; i < MESSAGES; i++) {
          const p = c.ok(`APPEND INBOX (${i % 3 === 0 ? '\\Seen' : ''})`, message(i, SIZES[i % SIZES.length], user(u)));
          inFlight.add(p);
          void p.finally(() => inFlight.delete(p)).catch(() => undefined);
          if (inFlight.size >= 16) await Promise.race(inFlight);
        }
        await Promise.all(inFlight);
        const sel = await selectExists(c);
        if (sel !== MESSAGES) throw new Error(`${s.label}: ${user(u)} has ${sel} messages after the pre-fill, not ${MESSAGES}`);
        await c.logout();
      }
    }),
  );
  log(`${s.label}: pre-filled ${USERS} INBOXes with ${MESSAGES} messages each in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/**
 * After a round: every INBOX back to its pre-fill (the load's appended messages that are
 * left, uids past the pre-fill's, expunged), so each round starts from the same mailboxes.
 */
async function reset(s: System): Promise<void> {
  await Promise.all(
    Array.from({ length: USERS }, async (_, u) => {
      const c = await ImapClient.open({ port: s.port, tls: true });
      try {
        await c.ok(`LOGIN ${user(u)} ${PASSWORD}`);
        await c.ok('SELECT INBOX');
        c.lineLimit = 1 << 20;
        const uids: number[] = [];
        c.onUntagged = (line) => {
          if (line.startsWith('* SEARCH')) uids.push(...line.slice(8).trim().split(/\s+/).filter(Boolean).map(Number).filter((x) => x > MESSAGES));
        };
        // `N:*` takes in the highest uid even below N: hence the filter.
        await c.ok(`UID SEARCH UID ${MESSAGES + 1}:*`);
        c.onUntagged = undefined;
        if (uids.length) {
          await c.ok(`UID STORE ${uids.join(',')} +FLAGS.SILENT (\\Deleted)`);
          await c.ok(`UID EXPUNGE ${uids.join(',')}`);
        }
        const left = await selectExists(c);
        if (left !== MESSAGES) throw new Error(`${s.label}: ${user(u)} has ${left} messages after the round's reset, not ${MESSAGES}`);
        await c.logout();
      } finally {
        c.close();
      }
    }),
  );
}

/** SELECT INBOX; the EXISTS it says. */
async function selectExists(c: ImapClient): Promise<number> {
  let exists = -1;
  const was = c.onUntagged;
  c.onUntagged = (line) => {
    const m = /^\* (\d+) EXISTS/.exec(line);
    if (m) exists = Number(m[1]);
  };
  try {
    await c.ok('SELECT INBOX');
  } finally {
    c.onUntagged = was;
  }
  return exists;
}

// ---- the load -----------------------------------------------------------------------------

/** A PRNG per worker (xorshift32): the same seeds give both servers the same commands. */
function rng(seed: number): () => number {
  let x = (seed * 2654435761) >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

class Recorder {
  readonly latencies = new Map<Kind, number[]>(KINDS.map((k) => [k, []]));
  readonly bytes = new Map<Kind, number>(KINDS.map((k) => [k, 0]));
  readonly errors = new Map<string, number>();
  from = Infinity;
  until = Infinity;
  /** Per user: when each APPEND was sent (in the order their OKs came). */
  readonly appendsSent = new Map<number, number[]>();
  /** Per user: the messages the load appended and has not expunged yet, oldest first. */
  private readonly queues = new Map<number, { uid: number; at: number }[]>();
  /** EXPUNGEs left out: no appended message old enough. */
  skipped = 0;

  appended(u: number): { uid: number; at: number }[] {
    let q = this.queues.get(u);
    if (!q) this.queues.set(u, (q = []));
    return q;
  }

  add(kind: Kind, start: number, end: number, bytes = 0): void {
    if (end < this.from || end > this.until) return;
    this.latencies.get(kind)!.push(end - start);
    this.bytes.set(kind, this.bytes.get(kind)! + bytes);
  }

  error(what: string): void {
    if (performance.now() < this.from || performance.now() > this.until) return;
    const key = what.replace(/\d+/g, 'N').slice(0, 120);
    this.errors.set(key, (this.errors.get(key) ?? 0) + 1);
  }
}

/** One IDLE client: logged in, INBOX selected, in IDLE; it notes when the EXISTS count grows. */
class Idler {
  exists = 0;
  /** When each message that EXISTS announced arrived. */
  readonly wakes: number[] = [];
  private client!: ImapClient;
  private idling!: { done(): Promise<Reply> };

  constructor(readonly user: number) {}

  async start(port: number): Promise<void> {
    this.client = await ImapClient.open({ port, tls: true });
    await this.client.ok(`LOGIN ${user(this.user)} ${PASSWORD}`);
    this.exists = await selectExists(this.client);
    this.client.onUntagged = (line) => {
      const m = /^\* (\d+) (EXISTS|EXPUNGE)/.exec(line);
      if (!m) return;
      if (m[2] === 'EXPUNGE') return void this.exists--;
      const now = performance.now();
      for (let n = Number(m[1]); this.exists < n; this.exists++) this.wakes.push(now);
    };
    this.idling = await this.client.idle();
  }

  async stop(): Promise<void> {
    await this.idling.done().catch(() => undefined);
    await this.client.logout();
  }
}

async function session(port: number, u: number, random: () => number, rec: Recorder, stopping: () => boolean): Promise<void> {
  let t = performance.now();
  const c = await ImapClient.open({ port, tls: true });
  let now = performance.now();
  rec.add('connect', t, now);
  const timed = async (kind: Kind, run: () => Promise<Reply>) => {
    const start = performance.now();
    const r = await run();
    rec.add(kind, start, performance.now(), r.literalBytes);
    return r;
  };
  try {
    await timed('login', () => c.ok(`LOGIN ${user(u)} ${PASSWORD}`));
    await timed('select', () => c.ok('SELECT INBOX'));
    const appended: number[] = [];
    let flag = random() < 0.5;
    for (let i = 0; i < OPS_PER_SESSION && !stopping(); i++) {
      const kind = CYCLE[i % CYCLE.length];
      const uid = 1 + Math.floor(random() * MESSAGES);
      switch (kind) {
        case 'fetch-headers': {
          const first = 1 + Math.floor(random() * (MESSAGES - PAGE + 1));
          await timed(kind, () => c.ok(`UID FETCH ${first}:${first + PAGE - 1} (UID FLAGS ENVELOPE BODY.PEEK[HEADER.FIELDS (From To Subject Date)])`));
          break;
        }
        case 'fetch-body':
          await timed(kind, () => c.ok(`UID FETCH ${uid} (UID BODY.PEEK[])`));
          break;
        case 'store':
          flag = !flag;
          await timed(kind, () => c.ok(`UID STORE ${uid} ${flag ? '+' : '-'}FLAGS (\\Flagged)`));
          break;
        case 'append': {
          const sent = performance.now();
          const r = await timed(kind, () => c.ok('APPEND INBOX ()', message(100_000 + i, 4_096, user(u))));
          const m = /\[APPENDUID \d+ (\d+)\]/.exec(r.text);
          if (!m) throw new Error(`APPEND without APPENDUID: ${r.text}`);
          rec.appended(u).push({ uid: Number(m[1]), at: performance.now() });
          const list = rec.appendsSent.get(u) ?? [];
          list.push(sent);
          rec.appendsSent.set(u, list);
          break;
        }
        case 'expunge': {
          // The user's oldest appended message, once it is a second old (else none this time).
          const queue = rec.appended(u);
          if (!queue.length || performance.now() - queue[0].at < EXPUNGE_AFTER_MS) {
            rec.skipped++;
            break;
          }
          const gone = queue.shift()!.uid;
          await timed(kind, async () => {
            // Both at once: IMAP allows a UID command after a UID STORE without waiting.
            const [, r] = await Promise.all([c.ok(`UID STORE ${gone} +FLAGS.SILENT (\\Deleted)`), c.ok(`UID EXPUNGE ${gone}`)]);
            return r;
          });
          break;
        }
      }
    }
    t = performance.now();
    await c.command('LOGOUT');
    now = performance.now();
    rec.add('logout', t, now);
  } finally {
    c.close();
  }
}

interface RoundResult {
  system: 'D' | 'M';
  round: number;
  seconds: number;
  ops: number;
  opsPerSec: number;
  p99Ms: number;
  serverCpuMsPerOp: number;
  clientCpuMsPerOp: number;
  machineBusyPct: number;
  /** CPU of the other system (idle, not under load) during this round, ms. */
  otherCpuMs: number | undefined;
  wakes: { appends: number; seen: number; p50Ms: number; p99Ms: number };
  /** EXPUNGEs left out for want of an appended message a second old. */
  expungesSkipped: number;
  kinds: Record<Kind, { n: number; perSec: number; p50Ms: number; p99Ms: number; kbPerOp: number }>;
  errors: Record<string, number>;
}

const pct = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN);
const r2 = (x: number) => Math.round(x * 100) / 100;

async function round(s: System, other: System | undefined, n: number): Promise<RoundResult> {
  spawnSync('sync');
  const rec = new Recorder();
  const idlers = Array.from({ length: IDLERS }, (_, i) => new Idler(i));
  await Promise.all(idlers.map((i) => i.start(s.port)));
  let stop = false;
  const workers = Array.from({ length: CONNECTIONS }, async (_, w) => {
    const random = rng(1_000 * n + w + 1);
    for (let k = 0; !stop; k++) {
      const u = (w + k * CONNECTIONS) % USERS;
      try {
        await session(s.port, u, random, rec, () => stop);
      } catch (err) {
        rec.error((err as Error).message);
        await sleep(50); // a refused session does not spin
      }
    }
  });
  await sleep(WARMUP * 1_000);
  // The window: CPU of the server tree, of this client, of the machine.
  const cpu0 = systemTicks(s);
  const other0 = other ? systemTicks(other) : 0;
  const client0 = process.cpuUsage();
  const machine0 = machineTicks();
  rec.from = performance.now();
  rec.until = rec.from + DURATION * 1_000;
  await sleep(DURATION * 1_000);
  const cpu1 = systemTicks(s);
  const other1 = other ? systemTicks(other) : 0;
  const client = process.cpuUsage(client0);
  const machine1 = machineTicks();
  stop = true;
  await Promise.all(workers);
  // Wakes still on their way get a moment (each idler should have seen every APPEND of its user).
  const appendsOf = (u: number) => rec.appendsSent.get(u)?.length ?? 0;
  for (let i = 0; i < 50 && idlers.some((d) => d.wakes.length < appendsOf(d.user)); i++) await sleep(100);
  await Promise.all(idlers.map((i) => i.stop()));
  await reset(s);
  // The i-th APPEND to a user is matched with the i-th message its idler heard of.
  const wakeMs: number[] = [];
  let appends = 0;
  let seen = 0;
  for (const d of idlers) {
    const sent = rec.appendsSent.get(d.user) ?? [];
    sent.sort((a, b) => a - b);
    appends += sent.length;
    seen += Math.min(sent.length, d.wakes.length);
    for (let i = 0; i < Math.min(sent.length, d.wakes.length); i++) if (sent[i] >= rec.from && sent[i] <= rec.until) wakeMs.push(d.wakes[i] - sent[i]);
  }
  wakeMs.sort((a, b) => a - b);
  const all = KINDS.flatMap((k) => rec.latencies.get(k)!).sort((a, b) => a - b);
  const kinds = Object.fromEntries(
    KINDS.map((k) => {
      const l = rec.latencies.get(k)!.sort((a, b) => a - b);
      return [k, { n: l.length, perSec: r2(l.length / DURATION), p50Ms: r2(pct(l, 50)), p99Ms: r2(pct(l, 99)), kbPerOp: r2(l.length ? rec.bytes.get(k)! / l.length / 1024 : 0) }];
    }),
  ) as RoundResult['kinds'];
  const ops = all.length;
  return {
    system: s.label,
    round: n,
    seconds: DURATION,
    ops,
    opsPerSec: Math.round(ops / DURATION),
    p99Ms: r2(pct(all, 99)),
    serverCpuMsPerOp: r2((1000 * (cpu1 - cpu0)) / CLK_TCK / ops),
    clientCpuMsPerOp: r2((client.user + client.system) / 1000 / ops),
    machineBusyPct: Math.round((100 * (machine1.busy - machine0.busy)) / (machine1.total - machine0.total)),
    otherCpuMs: other ? Math.round((1000 * (other1 - other0)) / CLK_TCK) : undefined,
    wakes: { appends, seen, p50Ms: r2(pct(wakeMs, 50)), p99Ms: r2(pct(wakeMs, 99)) },
    expungesSkipped: rec.skipped,
    kinds,
    errors: Object.fromEntries(rec.errors),
  };
}

// ---- the report ---------------------------------------------------------------------------

const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function table(rows: (string | number)[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ')).join('\n');
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'mailgrid-imap-bench-'));
  const shape = `${CONNECTIONS} connections (${OPS_PER_SESSION} ops per session) + ${IDLERS} IDLE, ${USERS} users x ${MESSAGES} messages, ${WARMUP} s warm-up + ${DURATION} s x ${ROUNDS} rounds, implicit TLS (${values.key === 'ec' ? 'ECDSA P-256' : 'RSA 2048'})`;
  console.log(`# bench:imap ${new Date().toISOString()}: ${shape}; ${cpus().length} cores (${cpus()[0]?.model.trim()}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`);
  console.log('# both servers over implicit TLS with one certificate: mailgrid refuses LOGIN before TLS, so TLS on both is the like-for-like setup');
  const systems: System[] = [];
  try {
    const tls = certificate(dir);
    const hash = sh('openssl', ['passwd', '-6', PASSWORD]).trim();
    for (const label of SYSTEMS) {
      log(`starting ${label}`);
      const s = label === 'D' ? await startDovecot(dir, tls, hash) : await startMailgrid(dir, tls, hash);
      systems.push(s);
      await prefill(s);
    }
    console.log(`# ${systems.map((s) => `${s.label} = ${s.name}`).join(', ')}; pre-filled by IMAP APPEND on both`);
    const results: RoundResult[] = [];
    console.log(['system', 'round', 'ops/s', 'p99 ms', 'srv cpu ms/op', 'client cpu ms/op', 'busy %', 'idle cpu ms', 'wakes', 'wake p99 ms', 'errors'].join('\t'));
    for (let r = 1; r <= ROUNDS; r++) {
      for (const s of systems) {
        const res = await round(s, systems.find((o) => o !== s), r);
        results.push(res);
        const errors = Object.values(res.errors).reduce((a, b) => a + b, 0);
        console.log([res.system, r, res.opsPerSec, res.p99Ms, res.serverCpuMsPerOp, res.clientCpuMsPerOp, res.machineBusyPct, res.otherCpuMs ?? '-', `${res.wakes.seen}/${res.wakes.appends}`, res.wakes.p99Ms, errors].join('\t'));
        for (const [e, k] of Object.entries(res.errors).slice(0, 3)) console.log(`  !! ${res.system} error x${k}: ${e}`);
      }
    }
    // Medians over the rounds, per system and per kind.
    const med: Record<string, { opsPerSec: number; p99Ms: number; serverCpuMsPerOp: number; clientCpuMsPerOp: number; wakeP99Ms: number; kinds: Record<string, { perSec: number; p50Ms: number; p99Ms: number; kbPerOp: number }> }> = {};
    for (const s of systems) {
      const mine = results.filter((x) => x.system === s.label);
      med[s.label] = {
        opsPerSec: median(mine.map((x) => x.opsPerSec)),
        p99Ms: median(mine.map((x) => x.p99Ms)),
        serverCpuMsPerOp: median(mine.map((x) => x.serverCpuMsPerOp)),
        clientCpuMsPerOp: median(mine.map((x) => x.clientCpuMsPerOp)),
        wakeP99Ms: median(mine.map((x) => x.wakes.p99Ms)),
        kinds: Object.fromEntries(KINDS.map((k) => [k, { perSec: r2(median(mine.map((x) => x.kinds[k].perSec))), p50Ms: r2(median(mine.map((x) => x.kinds[k].p50Ms))), p99Ms: r2(median(mine.map((x) => x.kinds[k].p99Ms))), kbPerOp: r2(median(mine.map((x) => x.kinds[k].kbPerOp))) }])),
      };
    }
    const both = med.D && med.M;
    console.log(`\nmedians over ${ROUNDS} rounds, per operation kind${both ? ' (ratio: p99 D/M, above 1 is mailgrid faster)' : ''}:`);
    const head = ['kind', ...systems.flatMap((s) => [`${s.label} ops/s`, `${s.label} p50 ms`, `${s.label} p99 ms`, `${s.label} KB/op`]), ...(both ? ['p99 D/M'] : [])];
    const rows = [...KINDS, 'all' as const].map((k) => [
      k,
      ...systems.flatMap((s) => (k === 'all' ? [med[s.label].opsPerSec, '', med[s.label].p99Ms, ''] : [med[s.label].kinds[k].perSec, med[s.label].kinds[k].p50Ms, med[s.label].kinds[k].p99Ms, med[s.label].kinds[k].kbPerOp])),
      ...(both ? [r2((k === 'all' ? med.D.p99Ms : med.D.kinds[k].p99Ms) / (k === 'all' ? med.M.p99Ms : med.M.kinds[k].p99Ms))] : []),
    ]);
    console.log(table([head, ...rows]));
    for (const s of systems)
      console.log(`median ${s.label}: ${med[s.label].opsPerSec} ops/s, p99 ${med[s.label].p99Ms} ms, server cpu ${med[s.label].serverCpuMsPerOp} ms/op, client cpu ${med[s.label].clientCpuMsPerOp} ms/op, IDLE wake p99 ${med[s.label].wakeP99Ms} ms`);
    const ratios: Record<string, number> = {};
    if (both)
      Object.assign(ratios, {
        'ops/s M/D': r2(med.M.opsPerSec / med.D.opsPerSec),
        'cpu per op D/M': r2(med.D.serverCpuMsPerOp / med.M.serverCpuMsPerOp),
        'p99 D/M': r2(med.D.p99Ms / med.M.p99Ms),
        'wake p99 D/M': r2(med.D.wakeP99Ms / med.M.wakeP99Ms),
      });
    if (both) console.log(`ratios (above 1: mailgrid better): ${Object.entries(ratios).map(([k, v]) => `${k} ${v}`).join('; ')}`);
    const figures = { bench: 'imap', date: new Date().toISOString(), shape, systems: Object.fromEntries(systems.map((s) => [s.label, s.name])), rounds: results, medians: med, ratios };
    mkdirSync('bench-results', { recursive: true });
    writeFileSync(`bench-results/imap-${Date.now()}.json`, JSON.stringify(figures, null, 2));
    console.log(JSON.stringify(figures));
    if (results.some((x) => Object.keys(x.errors).length || x.wakes.seen < x.wakes.appends)) process.exitCode = 1;
  } finally {
    for (const s of systems.reverse()) await s.stop().catch((err) => log(`stopping ${s.label}: ${err}`));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
