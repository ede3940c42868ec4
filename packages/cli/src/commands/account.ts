import { checkedAddress, checkedDomain } from '@mailgrid/directory';
import { done, print, program, withTarget } from '../context.js';

const account = program.command('account').description('accounts');
account
  .command('add <address>')
  .description('create an account in a hosted domain')
  .option('--group <group>', "hosting group (default: the node's group, or a cluster's only group)")
  .action((address: string, opts) =>
    withTarget(async (t) => {
      const key = checkedAddress(address).key;
      await t.directory.addAccount(key, opts.group ?? (await t.defaultGroup()));
      done(`account ${key} added`);
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
      print(accounts as unknown as Record<string, unknown>[], ['address', 'group']);
    }),
  );
