import { ClusterAdmin } from '../clients/cluster-admin.js';
import { done, json, print, program } from '../context.js';
import { alive, clusterDown, clusterStart, clusterStop, clusterUp, requireState } from '../local-cluster/launcher.js';

const ports = (p: Record<string, number>) => Object.entries(p).map(([k, v]) => `${k}=${v}`).join(' ');

const cluster = program.command('cluster').description('a local cluster: etcd, HAProxy, frontends and backends as processes');
cluster
  .command('up')
  .description('start etcd, backends, frontends and HAProxy on free loopback ports')
  .option('--frontends <n>', 'number of frontends', '2')
  .option('--groups <n>', 'number of hosting groups', '2')
  .option('--replicas <n>', 'replicas per hosting group (each group has 1 + n backends)', '0')
  .option('--shared-ports', 'no HAProxy: the frontends share their access ports (listen.reusePort), the kernel spreading connections over them')
  .action(async (opts) => {
    const state = await clusterUp({ frontends: Number(opts.frontends), groups: Number(opts.groups), replicas: Number(opts.replicas), sharedPorts: Boolean(opts.sharedPorts) });
    if (json()) process.stdout.write(JSON.stringify(state, null, 2) + '\n');
    else {
      print(state.processes.map((p) => ({ id: p.id, role: p.role, group: p.group ?? '', pid: p.pid, ports: ports(p.ports) })), ['id', 'role', 'group', 'pid', 'ports']);
      const fe = state.processes.find((p) => p.role === 'frontend');
      process.stdout.write(`\nSMTP (${state.shared ? 'shared by the frontends' : 'through HAProxy'}): ${state.smtp}\netcd: ${state.etcd}\nlogs and data: ${state.dir}\n`);
      if (fe) process.stdout.write(`dashboard: http://127.0.0.1:${fe.ports.http}/dashboard (mailgrid dashboard opens it with the admin token)\n`);
    }
  });
cluster
  .command('status')
  .description('every member with its role, group, queue partner and whether its queue is protected, pid, ports and state; each hosting group with its primary, epoch, in-sync set and lag')
  .action(async () => {
    const state = requireState();
    let members: Awaited<ReturnType<ClusterAdmin['members']>> = [];
    let groups: Awaited<ReturnType<ClusterAdmin['groups']>> = [];
    if (alive(state.processes.find((p) => p.role === 'etcd')?.pid ?? 0)) {
      const admin = new ClusterAdmin(state.etcd, state.prefix);
      members = await admin.members().catch(() => []);
      groups = await admin.groups().catch(() => []);
      admin.close();
    }
    const rows = state.processes.map((p) => {
      const m = members.find((x) => x.id === p.id);
      const running = alive(p.pid);
      const status = !running ? 'stopped' : p.role === 'frontend' || p.role === 'backend' ? (m?.state ?? 'unregistered') : 'running';
      // A queue is protected while a partner's copy has every message acknowledged into it.
      const queue = m && running ? { partner: m.partner ?? '', protected: m.copies?.length ? 'yes' : 'no' } : { partner: '', protected: '' };
      return { id: p.id, role: p.role, group: p.group ?? '', place: m?.groupRole ?? '', ...queue, pid: p.pid, ports: ports(p.ports), status, dataDir: p.dataDir ?? '', log: p.log };
    });
    if (json()) process.stdout.write(JSON.stringify({ smtp: state.smtp, etcd: state.etcd, dir: state.dir, members: rows, groups }, null, 2) + '\n');
    else {
      print(rows, ['id', 'role', 'group', 'place', 'partner', 'protected', 'pid', 'ports', 'status']);
      if (groups.length) {
        process.stdout.write('\n');
        print(groups as unknown as Record<string, unknown>[], ['group', 'primary', 'epoch', 'inSync', 'lag', 'lastFailover']);
      }
      process.stdout.write(`\nSMTP (through HAProxy): ${state.smtp}\netcd: ${state.etcd}\n`);
    }
  });
cluster
  .command('stop <member>')
  .description('stop one member (SIGTERM, it drains), as an operator stops a container')
  .action(async (id: string) => done(`${(await clusterStop(id)).id} stopped`));
cluster
  .command('start <member>')
  .description('start a stopped member again with its data and ports')
  .action(async (id: string) => {
    const p = await clusterStart(id);
    done(`${p.id} started (pid ${p.pid})`);
  });
cluster
  .command('down')
  .description("stop every process and remove the cluster's data")
  .action(async () => {
    await clusterDown();
    done('cluster stopped and removed');
  });
