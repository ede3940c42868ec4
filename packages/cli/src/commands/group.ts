import { print, program, withCluster } from '../context.js';

program
  .command('group')
  .description('hosting groups')
  .command('list')
  .description("hosting groups: each one's primary, epoch, in-sync set, replicas' lag (log entries) and last failover")
  .action(() =>
    withCluster(async (admin) => {
      const groups = await admin.groups();
      print(groups as unknown as Record<string, unknown>[], ['group', 'primary', 'address', 'epoch', 'site', 'inSync', 'lag', 'lastFailover', 'members']);
    }),
  );
