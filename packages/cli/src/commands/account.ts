import { checkedAddress, checkedDomain } from '@mailgrid/directory';
import { createReadStream } from 'node:fs';
import { access } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { hashPassword } from '@mailgrid/core';
import { MailboxReader } from '../clients/node-admin.js';
import { done, json, print, program, withBackendOf, withCluster, withTarget } from '../context.js';
import { CliError } from '../errors.js';
import { importAccounts } from '../import.js';
import { moveAccount } from '../move.js';

const account = program.command('account').description('accounts');
account
  .command('add <address>')
  .description('create an account in a hosted domain')
  .option('--group <group>', "hosting group (default: the node's group; in a cluster the group with the fewest accounts on this node's --site)")
  .action((address: string, opts) =>
    withTarget(async (t, c) => {
      const key = checkedAddress(address).key;
      const group = opts.group ?? (await t.defaultGroup(c.site));
      await t.directory.addAccount(key, group);
      done(`account ${key} added${opts.group || !t.cluster ? '' : ` to group ${group}`}`);
    }),
  );
account
  .command('import <file>')
  .description('load accounts from JSON lines ({"address","group","passwordHash"}) or CSV (address,group[,hash]); bad lines are reported, good ones load; safe to run again')
  .action((file: string) =>
    withCluster(async (admin) => {
      const started = Date.now();
      await access(file).catch((err: Error) => {
        throw new CliError(`cannot read ${file}: ${err.message}`);
      });
      const report = await importAccounts(admin, () => createInterface({ input: createReadStream(file), crlfDelay: Infinity }));
      const seconds = (Date.now() - started) / 1000;
      const rate = Math.round(report.loaded / Math.max(seconds, 0.001));
      if (json()) process.stdout.write(JSON.stringify({ ...report, seconds, perSecond: rate }, null, 2) + '\n');
      else {
        for (const b of report.bad) process.stderr.write(`${file}:${b.line}: ${b.reason}\n`);
        process.stdout.write(`${report.loaded} accounts loaded, ${report.unchanged} already there, ${report.bad.length} bad lines, in ${seconds.toFixed(1)} s (${rate}/s)\n`);
      }
      if (report.bad.length) throw new CliError(`${report.bad.length} bad lines in ${file} (the good ones are loaded)`);
    }),
  );
account
  .command('move <address>')
  .description("move an account, with its mail, folders, rules and settings, to another hosting group; its mail waits in the queues meanwhile")
  .option('--to <group>', 'the hosting group to move it to')
  .option('--resume', 'finish a move that failed or was interrupted')
  .option('--abort', 'undo a move that has not switched yet (the account stays where it was)')
  .action((address: string, opts: { to?: string; resume?: boolean; abort?: boolean }) =>
    withCluster(async (admin) => {
      if (opts.resume && opts.abort) throw new CliError('give --resume or --abort, not both');
      const r = await moveAccount(admin, address, opts);
      if (json()) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      else if (r.done === 'aborted') done(`move of ${r.account} to ${r.to} aborted: it stays in ${r.from}`);
      else done(`${r.account} ${r.done === 'resumed' ? 'move finished' : 'moved'}: ${r.from} → ${r.to}, ${r.messages} messages (${(r.bytes / 1e6).toFixed(1)} MB) in ${(r.ms / 1000).toFixed(1)} s`);
    }),
  );
account
  .command('passwd <address>')
  .description("set an account's password: read from standard input when it is not a terminal (one line), else asked for twice; stored as a slow hash by the account's group")
  .action((address: string) =>
    withBackendOf(address, (p) => new MailboxReader(p), async (mb, key) => {
      const hash = await hashPassword(await readPassword());
      await mb.setPassword(key, hash);
      done(`password of ${key} set`);
    }),
  );
account
  .command('set <address> <setting> <value>')
  .description("set an account's own setting, kept with its mail in its group: quota <bytes> (its storage limit, with k, M, G; 0 for none)")
  .action((address: string, setting: string, value: string) =>
    withBackendOf(address, (p) => new MailboxReader(p), async (mb, key) => {
      if (setting !== 'quota') throw new CliError(`no account setting ${setting}; there is: quota`);
      const q = await mb.setQuota(key, bytes(value));
      done(q.limit ? `quota of ${key} set to ${q.limit} bytes (${q.used} used)` : `quota of ${key} removed (${q.used} bytes used)`);
    }),
  );
account
  .command('show <address>')
  .description("an account's group and quota (what it uses of it)")
  .action((address: string) =>
    withBackendOf(address, (p) => new MailboxReader(p), async (mb, key) => {
      const q = await mb.quota(key);
      print([{ address: key, quota: q.limit || 'none', used: q.used }], ['address', 'quota', 'used'], { address: key, quota: Number(q.limit), used: Number(q.used) });
    }),
  );
account
  .command('remove <address>')
  .description('remove an account (its stored mail stays on the backend)')
  .action((address: string) =>
    withTarget(async (t) => {
      const key = checkedAddress(address).key;
      await t.directory.removeAccount(key);
      done(`account ${key} removed`);
    }),
  );
account
  .command('list [domain]')
  .description('list accounts, of one domain or all')
  .action((d: string | undefined) =>
    withTarget(async (t) => {
      const accounts = await t.directory.listAccounts(d === undefined ? undefined : checkedDomain(d));
      print(accounts as unknown as Record<string, unknown>[], accounts.some((a) => a.move) ? ['address', 'group', 'move'] : ['address', 'group']);
    }),
  );

/** `10M`, `2G`, `500000` as bytes. */
function bytes(text: string): number {
  const m = /^(\d+)\s*([kKmMgGtT]?)[bB]?$/.exec(text.trim());
  if (!m) throw new CliError(`not a size: ${text} (bytes, or with k, M, G)`);
  return Number(m[1]) * 1024 ** ' kmgt'.indexOf(m[2].toLowerCase() || ' ');
}

/** The new password: a terminal is asked twice without echo; anything else gives its first line. */
async function readPassword(): Promise<string> {
  let password: string;
  if (process.stdin.isTTY) {
    const first = await ask('New password: ');
    if (first !== (await ask('Again: '))) throw new CliError('the passwords do not match');
    password = first;
  } else {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    password = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0];
  }
  if (!password) throw new CliError('the password is empty');
  return password;
}

function ask(prompt: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  const muted = rl as unknown as { _writeToOutput: (s: string) => void };
  process.stderr.write(prompt);
  muted._writeToOutput = () => undefined;
  return new Promise((resolve) =>
    rl.question('', (answer) => {
      rl.close();
      process.stderr.write('\n');
      resolve(answer);
    }),
  );
}
