import { Command, Option } from 'commander';
import { ConfigError, createLogger, leaves, loadConfig, runUntilSignal, type Config } from '@mailgrid/core';
import { checkedAddress, checkedDomain, DirectoryError } from '@mailgrid/directory';
import { CliError, MailboxReader, NodeDirectoryAdmin } from './admin-client.js';
import { singleNode } from './single-node.js';

const program = new Command('mailgrid')
  .description('mailgrid: a mail cluster of SMTP frontends and LMDB backends')
  .showHelpAfterError()
  .option('--config <file>', 'JSON config file (also MAILGRID_CONFIG)')
  .option('--json', 'machine-readable output for listings');

// Every config key is a flag (and a MAILGRID_* variable): --smtp-port for smtp.port.
for (const leaf of leaves()) {
  const opt = new Option(leaf.kind === 'boolean' ? `--${leaf.flag} [bool]` : `--${leaf.flag} <value>`, `${leaf.key} (${leaf.env})`).hideHelp(
    !['data-dir', 'smtp-port', 'smtp-host', 'grpc-port', 'grpc-host', 'log-level'].includes(leaf.flag),
  );
  program.addOption(opt);
}

function config(): Config {
  const opts = program.opts();
  const overrides: Record<string, string | boolean> = {};
  for (const leaf of leaves()) {
    const v = opts[camel(leaf.flag)];
    if (v !== undefined) overrides[leaf.key] = v === true ? 'true' : v;
  }
  return loadConfig({ file: opts.config, env: process.env, overrides });
}

const camel = (flag: string) => flag.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const json = () => Boolean(program.opts().json);
const nodeAddress = (c: Config) => `${c.grpc.host === '0.0.0.0' ? '127.0.0.1' : c.grpc.host}:${c.grpc.port}`;

function print(rows: Record<string, unknown>[], columns: string[], data: unknown = rows): void {
  if (json()) {
    process.stdout.write(JSON.stringify(data, null, 2) + '\n');
    return;
  }
  if (!rows.length) return;
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? '').length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd();
  process.stdout.write([line(columns.map((c) => c.toUpperCase())), ...rows.map((r) => line(columns.map((c) => String(r[c] ?? ''))))].join('\n') + '\n');
}

async function withAdmin<T>(work: (admin: NodeDirectoryAdmin) => Promise<T>): Promise<T> {
  const admin = new NodeDirectoryAdmin(nodeAddress(config()));
  try {
    return await work(admin);
  } finally {
    admin.close();
  }
}

async function withMailbox<T>(work: (mb: MailboxReader) => Promise<T>): Promise<T> {
  const mb = new MailboxReader(nodeAddress(config()));
  try {
    return await work(mb);
  } finally {
    mb.close();
  }
}

program
  .command('start')
  .description('run a single node: SMTP frontend and backend with the embedded directory')
  .option('--print-config', 'print the effective configuration and exit')
  .action(async (opts) => {
    const c = config();
    if (opts.printConfig) {
      process.stdout.write(JSON.stringify(c, null, 2) + '\n');
      return;
    }
    const log = createLogger({ level: c.log.level, name: c.nodeId });
    await runUntilSignal(singleNode(c, log), log, c.drainMs);
    log.flush();
  });

const domain = program.command('domain').description('hosted domains');
domain
  .command('add <domain>')
  .description('host a domain')
  .action((d: string) => withAdmin(async (a) => (await a.addDomain(checkedDomain(d)), done(`domain ${checkedDomain(d)} added`))));
domain
  .command('remove <domain>')
  .description('stop hosting a domain (it must have no accounts)')
  .action((d: string) => withAdmin(async (a) => (await a.removeDomain(checkedDomain(d)), done(`domain ${checkedDomain(d)} removed`))));
domain
  .command('list')
  .description('list hosted domains')
  .action(() =>
    withAdmin(async (a) => {
      const domains = await a.listDomains();
      print(domains.map((d) => ({ domain: d })), ['domain'], domains);
    }),
  );

const account = program.command('account').description('accounts');
account
  .command('add <address>')
  .description('create an account in a hosted domain')
  .option('--group <group>', 'hosting group (default: the node\'s group)')
  .action((address: string, opts) =>
    withAdmin(async (a) => {
      const key = checkedAddress(address).key;
      await a.addAccount(key, opts.group ?? '');
      done(`account ${key} added`);
    }),
  );
account
  .command('remove <address>')
  .description('remove an account (its stored mail stays on the backend)')
  .action((address: string) =>
    withAdmin(async (a) => {
      const key = checkedAddress(address).key;
      await a.removeAccount(key);
      done(`account ${key} removed`);
    }),
  );
account
  .command('list [domain]')
  .description('list accounts, of one domain or all')
  .action((d: string | undefined) =>
    withAdmin(async (a) => {
      const accounts = await a.listAccounts(d === undefined ? undefined : checkedDomain(d));
      print(accounts as unknown as Record<string, unknown>[], ['address', 'group']);
    }),
  );

const mailbox = program.command('mailbox').description('stored mail');
mailbox
  .command('list <address>')
  .description("list an account's messages")
  .action((address: string) =>
    withMailbox(async (mb) => {
      const messages = await mb.list(checkedAddress(address).key);
      print(
        messages.map((m) => ({ uid: m.uid, size: m.size, received: new Date(Number(m.receivedAtMs)).toISOString(), folder: m.folder })),
        ['uid', 'size', 'received', 'folder'],
      );
    }),
  );
mailbox
  .command('get <address> <uid>')
  .description('write one message, raw, to stdout')
  .action((address: string, uid: string) =>
    withMailbox(async (mb) => {
      if (!/^[1-9]\d*$/.test(uid)) throw new CliError(`invalid uid: ${uid}`);
      process.stdout.write(await mb.fetch(checkedAddress(address).key, Number(uid)));
    }),
  );

function done(text: string): void {
  if (json()) process.stdout.write(JSON.stringify({ ok: true, message: text }) + '\n');
  else process.stdout.write(text + '\n');
}

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof ConfigError || err instanceof CliError || err instanceof DirectoryError) {
    process.stderr.write(`mailgrid: ${err.message}\n`);
  } else {
    process.stderr.write(`mailgrid: unexpected error: ${(err as Error)?.stack ?? err}\n`);
  }
  process.exitCode = 1;
});
