import { connectEtcd, Keys, readPrefix, singleEtcdArgs } from '@mailgrid/cluster';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, type AccessListenerName } from '@mailgrid/core';
import { CliError } from '../errors.js';
import { haproxyConfig } from './haproxy-config.js';
import { ACCESS_SERVICES, backendId, frontendId, groupName, ROLE_PORTS, roleEnv, type NodeRole, type NodeSpec } from './topology.js';

/**
 * `mailgrid cluster up|status|stop|start|down`: a real cluster on this machine. etcd,
 * HAProxy, frontends and backends run as separate OS processes on free loopback ports;
 * `.mailgrid/cluster.json` in the current folder lists them, and every CLI command run in
 * this folder finds the cluster through it.
 */
export const STATE_FILE = join('.mailgrid', 'cluster.json');
const CLI = fileURLToPath(new URL('../../bin/mailgrid.js', import.meta.url));
const PREFIX = '/mailgrid/v1';

export type ProcessRole = 'etcd' | 'haproxy' | 'frontend' | 'backend';

export interface ProcessEntry {
  id: string;
  role: ProcessRole;
  group?: string;
  pid: number;
  ports: Record<string, number>;
  dataDir?: string;
  log: string;
  command: string[];
  env: Record<string, string>;
}

export interface ClusterState {
  version: 1;
  dir: string;
  etcd: string;
  prefix: string;
  smtp: string;
  createdAt: string;
  /** Every node's `http.adminToken`: the dashboard's write access (`mailgrid dashboard` adds it to the URL). */
  adminToken?: string;
  /** With --shared-ports: the access listeners every frontend shares (`listen.reusePort`, no balancer), by the registry's names. */
  shared?: Record<string, string>;
  processes: ProcessEntry[];
}

export function readState(cwd = process.cwd()): ClusterState | undefined {
  const file = join(cwd, STATE_FILE);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8'));
}

function writeState(state: ClusterState, cwd: string): void {
  mkdirSync(join(cwd, '.mailgrid'), { recursive: true });
  // It holds the admin token: the operator's alone.
  writeFileSync(join(cwd, STATE_FILE), JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
}

/** Whether a process runs; a zombie (dead, not yet reaped by its new parent) does not. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return true;
  }
}

function requireBinary(name: string, pkg: string): string {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  if (r.status !== 0)
    throw new CliError(`${name} is not installed; install it with: sudo apt-get install ${pkg}  (or run: bash .ci/run, which installs it)`);
  return r.stdout.trim();
}

function launch(entry: Omit<ProcessEntry, 'pid'>): ProcessEntry {
  const fd = openSync(entry.log, 'a');
  const outside = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MAILGRID_')));
  const child = spawn(entry.command[0], entry.command.slice(1), {
    env: { ...outside, ...entry.env },
    detached: true,
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  child.unref();
  if (!child.pid) throw new CliError(`could not start ${entry.id}`);
  return { ...entry, pid: child.pid };
}

/** Polls `check`; fails at once, with the end of its log, if a process it waits on dies. */
async function until(what: string, check: () => Promise<boolean>, watch: ProcessEntry[] = [], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    const dead = watch.find((p) => !alive(p.pid));
    if (dead) {
      const tail = readFileSync(dead.log, 'utf8').trim().split('\n').slice(-5).join('\n  ');
      throw new CliError(`${dead.id} exited while waiting for ${what}:\n  ${tail}`);
    }
    if (Date.now() > deadline) throw new CliError(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function greets(address: string): Promise<boolean> {
  const [host, port] = address.split(':');
  return new Promise((res) => {
    const s = connect(Number(port), host);
    s.setTimeout(2_000, () => (s.destroy(), res(false)));
    s.once('error', () => res(false));
    s.once('data', (d) => {
      s.end('QUIT\r\n');
      res(d.toString().startsWith('220'));
    });
  });
}

async function registered(etcd: string, ids: string[]): Promise<boolean> {
  const client = connectEtcd(etcd);
  try {
    const keys = new Keys(PREFIX);
    const seen = new Set<string>();
    await readPrefix(client, keys.members, (kv) => {
      const m = JSON.parse(kv.value.toString());
      if (m.state === 'up') seen.add(m.id);
    });
    return ids.every((id) => seen.has(id));
  } finally {
    client.close();
  }
}

async function elected(etcd: string, groups: number): Promise<boolean> {
  const client = connectEtcd(etcd);
  try {
    const keys = new Keys(PREFIX);
    for (let i = 0; i < groups; i++) if (!(await client.get(keys.election(groupName(i))).exec()).kvs.length) return false;
    return true;
  } finally {
    client.close();
  }
}

/** A node's entry: its environment is the role's (topology.ts) over the settings every node shares. */
function nodeEntry(role: NodeRole, dir: string, common: Record<string, string>, spec: Omit<NodeSpec, 'dataDir'>): Omit<ProcessEntry, 'pid'> {
  const dataDir = join(dir, spec.id);
  mkdirSync(dataDir, { recursive: true });
  return {
    id: spec.id,
    role,
    group: spec.group,
    ports: spec.ports as Record<string, number>,
    dataDir,
    log: join(dir, `${spec.id}.log`),
    command: [process.execPath, CLI, role],
    env: { ...common, ...roleEnv(role, { ...spec, dataDir }) },
  };
}

export async function clusterUp(options: { frontends: number; groups: number; replicas?: number; sharedPorts?: boolean; cwd?: string }): Promise<ClusterState> {
  const cwd = resolve(options.cwd ?? process.cwd());
  const existing = readState(cwd);
  if (existing?.processes.some((p) => alive(p.pid)))
    throw new CliError(`a cluster is already running from this folder (${STATE_FILE}); stop it with: mailgrid cluster down`);
  const etcdBin = requireBinary('etcd', 'etcd-server');
  const haproxyBin = options.sharedPorts ? '' : requireBinary('haproxy', 'haproxy');
  const replicas = options.replicas ?? 0;
  if (options.frontends < 1 || options.groups < 1) throw new CliError('--frontends and --groups must be at least 1');
  if (!Number.isInteger(replicas) || replicas < 0) throw new CliError('--replicas must be 0 or more');

  const dir = mkdtempSync(join(tmpdir(), 'mailgrid-cluster-'));
  const adminToken = process.env.MAILGRID_HTTP_ADMIN_TOKEN || randomBytes(18).toString('base64url');
  const state: ClusterState = { version: 1, dir, etcd: '', prefix: PREFIX, smtp: '', createdAt: new Date().toISOString(), adminToken, processes: [] };
  // Every port this cluster chose, so the processes started side by side never pick the same one.
  const reserved = new Set<number>();
  const start = (names: string[], make: (ports: Record<string, number>) => Omit<ProcessEntry, 'pid'>, ready: (p: ProcessEntry) => Promise<boolean>, what: string) =>
    startProcess(state, cwd, reserved, names, make, ready, what);
  try {
    const etcd = await start(
      ['client', 'peer'],
      ({ client, peer }) => ({
        id: 'etcd',
        role: 'etcd',
        ports: { client, peer },
        dataDir: join(dir, 'etcd'),
        log: join(dir, 'etcd.log'),
        command: [etcdBin, ...singleEtcdArgs('mailgrid', join(dir, 'etcd'), client, peer)],
        env: {},
      }),
      async (p) => {
        const c = connectEtcd(`http://127.0.0.1:${p.ports.client}`);
        try {
          await c.get('health').exec();
          return true;
        } finally {
          c.close();
        }
      },
      'etcd',
    );
    state.etcd = `http://127.0.0.1:${etcd.ports.client}`;
    writeState(state, cwd);

    // MAILGRID_* settings given to `cluster up` apply to every node, and again on restart;
    // the role's own (ids, ports, etcd, group, PROXY) win over them.
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('MAILGRID_') && k !== 'MAILGRID_ETCD')) as Record<string, string>;
    const common = { MAILGRID_LOG_LEVEL: 'info', ...inherited, MAILGRID_HTTP_ADMIN_TOKEN: adminToken };
    const isRegistered = (p: ProcessEntry) => registered(state.etcd, [p.id]);
    // Per group: be-<n>, elected first, then its replicas be-<n>-r1, be-<n>-r2, ...
    const backend = (i: number, r: number) => {
      const id = backendId(i, r);
      return start(
        [...ROLE_PORTS.backend],
        (ports) => nodeEntry('backend', dir, common, { id, etcd: state.etcd, ports, group: groupName(i) }),
        isRegistered,
        `${id} to register in etcd`,
      );
    };
    const groups = Array.from({ length: options.groups }, (_, i) => i);
    const primaries = await Promise.all(groups.map((i) => backend(i, 0)));
    await until('every hosting group to elect a primary', () => elected(state.etcd, options.groups), primaries);
    const backends = groups.flatMap((i) => Array.from({ length: replicas }, (_, r) => backend(i, r + 1)));
    // --shared-ports: every frontend listens on the same access ports, the kernel spreading connections over them.
    const shared: Record<string, number> = {};
    if (options.sharedPorts) for (const name of ACCESS_SERVICES) shared[name] = await freePort(reserved);
    if (options.sharedPorts) state.shared = Object.fromEntries(Object.entries(shared).map(([n, port]) => [n, `127.0.0.1:${port}`]));
    const frontendEnv = options.sharedPorts ? { ...common, MAILGRID_LISTEN_REUSE_PORT: 'true' } : common;
    // Behind HAProxy (on this host: 127.0.0.1) a frontend takes the client's address from its PROXY header; sharing ports, clients come straight.
    const proxyFrom = options.sharedPorts ? undefined : '127.0.0.1';
    const frontends = Array.from({ length: options.frontends }, (_, i) =>
      start(
        ROLE_PORTS.frontend.filter((p) => !(p in shared)),
        (ports) => nodeEntry('frontend', dir, frontendEnv, { id: frontendId(i), etcd: state.etcd, ports: { ...ports, ...shared }, proxyFrom }),
        isRegistered,
        `${frontendId(i)} to register in etcd`,
      ),
    );
    await Promise.all(backends);
    const fronts = (await Promise.all(frontends)).map((p) => ({ id: p.id, host: '127.0.0.1', ports: p.ports as Record<AccessListenerName, number>, httpPort: p.ports.http }));
    if (options.sharedPorts) {
      state.smtp = state.shared!.smtp;
      writeState(state, cwd);
      return state;
    }

    const cfg = join(dir, 'haproxy.cfg');
    const haproxy = await start(
      [...ACCESS_SERVICES],
      (ports) => {
        const binds = Object.fromEntries(Object.entries(ports).map(([s, port]) => [s, `127.0.0.1:${port}`])) as Record<AccessListenerName, string>;
        // One thread: HAProxy shares this machine with the nodes.
        writeFileSync(cfg, haproxyConfig(binds, fronts, { nbthread: 1, comment: 'generated by mailgrid cluster up' }));
        return { id: 'haproxy', role: 'haproxy', ports, log: join(dir, 'haproxy.log'), command: [haproxyBin, '-db', '-f', cfg], env: {} };
      },
      (p) => greets(`127.0.0.1:${p.ports.smtp}`),
      'HAProxy to pass SMTP to a frontend',
    );
    state.smtp = `127.0.0.1:${haproxy.ports.smtp}`;
    writeState(state, cwd);
    return state;
  } catch (err) {
    await clusterDown(cwd).catch(() => undefined);
    throw err;
  }
}

/**
 * Starts one process on ports chosen now (freePort: from below the kernel's ephemeral
 * range, so nothing on a busy machine takes them before the bind) and waits until `ready`.
 * If something did take one anyway (a server on a fixed port there), the process is
 * started again on new ones.
 */
async function startProcess(
  state: ClusterState,
  cwd: string,
  reserved: Set<number>,
  names: string[],
  make: (ports: Record<string, number>) => Omit<ProcessEntry, 'pid'>,
  ready: (p: ProcessEntry) => Promise<boolean>,
  what: string,
): Promise<ProcessEntry> {
  for (let attempt = 1; ; attempt++) {
    const ports: Record<string, number> = {};
    for (const name of names) ports[name] = await freePort(reserved);
    const p = launch(make(ports));
    state.processes.push(p);
    writeState(state, cwd);
    try {
      await until(what, () => ready(p), [p]);
      return p;
    } catch (err) {
      const log = existsSync(p.log) ? readFileSync(p.log, 'utf8') : '';
      // etcd, HAProxy and mailgrid all say so in these words: the one case worth another try.
      if (alive(p.pid) || attempt >= 5 || !/already in use|address in use/i.test(log)) throw err;
      state.processes = state.processes.filter((x) => x !== p);
      rmSync(p.log, { force: true });
    }
  }
}

function entry(state: ClusterState, id: string): ProcessEntry {
  const p = state.processes.find((x) => x.id === id);
  if (!p) throw new CliError(`no member ${id} in this cluster (members: ${state.processes.map((x) => x.id).join(', ')})`);
  return p;
}

export function requireState(cwd = process.cwd()): ClusterState {
  const state = readState(cwd);
  if (!state) throw new CliError(`no cluster here (no ${STATE_FILE}); start one with: mailgrid cluster up`);
  return state;
}

/** SIGTERM, as a container stop does; SIGKILL after the drain deadline. */
async function terminate(pid: number, graceMs: number): Promise<void> {
  if (!alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (alive(pid)) process.kill(pid, 'SIGKILL');
}

export async function clusterStop(id: string, cwd = process.cwd()): Promise<ProcessEntry> {
  const p = entry(requireState(cwd), id);
  if (!alive(p.pid)) throw new CliError(`${id} is not running`);
  await terminate(p.pid, 40_000);
  return p;
}

export async function clusterStart(id: string, cwd = process.cwd()): Promise<ProcessEntry> {
  const state = requireState(cwd);
  const p = entry(state, id);
  if (alive(p.pid)) throw new CliError(`${id} is already running (pid ${p.pid})`);
  const started = launch(p);
  state.processes = state.processes.map((x) => (x.id === id ? started : x));
  writeState(state, cwd);
  if (p.role === 'frontend' || p.role === 'backend') await until(`${id} to register`, () => registered(state.etcd, [id]), [started]);
  if (p.role === 'etcd') await new Promise((r) => setTimeout(r, 500));
  return started;
}

export async function clusterDown(cwd = process.cwd()): Promise<void> {
  const state = requireState(cwd);
  const order: ProcessRole[] = ['haproxy', 'frontend', 'backend', 'etcd'];
  for (const role of order) await Promise.all(state.processes.filter((p) => p.role === role).map((p) => terminate(p.pid, 40_000)));
  rmSync(state.dir, { recursive: true, force: true });
  rmSync(join(cwd, STATE_FILE), { force: true });
}
