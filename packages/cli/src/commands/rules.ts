import { parseSieve, SieveError } from '@mailgrid/rules';
import { readFileSync } from 'node:fs';
import { done, program, withBackendOf } from '../context.js';
import { CliError } from '../errors.js';
import { RulesEditor } from '../clients/node-admin.js';

/** A script file (`-`: standard input), checked: one that does not parse names its line and column. */
function script(file: string): string {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    parseSieve(text);
  } catch (err) {
    if (err instanceof SieveError) throw new CliError(`${file}:${err.line}:${err.column}: ${err.reason}`);
    throw err;
  }
  return text;
}

const withRules = <T>(address: string, work: (r: RulesEditor, account: string) => Promise<T>) => withBackendOf(address, (a) => new RulesEditor(a), work);

const rules = program.command('rules').description("an account's rules: a Sieve script (keep, fileinto, discard, redirect, reject, vacation)");
rules
  .command('set <address> <file>')
  .description('check a script and make it the account\'s rules (the old ones stay if it is refused)')
  .action((address: string, file: string) => {
    const text = script(file);
    return withRules(address, async (r, account) => {
      await r.set(account, text);
      done(`rules of ${account} set`);
    });
  });
rules
  .command('get <address>')
  .description("print the account's rules")
  .action((address: string) =>
    withRules(address, async (r, account) => {
      const text = await r.get(account);
      if (!text) throw new CliError(`${account} has no rules`);
      process.stdout.write(text.endsWith('\n') ? text : text + '\n');
    }),
  );
rules
  .command('remove <address>')
  .description("remove the account's rules (mail goes to INBOX)")
  .action((address: string) =>
    withRules(address, async (r, account) => {
      await r.set(account, '');
      done(`rules of ${account} removed`);
    }),
  );
rules
  .command('check <file>')
  .description('check a script without saving it')
  .action((file: string) => {
    script(file);
    done(`${file}: ok`);
  });
