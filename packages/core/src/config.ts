import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { z } from 'zod';
import { ACCESS_PROTOCOLS, accessSettings } from './access-protocols.js';
import { parseAddress, parseNetworks } from './address.js';

/**
 * The one config pipeline: defaults → file → MAILGRID_* environment → flags, then
 * validated with every error and its key path. Every leaf of `defaults` is settable as
 * `MAILGRID_SMTP_PORT` (env) and `--smtp-port` (flag) for `smtp.port`.
 */
const port = z.number().int().min(0).max(65535);
const positive = z.number().int().positive();
/** A protocol's own listener settings over the shared `listen` ones (empty, 0: the shared one). */
const listenerOverrides = {
  host: z.string(),
  proxyFrom: z.string().superRefine(networks),
  maxClients: z.number().int().min(0),
};

export const configSchema = z.strictObject({
  nodeId: z.string().min(1).regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, dot, dash, underscore'),
  /** Site label (head office, branch): every frontend still accepts mail for every account. */
  site: z.string().min(1).regex(/^[A-Za-z0-9._-]+$/),
  dataDir: z.string().min(1),
  /** etcd endpoints, comma-separated (`http://127.0.0.1:2379`); empty runs without a cluster. */
  etcd: z.string(),
  cluster: z.strictObject({
    /** Key prefix of this cluster in etcd. */
    prefix: z.string().regex(/^\/[A-Za-z0-9._\/-]*[^/]$/, 'an absolute key prefix without a trailing slash'),
    /** Membership lease: a node missing heartbeats this long is gone. */
    leaseTtlSec: z.number().int().min(2).max(600),
  }),
  http: z.strictObject({
    /** /healthz, /readyz, /metrics and the dashboard; port 0 disables the listener. */
    host: z.string().min(1),
    port,
    /** Lets the dashboard change settings when the browser presents it; empty: the dashboard is read-only. */
    adminToken: z.string(),
  }),
  /**
   * What every access listener (SMTP, submission, POP3) shares unless its own section says
   * otherwise (`pop3.host`, `pop3.proxyFrom`, `pop3.maxClients`; empty or 0: these).
   */
  listen: z.strictObject({
    host: z.string().min(1),
    /** Expect a PROXY protocol header (from HAProxy) on connections from `proxyFrom`. */
    proxyProtocol: z.boolean(),
    /**
     * The balancers: addresses or CIDR blocks, comma-separated. Only a connection from one
     * of them may start with a PROXY header (and must); anyone else's would claim any
     * address it likes, trusted networks included.
     */
    proxyFrom: z.string().superRefine(networks),
    /** Connections at once, per protocol; past it a new one is told to come back later. */
    maxClients: positive,
    /**
     * Several frontend processes on one host share each access port (Linux SO_REUSEPORT:
     * the kernel spreads new connections over them). Off, a port taken by another process
     * stops this one at start, which is what a single node wants.
     */
    reusePort: z.boolean(),
  }),
  log: z.strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    /** smtp-server's own per-command log lines, at debug level. */
    smtpProtocol: z.boolean(),
  }),
  /** SMTP on the MX port, and what submission shares with it (limits, name, timeouts). */
  smtp: z.strictObject({
    port,
    /** Name in the greeting and in Received: headers. */
    hostname: z.string().min(1),
    maxMessageBytes: positive,
    maxRecipients: positive,
    idleTimeoutMs: positive,
    /**
     * Pause before the greeting during which a client that talks is refused as an early
     * talker. smtp-server hard-codes 100 ms, which caps one-message sessions; 0 sends the
     * greeting at once (early talkers are still caught if they beat it).
     */
    greetingDelayMs: z.number().int().min(0).max(30_000),
    reverseDns: z.boolean(),
    reverseDnsTimeoutMs: positive,
    /**
     * Clients allowed to relay to other domains without authentication (like Postfix's
     * mynetworks): comma-separated addresses or CIDR blocks. Empty: nobody.
     */
    trustedNetworks: z.string().superRefine(networks),
  }),
  /** Authenticated submission (RFC 6409): STARTTLS, then AUTH, on `port`; implicit TLS (RFC 8314) on `tlsPort`. 0 disables one. */
  submission: z.strictObject({ port, tlsPort: port, ...listenerOverrides }),
  /** POP3 (STLS before any login) on `port`, and over implicit TLS on `tlsPort`; 0 disables one. */
  pop3: z.strictObject({ port, tlsPort: port, idleTimeoutMs: positive, ...listenerOverrides }),
  /**
   * IMAP4rev2 and rev1 (STARTTLS before any login) on `port`, and over implicit TLS on
   * `tlsPort`; 0 disables one. A client idle past `idleTimeoutMs` is logged out (RFC 9051
   * wants at least 30 minutes: IDLE clients renew every 29).
   */
  imap: z.strictObject({ port, tlsPort: port, idleTimeoutMs: z.number().int().min(60_000), ...listenerOverrides }),
  /**
   * The certificate of SMTP, submission and POP3, reloaded when the files change. Empty:
   * a self-signed one is made in the data folder (and the log says so); STARTTLS on the MX
   * port is offered only with a configured one.
   */
  tls: z.strictObject({ keyFile: z.string(), certFile: z.string() }),
  auth: z.strictObject({
    /** Pause before answering a failed login (SMTP AUTH, POP3). */
    failDelayMs: z.number().int().min(0).max(60_000),
    /** Failed logins from one client address, on any frontend, before it is locked out; a session is closed after this many too. */
    maxFailures: positive,
    /** How long a failure counts (and so how long a lockout lasts). */
    lockoutMs: positive,
    /** How long a backend trusts a verified password without hashing it again (0: never); a changed password takes effect at once. */
    cacheMs: z.number().int().min(0),
  }),
  queue: z.strictObject({
    /** Past either limit, or below the free-disk floor, MAIL gets 452 4.3.1. */
    maxMessages: positive,
    maxBytes: positive,
    minFreeBytes: z.number().int().min(0),
    /** First retry after minRetryMs, doubling up to maxRetryMs. */
    minRetryMs: positive,
    maxRetryMs: positive,
    /** A recipient not delivered within this time is bounced. */
    lifetimeMs: positive,
    /** One delay notice to the sender after this long; 0 sends none. */
    delayWarningMs: z.number().int().min(0),
    /** Messages the queue runner tries at once. */
    concurrency: positive,
    /** Copy this node's queue to a queue partner before answering (the default); off, the queue is on this node's disk alone. */
    partnerCopy: z.boolean(),
    /** A queue whose node has been gone this long is taken over by its partner (a cluster member). */
    takeoverAfterMs: z.number().int().min(1_000),
    /** A partner copy that leaves a queue write waiting this long stops being waited for (the queue is unprotected until it is back). */
    partnerMaxLagMs: z.number().int().min(100),
    /** Queue log entries kept beyond what the partner has, so a partner that was away catches up from the log. */
    logRetain: z.number().int().min(0),
  }),
  relay: z.strictObject({
    /** Send all outgoing mail through `host:port` instead of the destinations' MX. */
    smarthost: z.string(),
    /** SMTP connections at once to one destination. */
    perDestination: positive,
    timeoutMs: positive,
    /**
     * Hand mail for other domains to the frontends (Submit) instead of relaying it from
     * here: CommuniGate's `*` forwarding, for backends that have no way out.
     */
    viaFrontends: z.boolean(),
  }),
  submit: z.strictObject({
    /**
     * Where mail made on this node (rule actions, DSNs, vacation replies, `mailgrid send`)
     * is queued: `local` its own queue; `local-for-others` its own, and it takes other
     * members' too (listed as a queue taker); `remote` a live queue taker, else its own;
     * `auto` local-for-others on a cluster frontend, remote on a backend, local alone.
     */
    mode: z.enum(['auto', 'local', 'local-for-others', 'remote']),
    /** Which of this node's log records about a message travel with it to a queue taker. */
    log: z.enum(['none', 'problems', 'all']),
  }),
  grpc: z.strictObject({
    /** The node's one gRPC server: every service it offers (Delivery, Mailbox, Admin, Queue, ...). */
    host: z.string().min(1),
    port,
    /** Address other nodes and the CLI use to reach it; empty means host:port. */
    advertise: z.string(),
  }),
  delivery: z.strictObject({
    /**
     * Deliver local recipients right after DATA, before the 250 (the default). false puts
     * every message through the durable queue first, as Postfix does.
     */
    inline: z.boolean(),
    /** Deadline of one delivery-channel call. */
    timeoutMs: positive,
    chunkBytes: z.number().int().min(1024).max(4 * 1024 * 1024),
  }),
  backend: z.strictObject({
    /** Hosting group this backend serves. */
    group: z.string().min(1).regex(/^[A-Za-z0-9._-]+$/),
    /** Below this much free space on the store's disk a delivery gets 452 4.3.1 (the frontend queues it). */
    minFreeBytes: z.number().int().min(0),
    /** An in-sync replica that leaves a write waiting this long leaves the in-sync set (writes go on without it). */
    replicaMaxLagMs: z.number().int().min(100),
    /** Log entries kept beyond what every replica has, so one that was away catches up from the log, not a full copy. */
    logRetain: z.number().int().min(0),
  }),
  /** How long stop() waits for sessions and calls under way on SIGTERM. */
  drainMs: z.number().int().min(0),
  /**
   * The account that gets `postmaster` and `postmaster@<hosted domain>` mail when the domain
   * has no account or alias of that name. Empty: the domain's first account.
   */
  postmaster: z.string().refine((a) => a === '' || parseAddress(a) !== undefined, 'an address or empty'),
}).superRefine((c, ctx) => {
  if (!c.tls.keyFile !== !c.tls.certFile)
    ctx.addIssue({ code: 'custom', path: ['tls', c.tls.keyFile ? 'certFile' : 'keyFile'], message: 'give both tls.keyFile and tls.certFile, or neither' });
  const bound = new Map<string, string>();
  const withoutBalancers: string[] = [];
  for (const p of ACCESS_PROTOCOLS) {
    const s = accessSettings(c as Config, p.name);
    if (s.proxyProtocol && !s.proxyFrom.trim()) withoutBalancers.push(p.name);
    // Two listeners on one port would fail at start, the second with EADDRINUSE: said here, with their keys.
    for (const l of s.listeners) {
      if (!l.port) continue;
      const at = `${s.host}:${l.port}`;
      const key = `${p.name}.${p.listeners.find((x) => x.name === l.name)!.portKey}`;
      const other = bound.get(at);
      if (other) ctx.addIssue({ code: 'custom', path: key.split('.'), message: `${at} is also ${other}'s` });
      else bound.set(at, key);
    }
  }
  if (withoutBalancers.length)
    ctx.addIssue({
      code: 'custom',
      path: ['listen', 'proxyFrom'],
      message: `the PROXY protocol is on (listen.proxyProtocol) but no balancer is named for ${withoutBalancers.join(', ')}: set listen.proxyFrom (MAILGRID_LISTEN_PROXY_FROM) to their addresses or CIDR blocks`,
    });
});

function networks(spec: string, ctx: z.RefinementCtx): void {
  try {
    parseNetworks(spec);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
}

export type Config = z.infer<typeof configSchema>;

export function defaults(): Config {
  return {
    nodeId: hostname().replace(/[^A-Za-z0-9._-]/g, '-') || 'mailgrid',
    site: 'main',
    dataDir: './data',
    etcd: '',
    cluster: { prefix: '/mailgrid/v1', leaseTtlSec: 5 },
    http: { host: '127.0.0.1', port: 8525, adminToken: '' },
    listen: { host: '127.0.0.1', proxyProtocol: false, proxyFrom: '', maxClients: 1000, reusePort: false },
    log: { level: 'info', smtpProtocol: false },
    smtp: {
      port: 2525,
      hostname: hostname() || 'localhost',
      maxMessageBytes: 25 * 1024 * 1024,
      maxRecipients: 100,
      idleTimeoutMs: 300_000,
      greetingDelayMs: 0,
      reverseDns: false,
      reverseDnsTimeoutMs: 1500,
      trustedNetworks: '',
    },
    submission: { port: 2587, tlsPort: 2465, host: '', proxyFrom: '', maxClients: 0 },
    pop3: { port: 2110, tlsPort: 2995, idleTimeoutMs: 600_000, host: '', proxyFrom: '', maxClients: 0 },
    imap: { port: 2143, tlsPort: 2993, idleTimeoutMs: 1_800_000, host: '', proxyFrom: '', maxClients: 0 },
    tls: { keyFile: '', certFile: '' },
    auth: { failDelayMs: 2_000, maxFailures: 5, lockoutMs: 300_000, cacheMs: 600_000 },
    queue: {
      maxMessages: 100_000,
      maxBytes: 10 * 1024 ** 3,
      minFreeBytes: 512 * 1024 ** 2,
      minRetryMs: 60_000,
      maxRetryMs: 3_600_000,
      lifetimeMs: 5 * 24 * 3_600_000,
      delayWarningMs: 4 * 3_600_000,
      concurrency: 32,
      partnerCopy: true,
      takeoverAfterMs: 30_000,
      partnerMaxLagMs: 2_000,
      logRetain: 20_000,
    },
    relay: { smarthost: '', perDestination: 10, timeoutMs: 60_000, viaFrontends: false },
    submit: { mode: 'auto', log: 'problems' },
    grpc: { host: '127.0.0.1', port: 7525, advertise: '' },
    delivery: { inline: true, timeoutMs: 60_000, chunkBytes: 64 * 1024 },
    backend: { group: 'default', minFreeBytes: 512 * 1024 ** 2, replicaMaxLagMs: 2_000, logRetain: 200_000 },
    drainMs: 30_000,
    postmaster: '',
  };
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
}

export interface Leaf {
  path: string[];
  /** `smtp.port` */
  key: string;
  /** `MAILGRID_SMTP_PORT` */
  env: string;
  /** `smtp-port` */
  flag: string;
  kind: 'string' | 'number' | 'boolean';
}

const snake = (s: string) => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
const kebab = (s: string) => s.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
const names = (path: string[]) => ({ key: path.join('.'), env: 'MAILGRID_' + path.map(snake).join('_'), flag: path.map(kebab).join('-') });

/** Every settable key, derived from the defaults so a new setting needs no wiring. */
export function leaves(): Leaf[] {
  const out: Leaf[] = [];
  const walk = (obj: Record<string, unknown>, path: string[]) => {
    for (const [k, v] of Object.entries(obj)) {
      const p = [...path, k];
      if (v !== null && typeof v === 'object') walk(v as Record<string, unknown>, p);
      else out.push({ path: p, ...names(p), kind: typeof v as Leaf['kind'] });
    }
  };
  walk(defaults() as unknown as Record<string, unknown>, []);
  return out;
}

/**
 * Keys that were renamed, old → new. An old key still works (in a file, as MAILGRID_* or a
 * flag, and in etcd's node settings) with a deprecation warning; where both are given, the
 * new one wins. smtp.host and its neighbours were every listener's before `listen` existed.
 */
export const RENAMED_KEYS: Readonly<Record<string, string>> = {
  'smtp.host': 'listen.host',
  'smtp.proxyProtocol': 'listen.proxyProtocol',
  'smtp.proxyFrom': 'listen.proxyFrom',
  'smtp.maxClients': 'listen.maxClients',
  'pop3s.port': 'pop3.tlsPort',
};

/** A key's name now (an old one's new name). */
export function canonicalKey(key: string): string {
  return RENAMED_KEYS[key] ?? key;
}

/** The old names of a renamed key (its env and flag forms too), with the leaf they set. */
export function renamedLeaves(): (Leaf & { now: Leaf })[] {
  const byKey = new Map(leaves().map((l) => [l.key, l]));
  return Object.entries(RENAMED_KEYS).map(([old, now]) => {
    const leaf = byKey.get(now)!;
    return { ...leaf, path: old.split('.'), ...names(old.split('.')), now: leaf };
  });
}

const deprecation = (old: string, now: string, where: string) => `${where}: ${old} is deprecated, set ${now} instead (taken as ${now} this time)`;

/** Deprecation warnings of the config they were found in, for the node to log once it has a logger. */
const warned = new WeakMap<Config, string[]>();

/** What the pipeline warned about when it made this config (old keys). */
export function configWarnings(config: Config): string[] {
  return warned.get(config) ?? [];
}

export interface ConfigSources {
  /** JSON file with any subset of the config. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Values by key path (`smtp.port`), as strings from the command line or typed. */
  overrides?: Record<string, string | number | boolean | undefined>;
}

export function loadConfig(sources: ConfigSources = {}): Config {
  const problems: string[] = [];
  const warnings: string[] = [];
  const config = defaults() as unknown as Record<string, unknown>;
  const file = sources.file ?? sources.env?.MAILGRID_CONFIG;
  if (file) {
    try {
      const given = JSON.parse(readFileSync(file, 'utf8'));
      merge(config, renameInFile(given, (old, now) => warnings.push(deprecation(old, now, `config file ${file}`))));
    } catch (err) {
      problems.push(`config file ${file}: ${(err as Error).message}`);
    }
  }
  const renamed = new Map(renamedLeaves().map((r) => [r.now.key, r]));
  for (const leaf of leaves()) {
    const old = renamed.get(leaf.key);
    const fromEnv = pick(sources.env?.[leaf.env], old && sources.env?.[old.env], () => warnings.push(deprecation(old!.env, leaf.env, 'environment')));
    if (fromEnv.value !== undefined) set(config, leaf, fromEnv.value, fromEnv.old ? old!.env : leaf.env, problems);
    const fromFlag = pick(sources.overrides?.[leaf.key], old && sources.overrides?.[old.key], () => warnings.push(deprecation(`--${old!.flag}`, `--${leaf.flag}`, 'command line')));
    if (fromFlag.value !== undefined) set(config, leaf, fromFlag.value, `--${fromFlag.old ? old!.flag : leaf.flag}`, problems);
  }
  const parsed = configSchema.safeParse(config);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(`${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  if (problems.length) throw new ConfigError(problems);
  warned.set(parsed.data!, warnings);
  return parsed.data!;
}

/** A setting given under its new name, else under its old one (`warn` says so). Empty is not given. */
function pick<T>(now: T | '' | undefined, old: T | '' | undefined, warn: () => void): { value?: T; old?: boolean } {
  if (now !== undefined && now !== '') return { value: now };
  if (old === undefined || old === '') return {};
  warn();
  return { value: old, old: true };
}

/** A config file with its old keys moved to their new names (a new name given too wins). */
function renameInFile(given: unknown, warn: (old: string, now: string) => void): unknown {
  if (given === null || typeof given !== 'object' || Array.isArray(given)) return given;
  const out = structuredClone(given) as Record<string, Record<string, unknown>>;
  for (const [old, now] of Object.entries(RENAMED_KEYS)) {
    const [os, ok] = old.split('.');
    const [ns, nk] = now.split('.');
    const section = out[os];
    if (section === null || typeof section !== 'object' || !(ok in section)) continue;
    warn(old, now);
    const value = section[ok];
    delete section[ok];
    if (!Object.keys(section).length && !(os in (defaults() as unknown as Record<string, unknown>))) delete out[os];
    out[ns] = typeof out[ns] === 'object' && out[ns] !== null ? out[ns] : {};
    if (!(nk in out[ns])) out[ns][nk] = value;
  }
  return out;
}

function set(config: Record<string, unknown>, leaf: Leaf, raw: string | number | boolean, source: string, problems: string[]) {
  let value: unknown = raw;
  if (typeof raw === 'string') {
    if (leaf.kind === 'number') {
      value = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(value)) return void problems.push(`${leaf.key}: ${source}=${raw} is not a number`);
    } else if (leaf.kind === 'boolean') {
      if (!/^(true|false|1|0|yes|no)$/i.test(raw)) return void problems.push(`${leaf.key}: ${source}=${raw} is not a boolean`);
      value = /^(true|1|yes)$/i.test(raw);
    }
  }
  let node = config;
  for (const k of leaf.path.slice(0, -1)) node = node[k] as Record<string, unknown>;
  node[leaf.path[leaf.path.length - 1]] = value;
}

function merge(target: Record<string, unknown>, source: unknown) {
  if (source === null || typeof source !== 'object' || Array.isArray(source)) throw new Error('must be a JSON object');
  for (const [k, v] of Object.entries(source)) {
    const t = target[k];
    if (t !== null && typeof t === 'object' && v !== null && typeof v === 'object' && !Array.isArray(v)) merge(t as Record<string, unknown>, v);
    else target[k] = v;
  }
}

/**
 * Settings an operator may change on a running node (in etcd, `mailgrid node set`); the
 * node applies them without a restart. Everything else needs one.
 */
export const LIVE_SETTINGS = [
  'log.level',
  'smtp.maxMessageBytes',
  'smtp.maxRecipients',
  'listen.maxClients',
  'submission.maxClients',
  'pop3.maxClients',
  'imap.maxClients',
  'smtp.idleTimeoutMs',
  'smtp.greetingDelayMs',
  'auth.failDelayMs',
  'auth.maxFailures',
  'auth.lockoutMs',
  'auth.cacheMs',
  'queue.maxMessages',
  'queue.maxBytes',
  'queue.minFreeBytes',
  'queue.partnerCopy',
  'queue.takeoverAfterMs',
  'queue.partnerMaxLagMs',
  'queue.logRetain',
  'backend.minFreeBytes',
  'backend.replicaMaxLagMs',
  'backend.logRetain',
  'postmaster',
  'submit.mode',
  'submit.log',
  'relay.viaFrontends',
] as const;

/**
 * `base` with `overrides` (by key path, values typed or as strings) applied and validated.
 * Throws a ConfigError naming every bad key.
 */
export function withOverrides(base: Config, overrides: Record<string, unknown>): Config {
  const problems: string[] = [];
  const warnings: string[] = [];
  const config = structuredClone(base) as unknown as Record<string, unknown>;
  const byKey = new Map(leaves().map((l) => [l.key, l]));
  // An old name first, so the new one, given too, wins.
  const entries = Object.entries(overrides).sort(([a], [b]) => Number(b in RENAMED_KEYS) - Number(a in RENAMED_KEYS));
  for (const [given, value] of entries) {
    const key = RENAMED_KEYS[given] ?? given;
    if (key !== given) warnings.push(deprecation(given, key, 'setting'));
    const leaf = byKey.get(key);
    if (!leaf) problems.push(`${given}: no such setting`);
    else set(config, leaf, value as string | number | boolean, given, problems);
  }
  const parsed = configSchema.safeParse(config);
  if (!parsed.success) for (const issue of parsed.error.issues) problems.push(`${issue.path.join('.')}: ${issue.message}`);
  if (problems.length) throw new ConfigError(problems);
  warned.set(parsed.data!, warnings);
  return parsed.data!;
}
