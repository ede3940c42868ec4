/**
 * `npm run bench:compare`: mailgrid side by side with what an operator would run instead, on
 * one load in one run, so the ratios hold whatever this machine's speed that hour.
 *
 *   npm run bench:compare -- [--rounds 3] [--messages 20000] [--sessions 32] [--size 4096]
 *                            [--per-connection 1] [--systems A,M,B]
 *
 *   A  Postfix smtpd → qmgr → LMTP → Dovecot Maildir, fsync as shipped (Debian's packages,
 *      configured in a temporary folder; installed when missing)
 *   M  a mailgrid single node, default settings
 *   B  the bare smtp-server library, append + fdatasync before each 250 (bare-smtp.ts)
 *
 * Load: Postfix's `smtp-source -N -s SESSIONS -m MESSAGES -l SIZE`, one message per
 * connection, recipients `<seq>u@example.test` folded onto 1,000 mailboxes u0..u999 (a
 * regexp map in Postfix, aliases in mailgrid). `--per-connection K` sends K messages per
 * connection with the bench's own client instead. Rounds are interleaved (A, M, B, A, ...).
 * Per round: accepted and delivered msgs/s (A until its queue is empty; M and B acknowledge
 * only what is on disk), MB/s, and the server's CPU ms per message (its whole process tree).
 * Then medians and the ratios M/A and M/B. Needs root (Postfix and Dovecot run as root).
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { cpus, totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createAdminClient, deadline } from '@mailgrid/protocol';
import { fillerMessage, freePort, MailboxProbe, SmtpTranscript, startNode, type NodeHandle } from '@mailgrid/testing';
import { CLK_TCK, treeTicks } from './proc.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    messages: { type: 'string', default: '20000' },
    sessions: { type: 'string', default: '32' },
    size: { type: 'string', default: '4096' },
    'per-connection': { type: 'string', default: '1' },
    systems: { type: 'string', default: 'A,M,B' },
  },
});
const ROUNDS = Number(values.rounds);
const N = Number(values.messages);
const SESSIONS = Number(values.sessions);
const SIZE = Number(values.size);
const PER_CONNECTION = Number(values['per-connection']);
const SYSTEMS = values.systems.split(',').map((s) => s.trim().toUpperCase());
const DOMAIN = 'example.test';
const USERS = 1_000;
const log = (msg: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);

interface System {
  label: string;
  port: number;
  /** Roots of the process trees whose CPU counts. */
  pids(): number[];
  /** Messages on disk so far. */
  delivered(): Promise<number>;
  /** Resolves when everything accepted is delivered (A has a queue to empty). */
  settled(): Promise<void>;
  stop(): Promise<void>;
}

interface Round {
  system: string;
  round: number;
  acceptedPerSec: number;
  deliveredPerSec: number;
  mbPerSec: number;
  cpuMsPerMsg: number;
  delivered: number;
}

function run(cmd: string, args: string[], terminal = false): void {
  // `script` gives Postfix a terminal: it only says why it failed on one (or to syslog).
  // Not Dovecot: it dies of the hang-up when that terminal closes. No pipes to a daemon
  // either: it would keep them open, and us waiting.
  const r = terminal ? spawnSync('script', ['-qec', [cmd, ...args].join(' '), '/dev/null'], { encoding: 'utf8' }) : spawnSync(cmd, args, { stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stdout}${r.stderr}`);
}

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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Files under a folder, recursively (Postfix hashes its deferred queue into subfolders). */
function countFiles(dir: string, match: (path: string) => boolean = () => true): number {
  let n = 0;
  if (!existsSync(dir)) return 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) n += countFiles(p, match);
    else if (match(p)) n++;
  }
  return n;
}

function ensurePackages(): void {
  const missing = [
    ['postfix', 'postfix'],
    ['doveconf', 'dovecot-core'],
  ].filter(([bin]) => spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0);
  if (!existsSync('/usr/lib/dovecot/lmtp')) missing.push(['lmtp', 'dovecot-lmtpd']);
  if (!missing.length) return;
  if (process.getuid?.() !== 0) throw new Error(`install ${missing.map((m) => m[1]).join(' ')} first (needs root)`);
  log(`installing ${missing.map((m) => m[1]).join(' ')}`);
  spawnSync('sh', ['-c', 'echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections'], { stdio: 'inherit' });
  for (const args of [['update'], ['install', '-y', '--no-install-recommends', ...missing.map((m) => m[1])]]) {
    const r = spawnSync('apt-get', args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (r.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed`);
  }
}

/** A: Postfix and Dovecot in a temporary folder (nothing under /etc is touched). */
async function startPostfixDovecot(dir: string): Promise<System> {
  ensurePackages();
  if (spawnSync('id', ['vmail']).status !== 0) run('useradd', ['-r', '-U', '-s', '/usr/sbin/nologin', 'vmail']);
  const port = await freePort();
  const [pf, spool, data, dc, mail] = ['postfix', 'spool', 'data', 'dovecot', 'mail'].map((d) => join(dir, d));
  for (const d of [pf, spool, data, join(dc, 'run'), join(dc, 'state'), mail]) mkdirSync(d, { recursive: true });
  chmodSync(dir, 0o755);
  const postfixUid = Number(spawnSync('id', ['-u', 'postfix'], { encoding: 'utf8' }).stdout);
  const vmail = Number(spawnSync('id', ['-u', 'vmail'], { encoding: 'utf8' }).stdout);
  const vmailGid = Number(spawnSync('id', ['-g', 'vmail'], { encoding: 'utf8' }).stdout);
  chownSync(data, postfixUid, -1);
  chownSync(mail, vmail, vmailGid);
  const d = DOMAIN.replace(/\./g, '\\.');
  // <seq>u@ folds onto u(seq mod 1000)@, the last three digits without leading zeros.
  writeFileSync(join(pf, 'valias.regexp'), [
    `/^([0-9]{1,2})u@${d}$/ u$1@${DOMAIN}`,
    `/^[0-9]*([1-9][0-9][0-9])u@${d}$/ u$1@${DOMAIN}`,
    `/^[0-9]*0([1-9][0-9])u@${d}$/ u$1@${DOMAIN}`,
    `/^[0-9]*00([0-9])u@${d}$/ u$1@${DOMAIN}`,
  ].join('\n') + '\n');
  writeFileSync(join(pf, 'vmailbox.regexp'), `/^u[0-9]+@${d}$/ OK\n`);
  writeFileSync(join(pf, 'main.cf'), `# bench:compare; everything not set here is Postfix's default (queue fsync included)
compatibility_level = 3.6
queue_directory = ${spool}
data_directory = ${data}
maillog_file = ${join(dir, 'postfix.log')}
maillog_file_prefixes = ${dir}
myhostname = bench.local
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = ${DOMAIN}
virtual_alias_maps = regexp:${join(pf, 'valias.regexp')}
virtual_mailbox_maps = regexp:${join(pf, 'vmailbox.regexp')}
virtual_transport = lmtp:unix:${join(dc, 'run', 'lmtp')}
local_transport = error:local delivery disabled
alias_maps =
alias_database =
smtputf8_enable = no
message_size_limit = 104857600
`);
  // Debian's master.cf with smtpd on our port, nothing chrooted (the spool is not in /var).
  const master = readFileSync('/usr/share/postfix/master.cf.dist', 'utf8')
    .split('\n')
    .map((line) => {
      if (/^smtp\s+inet/.test(line)) return `127.0.0.1:${port} inet n - n - - smtpd`;
      const f = line.split(/\s+/);
      if (/^[a-z]/.test(line) && f.length >= 8) return [...f.slice(0, 4), 'n', ...f.slice(5)].join(' ');
      return line;
    });
  writeFileSync(join(pf, 'master.cf'), master.join('\n'));
  writeFileSync(join(dc, 'dovecot.conf'), `# bench:compare; mail_fsync and everything else as shipped
protocols = lmtp
listen = 127.0.0.1
base_dir = ${join(dc, 'run')}
state_dir = ${join(dc, 'state')}
log_path = ${join(dir, 'dovecot.log')}
ssl = no
first_valid_uid = 100
mail_uid = vmail
mail_gid = vmail
mail_location = maildir:~/Maildir
userdb {
  driver = static
  args = uid=vmail gid=vmail home=${mail}/%d/%n allow_all_users=yes
}
passdb {
  driver = static
  args = nopassword=y
}
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
}
`);
  run('dovecot', ['-c', join(dc, 'dovecot.conf')]);
  run('postfix', ['-c', pf, 'start'], true);
  await waitPort(port);
  const masterPid = () => Number(readFileSync(join(spool, 'pid', 'master.pid'), 'utf8').trim());
  const dovecotPid = () => Number(readFileSync(join(dc, 'run', 'master.pid'), 'utf8').trim());
  const queued = () => ['incoming', 'active', 'deferred', 'maildrop'].reduce((n, q) => n + countFiles(join(spool, q)), 0);
  return {
    label: 'A',
    port,
    pids: () => [masterPid(), dovecotPid()],
    delivered: async () => countFiles(mail, (p) => p.includes('/new/')),
    settled: async () => {
      // Stuck for a minute is a broken setup, not a slow one: say where to look.
      for (let left = queued(), since = Date.now(); left > 0; await sleep(200)) {
        const now = queued();
        if (now !== left) [left, since] = [now, Date.now()];
        else if (Date.now() - since > 60_000) {
          const tail = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').slice(-3).join('\n') : '');
          throw new Error(`Postfix's queue is stuck at ${left} messages:\n${tail(join(dir, 'postfix.log'))}\n${tail(join(dir, 'dovecot.log'))}`);
        }
      }
    },
    stop: async () => {
      spawnSync('script', ['-qc', `postfix -c ${pf} stop`, '/dev/null']);
      try {
        process.kill(dovecotPid(), 'SIGTERM');
      } catch {
        // not running
      }
      await sleep(1_000);
    },
  };
}

/** M: a mailgrid single node with 1,000 accounts and aliases folding <seq>u@ onto them. */
async function startMailgrid(dir: string): Promise<System> {
  const node: NodeHandle = await startNode({ dataDir: join(dir, 'mailgrid'), logFile: join(dir, 'mailgrid.log') });
  const admin = createAdminClient(`127.0.0.1:${node.grpcPort}`);
  const call = (method: 'AddDomain' | 'AddAccount' | 'AddAlias', req: object) =>
    new Promise<void>((resolve, reject) =>
      (admin[method] as Function)(req, { deadline: deadline(30_000) }, (err: Error | null) => (err && !/exist/i.test(err.message) ? reject(err) : resolve())),
    );
  const pool = async (n: number, f: (i: number) => Promise<void>) => {
    let i = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (i < n) await f(i++);
    }));
  };
  await call('AddDomain', { domain: DOMAIN });
  await pool(USERS, (i) => call('AddAccount', { address: `u${i}@${DOMAIN}` }));
  // smtp-source -N numbers from 1 to N.
  await pool(Math.max(N, 5_000) + 1, (i) => call('AddAlias', { alias: `${i}u@${DOMAIN}`, target: `u${i % USERS}@${DOMAIN}` }));
  admin.close();
  const probe = new MailboxProbe(`127.0.0.1:${node.grpcPort}`);
  return {
    label: 'M',
    port: node.smtpPort,
    pids: () => [node.process.pid!],
    delivered: async () => {
      let n = 0;
      for (let i = 0; i < USERS; i++) n += (await probe.list(`u${i}@${DOMAIN}`)).length;
      return n;
    },
    settled: async () => undefined,
    stop: async () => {
      probe.close();
      await node.stop();
    },
  };
}

/** B: the bare library; it says how many messages it stored when asked (SIGUSR2). */
async function startBare(dir: string): Promise<System> {
  const port = await freePort();
  const spool = join(dir, 'bare-spool');
  const child: ChildProcess = spawn(process.execPath, [fileURLToPath(new URL('./bare-smtp.js', import.meta.url)), String(port), spool], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((r) => child.once('exit', r));
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  await waitPort(port);
  return {
    label: 'B',
    port,
    pids: () => [child.pid!],
    delivered: async () => {
      const seen = out.length;
      child.kill('SIGUSR2');
      while (!/stored (\d+)\n$/.test(out.slice(seen))) await sleep(20);
      return Number(/stored (\d+)\n$/.exec(out)![1]);
    },
    settled: async () => undefined,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The load: smtp-source, or with --per-connection K our own client (K messages per connection). */
async function load(port: number, messages: number): Promise<number> {
  const t0 = performance.now();
  if (PER_CONNECTION === 1) {
    await new Promise<void>((resolve, reject) =>
      execFile('smtp-source', ['-N', '-s', String(SESSIONS), '-m', String(messages), '-l', String(SIZE), '-f', 'bench@client.test', '-t', `u@${DOMAIN}`, `127.0.0.1:${port}`], { maxBuffer: 1 << 26 }, (err, _o, stderr) =>
        err ? reject(new Error(`smtp-source: ${stderr || err.message}`)) : resolve(),
      ),
    );
  } else {
    await ownClient(port, messages);
  }
  return (performance.now() - t0) / 1000;
}

/** Sessions of PER_CONNECTION messages each, SESSIONS at a time, recipients numbered like smtp-source -N. */
async function ownClient(port: number, messages: number): Promise<void> {
  const data = fillerMessage(SIZE, 'From: bench@client.test\r\nTo: u@example.test\r\nSubject: bench') + '.\r\n';
  let seq = 0;
  await Promise.all(
    Array.from({ length: SESSIONS }, async () => {
      while (seq < messages) {
        const first = seq;
        const count = Math.min(PER_CONNECTION, messages - seq);
        seq += count;
        const s = await SmtpTranscript.open(port);
        try {
          await s.expect('220');
          await s.send('EHLO bench.test', '250');
          for (let i = 0; i < count; i++) {
            await s.send('MAIL FROM:<bench@client.test>', '250');
            await s.send(`RCPT TO:<${first + i}u@${DOMAIN}>`, '250');
            await s.send('DATA', '354');
            s.write(data);
            await s.expect('250');
          }
          await s.send('QUIT', '221');
        } finally {
          s.close();
        }
      }
    }),
  );
}

async function measure(system: System, round: number): Promise<Round> {
  spawnSync('sync');
  await sleep(2_000);
  const before = await system.delivered();
  const t0 = system.pids().reduce((n, p) => n + treeTicks(p), 0);
  const start = performance.now();
  const accepted = await load(system.port, N);
  await system.settled();
  const all = (performance.now() - start) / 1000;
  const ticks = system.pids().reduce((n, p) => n + treeTicks(p), 0) - t0;
  const delivered = (await system.delivered()) - before;
  return {
    system: system.label,
    round,
    acceptedPerSec: Math.round(N / accepted),
    deliveredPerSec: Math.round(delivered / all),
    mbPerSec: +((delivered * SIZE) / all / 1e6).toFixed(1),
    cpuMsPerMsg: +((1000 * ticks) / CLK_TCK / N).toFixed(2),
    delivered,
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'mailgrid-compare-'));
  const shape = `${N} messages of ${SIZE} B over ${SESSIONS} sessions, ${PER_CONNECTION} per connection`;
  console.log(`# bench:compare ${new Date().toISOString()}: ${shape}; ${cpus().length} cores (${cpus()[0]?.model.trim()}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`);
  const systems: System[] = [];
  try {
    for (const label of SYSTEMS) {
      log(`starting ${label}`);
      systems.push(await (label === 'A' ? startPostfixDovecot(dir) : label === 'M' ? startMailgrid(dir) : startBare(dir)));
    }
    log('warm-up');
    for (const s of systems) {
      await load(s.port, s.label === 'A' ? 5_000 : 3_000);
      await s.settled();
    }
    const rounds: Round[] = [];
    console.log('system\tround\taccepted/s\tdelivered/s\tMB/s\tcpu ms/msg\tdelivered');
    for (let r = 1; r <= ROUNDS; r++) {
      for (const s of systems) {
        const res = await measure(s, r);
        rounds.push(res);
        console.log(`${res.system}\t${r}\t${res.acceptedPerSec}\t${res.deliveredPerSec}\t${res.mbPerSec}\t${res.cpuMsPerMsg}\t${res.delivered}`);
        if (res.delivered !== N) console.log(`!! ${s.label} delivered ${res.delivered} of ${N}`);
      }
    }
    const med: Record<string, { delivered: number; mb: number; cpu: number }> = {};
    for (const s of systems) {
      const mine = rounds.filter((x) => x.system === s.label);
      med[s.label] = { delivered: median(mine.map((x) => x.deliveredPerSec)), mb: median(mine.map((x) => x.mbPerSec)), cpu: median(mine.map((x) => x.cpuMsPerMsg)) };
      console.log(`median ${s.label}: delivered ${med[s.label].delivered} msgs/s, ${med[s.label].mb} MB/s, cpu ${med[s.label].cpu} ms/msg`);
    }
    const ratios: Record<string, number> = {};
    if (med.M && med.A) Object.assign(ratios, { 'delivered M/A': +(med.M.delivered / med.A.delivered).toFixed(2), 'cpu per msg A/M': +(med.A.cpu / med.M.cpu).toFixed(2) });
    if (med.M && med.B) Object.assign(ratios, { 'delivered M/B': +(med.M.delivered / med.B.delivered).toFixed(2), 'cpu per msg M/B': +(med.M.cpu / med.B.cpu).toFixed(2) });
    console.log(Object.entries(ratios).map(([k, v]) => `${k} ${v}`).join('; '));
    mkdirSync('bench-results', { recursive: true });
    writeFileSync(`bench-results/compare-${Date.now()}.json`, JSON.stringify({ date: new Date().toISOString(), shape, rounds, medians: med, ratios }, null, 2));
    if (rounds.some((x) => x.delivered !== N)) process.exitCode = 1;
  } finally {
    for (const s of systems.reverse()) await s.stop().catch((err) => log(`stopping ${s.label}: ${err}`));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
