import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { z } from 'zod';
import { parseAddress, parseNetworks } from './address.js';

/**
 * The one config pipeline: defaults → file → MAILGRID_* environment → flags, then
 * validated with every error and its key path. Every leaf of `defaults` is settable as
 * `MAILGRID_SMTP_PORT` (env) and `--smtp-port` (flag) for `smtp.port`.
 */
const port = z.number().int().min(0).max(65535);
const positive = z.number().int().positive();

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
  log: z.strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    /** smtp-server's own per-command log lines, at debug level. */
    smtpProtocol: z.boolean(),
  }),
  smtp: z.strictObject({
    host: z.string().min(1),
    port,
    /** Name in the greeting and in Received: headers. */
    hostname: z.string().min(1),
    maxMessageBytes: positive,
    maxRecipients: positive,
    idleTimeoutMs: positive,
    maxClients: positive,
    /**
     * Pause before the greeting during which a client that talks is refused as an early
     * talker. smtp-server hard-codes 100 ms, which caps one-message sessions; 0 sends the
     * greeting at once (early talkers are still caught if they beat it).
     */
    greetingDelayMs: z.number().int().min(0).max(30_000),
    reverseDns: z.boolean(),
    reverseDnsTimeoutMs: positive,
    /** Expect a PROXY protocol header (from HAProxy) on connections from `proxyFrom`. */
    proxyProtocol: z.boolean(),
    /**
     * The balancers: addresses or CIDR blocks, comma-separated. Only a connection from one
     * of them may start with a PROXY header (and must); anyone else's would claim any
     * address it likes, trusted networks included.
     */
    proxyFrom: z.string().superRefine(networks),
    /**
     * Clients allowed to relay to other domains without authentication (like Postfix's
     * mynetworks): comma-separated addresses or CIDR blocks. Empty: nobody.
     */
    trustedNetworks: z.string().superRefine(networks),
  }),
  /** Authenticated submission (RFC 6409): STARTTLS, then AUTH, on `port`; implicit TLS (RFC 8314) on `tlsPort`. 0 disables one. */
  submission: z.strictObject({ port, tlsPort: port }),
  /** POP3 (STLS before any login) and POP3 over implicit TLS; 0 disables one. */
  pop3: z.strictObject({ port, idleTimeoutMs: positive }),
  pop3s: z.strictObject({ port }),
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
  if (c.smtp.proxyProtocol && !c.smtp.proxyFrom.trim())
    ctx.addIssue({
      code: 'custom',
      path: ['smtp', 'proxyFrom'],
      message: 'the PROXY protocol is on (smtp.proxyProtocol) but no balancer is named: set smtp.proxyFrom (MAILGRID_SMTP_PROXY_FROM) to their addresses or CIDR blocks',
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
    log: { level: 'info', smtpProtocol: false },
    smtp: {
      host: '127.0.0.1',
      port: 2525,
      hostname: hostname() || 'localhost',
      maxMessageBytes: 25 * 1024 * 1024,
      maxRecipients: 100,
      idleTimeoutMs: 300_000,
      maxClients: 1000,
      greetingDelayMs: 0,
      reverseDns: false,
      reverseDnsTimeoutMs: 1500,
      proxyProtocol: false,
      proxyFrom: '',
      trustedNetworks: '',
    },
    submission: { port: 2587, tlsPort: 2465 },
    pop3: { port: 2110, idleTimeoutMs: 600_000 },
    pop3s: { port: 2995 },
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

/** Every settable key, derived from the defaults so a new setting needs no wiring. */
export function leaves(): Leaf[] {
  const out: Leaf[] = [];
  const walk = (obj: Record<string, unknown>, path: string[]) => {
    for (const [k, v] of Object.entries(obj)) {
      const p = [...path, k];
      if (v !== null && typeof v === 'object') walk(v as Record<string, unknown>, p);
      else
        out.push({
          path: p,
          key: p.join('.'),
          env: 'MAILGRID_' + p.map(snake).join('_'),
          flag: p.map(kebab).join('-'),
          kind: typeof v as Leaf['kind'],
        });
    }
  };
  walk(defaults() as unknown as Record<string, unknown>, []);
  return out;
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
  const config = defaults() as unknown as Record<string, unknown>;
  const file = sources.file ?? sources.env?.MAILGRID_CONFIG;
  if (file) {
    try {
      merge(config, JSON.parse(readFileSync(file, 'utf8')));
    } catch (err) {
      problems.push(`config file ${file}: ${(err as Error).message}`);
    }
  }
  for (const leaf of leaves()) {
    const fromEnv = sources.env?.[leaf.env];
    if (fromEnv !== undefined && fromEnv !== '') set(config, leaf, fromEnv, leaf.env, problems);
    const fromFlag = sources.overrides?.[leaf.key];
    if (fromFlag !== undefined) set(config, leaf, fromFlag, `--${leaf.flag}`, problems);
  }
  const parsed = configSchema.safeParse(config);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(`${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  if (problems.length) throw new ConfigError(problems);
  return parsed.data!;
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
  'smtp.maxClients',
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
  const config = structuredClone(base) as unknown as Record<string, unknown>;
  const byKey = new Map(leaves().map((l) => [l.key, l]));
  for (const [key, value] of Object.entries(overrides)) {
    const leaf = byKey.get(key);
    if (!leaf) problems.push(`${key}: no such setting`);
    else set(config, leaf, value as string | number | boolean, key, problems);
  }
  const parsed = configSchema.safeParse(config);
  if (!parsed.success) for (const issue of parsed.error.issues) problems.push(`${issue.path.join('.')}: ${issue.message}`);
  if (problems.length) throw new ConfigError(problems);
  return parsed.data!;
}
