import { print, program, withCluster } from '../context.js';

program
  .command('member')
  .description('cluster members')
  .command('list')
  .description("live members registered in etcd: role, each backend's place in its group (primary or replica), state, submit mode, queue depth, queue partner and the copies that protect the queue, their one gRPC address and the services it offers")
  .action(() =>
    withCluster(async (admin) => {
      const members = await admin.members();
      print(
        members.map((m) => ({
          id: m.id,
          role: m.role,
          site: m.site,
          group: m.group ?? '',
          place: m.groupRole ?? '',
          state: m.state,
          mode: m.submitMode ?? '',
          queue: m.queueDepth ?? '',
          partner: m.partner ?? '',
          copy: m.copies?.length ? m.copies.join(',') : 'none',
          smtp: m.access?.smtp ?? '',
          grpc: m.grpc ?? '',
          services: (m.services ?? []).join(','),
          epoch: m.epoch ?? '',
          pid: m.pid,
        })),
        ['id', 'role', 'site', 'group', 'place', 'state', 'mode', 'queue', 'partner', 'copy', 'smtp', 'grpc', 'services', 'epoch', 'pid'],
        members,
      );
    }),
  );
