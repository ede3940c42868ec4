import * as grpc from '@grpc/grpc-js';
import { createBackupClient, type BackupResponse__Output } from '@mailgrid/protocol';
import { unary } from '../clients/node-admin.js';
import { done, json, print, program, withCluster, withTarget } from '../context.js';

const group = program.command('group').description('hosting groups');
group
  .command('list')
  .description("hosting groups: each one's primary, epoch, in-sync set, replicas' lag (log entries) and last failover")
  .action(() =>
    withCluster(async (admin) => {
      const groups = await admin.groups();
      print(groups as unknown as Record<string, unknown>[], ['group', 'primary', 'address', 'epoch', 'site', 'inSync', 'lag', 'lastFailover', 'members']);
    }),
  );
group
  .command('backup <group> <folder>')
  .description(
    "a consistent copy of a group's store, made while it serves, into <folder> on the chosen member's host (an absolute path, new or empty): from an in-sync replica unless --from names a member; restore by putting its store/ in a stopped member's data folder (docs/operations.md)",
  )
  .option('--from <node>', 'the member to copy (default: an in-sync replica, else the primary)')
  .option('--compact', 'leave out free pages (slower, smaller)')
  .action((name: string, folder: string, opts: { from?: string; compact?: boolean }) =>
    withTarget(async (target) => {
      const source = await target.backupSource(name, opts.from);
      const client = createBackupClient(source.address);
      try {
        // A large store takes a while to copy: the call may last hours.
        const res = await unary<unknown, BackupResponse__Output>(source.address, client.Copy.bind(client) as never, { path: folder, compact: !!opts.compact }, new grpc.Metadata(), 24 * 3_600_000);
        if (json()) process.stdout.write(JSON.stringify(res, null, 2) + '\n');
        else done(`backup of hosting group ${res.group} from ${res.node} in ${res.path} (log position ${res.seq} in epoch ${res.epoch}, ${res.bytes} bytes)`);
      } finally {
        client.close();
      }
    }),
  );
