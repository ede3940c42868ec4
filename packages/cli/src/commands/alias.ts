import { checkedAddress, checkedDomain } from '@mailgrid/directory';
import { done, print, program, withTarget } from '../context.js';

const alias = program.command('alias').description('other addresses of accounts');
alias
  .command('add <alias> <account>')
  .description('deliver mail for <alias> to <account>')
  .action((a: string, target: string) =>
    withTarget(async (t) => {
      const [key, to] = [checkedAddress(a).key, checkedAddress(target).key];
      await t.directory.addAlias(key, to);
      done(`alias ${key} → ${to} added`);
    }),
  );
alias
  .command('remove <alias>')
  .description('remove an alias')
  .action((a: string) =>
    withTarget(async (t) => {
      const key = checkedAddress(a).key;
      await t.directory.removeAlias(key);
      done(`alias ${key} removed`);
    }),
  );
alias
  .command('list [domain]')
  .description('list aliases, of one domain or all')
  .action((d: string | undefined) =>
    withTarget(async (t) => print((await t.directory.listAliases(d === undefined ? undefined : checkedDomain(d))) as unknown as Record<string, unknown>[], ['alias', 'target'])),
  );
