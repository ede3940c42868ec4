import { checkedDomain } from '@mailgrid/directory';
import { done, json, print, program, withCluster, withTarget } from '../context.js';
import { CliError } from '../errors.js';
import { moveDomain } from '../move.js';

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
  .command('move <domain>')
  .description('move every account of a domain to another hosting group (an account with a move there under way is finished)')
  .requiredOption('--to <group>', 'the hosting group to move it to')
  .action((d: string, opts: { to: string }) =>
    withCluster(async (admin) => {
      const reports: unknown[] = [];
      const { moved, failed } = await moveDomain(admin, d, opts.to, (r) => {
        reports.push(r);
        if (json()) return;
        if ('error' in r) process.stderr.write(`${r.account}: ${r.error}\n`);
        else process.stdout.write(`${r.account}: ${r.from} → ${r.to}, ${r.messages} messages in ${(r.ms / 1000).toFixed(1)} s\n`);
      });
      if (json()) process.stdout.write(JSON.stringify(reports, null, 2) + '\n');
      if (failed) throw new CliError(`${failed} of ${moved + failed} accounts of ${checkedDomain(d)} not moved (see above); run the command again to finish them`);
      if (!json()) done(`domain ${checkedDomain(d)}: ${moved} accounts moved to ${opts.to}`);
    }),
  );
domain
  .command('list')
  .description('list hosted domains')
  .action(() =>
    withTarget(async (t) => {
      const domains = await t.directory.listDomains();
      print(domains.map((d) => ({ domain: d })), ['domain'], domains);
    }),
  );
