import { Command, Option } from 'commander';
import { configWarnings, leaves, loadConfig, renamedLeaves, type Config } from '@mailgrid/core';
import { checkedAddress } from '@mailgrid/directory';
import { CliError } from './errors.js';
import { openTarget, type Target } from './target.js';
import type { ClusterAdmin } from './clients/cluster-admin.js';
import type { Primary } from '@mailgrid/directory';

/** The `mailgrid` program, its global options, and what every command group shares. */
export const program = new Command('mailgrid')
  .description('mailgrid: a mail cluster of SMTP frontends and LMDB backends')
  .showHelpAfterError()
  .option('--config <file>', 'JSON config file (also MAILGRID_CONFIG)')
  .option('--json', 'machine-readable output for listings');

// Every config key is a flag (and a MAILGRID_* variable): --smtp-port for smtp.port.
for (const leaf of leaves()) {
  const opt = new Option(leaf.kind === 'boolean' ? `--${leaf.flag} [bool]` : `--${leaf.flag} <value>`, `${leaf.key} (${leaf.env})`).hideHelp(
    !['data-dir', 'smtp-port', 'listen-host', 'grpc-port', 'grpc-host', 'log-level'].includes(leaf.flag),
  );
  program.addOption(opt);
}
// Renamed keys keep their old flags (the pipeline warns about them).
for (const old of renamedLeaves()) program.addOption(new Option(old.kind === 'boolean' ? `--${old.flag} [bool]` : `--${old.flag} <value>`).hideHelp());

const camel = (flag: string) => flag.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** The effective config: file, MAILGRID_* environment and flags, through the one pipeline. */
export function config(): Config {
  const opts = program.opts();
  const overrides: Record<string, string | boolean> = {};
  for (const leaf of [...leaves(), ...renamedLeaves()]) {
    const v = opts[camel(leaf.flag)];
    if (v !== undefined) overrides[leaf.key] = v === true ? 'true' : v;
  }
  const c = loadConfig({ file: opts.config, env: process.env, overrides });
  // Said once per command; a node logs them too when it starts.
  if (!warnedOnce) for (const w of configWarnings(c)) process.stderr.write(`mailgrid: warning: ${w}\n`);
  warnedOnce = true;
  return c;
}
let warnedOnce = false;

export const json = () => Boolean(program.opts().json);

/** A table, or with --json the data as it is. */
export function print(rows: Record<string, unknown>[], columns: string[], data: unknown = rows): void {
  if (json()) {
    process.stdout.write(JSON.stringify(data, null, 2) + '\n');
    return;
  }
  if (!rows.length) return;
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? '').length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd();
  process.stdout.write([line(columns.map((c) => c.toUpperCase())), ...rows.map((r) => line(columns.map((c) => String(r[c] ?? ''))))].join('\n') + '\n');
}

export function done(text: string): void {
  if (json()) process.stdout.write(JSON.stringify({ ok: true, message: text }) + '\n');
  else process.stdout.write(text + '\n');
}

/** Runs a command against the target the settings point at (a single node or a cluster). */
export async function withTarget<T>(work: (target: Target, c: Config) => Promise<T>): Promise<T> {
  const c = config();
  const target = openTarget(c);
  try {
    return await target.run(() => work(target, c));
  } finally {
    target.close();
  }
}

/** Runs a cluster-only command. */
export function withCluster<T>(work: (admin: ClusterAdmin, c: Config) => Promise<T>): Promise<T> {
  return withTarget((target, c) => {
    if (!target.cluster) throw new CliError('not in a cluster: give --etcd <endpoints>, set MAILGRID_ETCD, or run where `mailgrid cluster up` ran');
    return work(target.cluster, c);
  });
}

/** Runs `work` with a client (opened by `open`) of the backend that serves an account. */
export function withBackendOf<C extends { close(): void }, T>(address: string, open: (backend: Primary) => C, work: (client: C, account: string) => Promise<T>): Promise<T> {
  const account = checkedAddress(address).key;
  return withTarget(async (t) => {
    const client = open(await t.backendOf(account));
    try {
      return await work(client, account);
    } finally {
      client.close();
    }
  });
}
