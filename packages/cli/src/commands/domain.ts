import { checkedDomain } from '@mailgrid/directory';
import { done, print, program, withTarget } from '../context.js';

const domain = program.command('domain').description('hosted domains');
domain
  .command('add <domain>')
  .description('host a domain')
  .action((d: string) => withTarget(async (t) => (await t.directory.addDomain(checkedDomain(d)), done(`domain ${checkedDomain(d)} added`))));
domain
  .command('remove <domain>')
  .description('stop hosting a domain (it must have no accounts)')
  .action((d: string) => withTarget(async (t) => (await t.directory.removeDomain(checkedDomain(d)), done(`domain ${checkedDomain(d)} removed`))));
domain
  .command('list')
  .description('list hosted domains')
  .action(() =>
    withTarget(async (t) => {
      const domains = await t.directory.listDomains();
      print(domains.map((d) => ({ domain: d })), ['domain'], domains);
    }),
  );
