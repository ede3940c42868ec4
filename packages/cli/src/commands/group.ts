import { print, program, withCluster } from '../context.js';

program
  .command('group')
  .description('hosting groups')
  .command('list')
  .description('hosting groups and the primary serving each, with its epoch')
  .action(() =>
    withCluster(async (admin) => {
      const groups = await admin.groups();
      print(groups as unknown as Record<string, unknown>[], ['group', 'primary', 'address', 'epoch', 'site']);
    }),
  );
