import { CLUSTER_SCOPE } from '@mailgrid/cluster';
import { done, print, program, withCluster } from '../context.js';
import { CliError } from '../errors.js';

const node = program.command('node').description(`per-node settings in etcd (node ${CLUSTER_SCOPE} holds cluster-wide defaults)`);
node
  .command('get <node> [key]')
  .description('settings set for a node')
  .action((id: string, key: string | undefined) =>
    withCluster(async (admin) => {
      const settings = await admin.settings(id);
      const rows = Object.entries(settings)
        .filter(([k]) => key === undefined || k === key)
        .map(([k, v]) => ({ key: k, value: JSON.stringify(v) }));
      if (key !== undefined && !rows.length) throw new CliError(`${key} is not set for ${id}`);
      print(rows, ['key', 'value'], key === undefined ? settings : settings[key]);
    }),
  );
node
  .command('set <node> <key> <value>')
  .description('set a live setting; the node applies it without a restart')
  .action((id: string, key: string, value: string) =>
    withCluster(async (admin, c) => {
      const v = await admin.setSetting(id, key, value, c);
      done(`${id}: ${key} = ${JSON.stringify(v)}`);
    }),
  );
node
  .command('unset <node> <key>')
  .description('remove a setting (the default applies again)')
  .action((id: string, key: string) =>
    withCluster(async (admin) => {
      if (!(await admin.unsetSetting(id, key))) throw new CliError(`${key} is not set for ${id}`);
      done(`${id}: ${key} unset`);
    }),
  );
