import type { Config } from '@mailgrid/core';
import type { DirectoryAdmin, Primary } from '@mailgrid/directory';
import { ClusterAdmin } from './clients/cluster-admin.js';
import { NodeDirectoryAdmin } from './clients/node-admin.js';
import { QueueTargets } from './clients/queue-client.js';
import { CliError } from './errors.js';
import { readState } from './local-cluster/launcher.js';

/**
 * What a command works on, found from the same settings a node uses: a cluster (--etcd,
 * MAILGRID_ETCD, or the launcher's state file in this folder), else the single node at
 * its gRPC address. Directory, mailbox and queue commands are written once against this.
 */
export interface Target {
  directory: DirectoryAdmin;
  /** The hosting group `account add` uses without --group. */
  /** Where a new account goes without --group: the node's own group, or in a cluster the emptiest on this site. */
  defaultGroup(site: string): Promise<string>;
  /** The primary that serves an account (epoch 0 on a single node: not fenced). */
  backendOf(account: string): Promise<Primary>;
  /** A node whose Submit service takes a message in through its submit mode (a frontend first, in a cluster). */
  submitter(node?: string): Promise<{ node: string; address: string }>;
  queues(node?: string): Promise<QueueTargets>;
  /**
   * The member of a hosting group a backup is taken from: `node`, else an in-sync replica
   * (the copy then costs the primary nothing), else the primary.
   */
  backupSource(group: string, node?: string): Promise<{ node: string; address: string }>;
  /** The cluster, for cluster-only commands; undefined for a single node. */
  cluster?: ClusterAdmin;
  /** Runs a command, saying plainly when what it needs cannot be reached. */
  run<T>(work: () => Promise<T>): Promise<T>;
  close(): void;
}

export function openTarget(c: Config): Target {
  const state = c.etcd ? undefined : readState();
  if (c.etcd || state) return clusterTarget(new ClusterAdmin(c.etcd || state!.etcd, c.etcd ? c.cluster.prefix : state!.prefix));
  return nodeTarget(c);
}

function nodeTarget(c: Config): Target {
  const address = `${c.grpc.host === '0.0.0.0' ? '127.0.0.1' : c.grpc.host}:${c.grpc.port}`;
  const directory = new NodeDirectoryAdmin(address);
  return {
    directory,
    defaultGroup: async () => '',
    backendOf: async () => ({ address, epoch: 0 }),
    submitter: async (node) => select([{ node: c.nodeId, address }], node)[0],
    queues: async (node) => new QueueTargets(select([{ node: c.nodeId, address }], node)),
    backupSource: async (group, node) => {
      if (group !== c.backend.group) throw new CliError(`this node serves hosting group ${c.backend.group}, not ${group}`);
      return select([{ node: c.nodeId, address }], node)[0];
    },
    run: (work) => work(),
    close: () => directory.close(),
  };
}

function clusterTarget(admin: ClusterAdmin): Target {
  return {
    directory: admin.directory,
    cluster: admin,
    defaultGroup: (site) => admin.placement(site),
    backendOf: (account) => admin.backendFor(account),
    submitter: async (node) => {
      const members = (await admin.members()).filter((m) => m.state === 'up' && m.grpc && m.services?.includes('Submit'));
      members.sort((a, b) => Number(b.role === 'frontend') - Number(a.role === 'frontend'));
      return select(members.map((m) => ({ node: m.id, address: m.grpc! })), node, 'that takes submissions')[0];
    },
    queues: async (node) => new QueueTargets(select(await admin.queues(), node)),
    backupSource: async (group, node) => {
      const [views, members] = await Promise.all([admin.groupViews(), admin.members()]);
      const view = views.find((g) => g.name === group);
      if (!view) throw new CliError(`no hosting group ${group} (see: mailgrid group list)`);
      const backends = members.filter((m) => m.role === 'backend' && m.group === group && m.state === 'up' && m.grpc && m.services?.includes('Backup'));
      const inSync = (id: string) => view.inSync?.includes(id) ?? false;
      const rank = (id: string) => (id === view.leader?.id ? 1 : inSync(id) ? 0 : 2);
      const candidates = backends.filter((m) => (node === undefined ? rank(m.id) < 2 : m.id === node)).sort((a, b) => rank(a.id) - rank(b.id));
      return select(candidates.map((m) => ({ node: m.id, address: m.grpc! })), node, node === undefined ? `of hosting group ${group} in its in-sync set` : `in hosting group ${group}`)[0];
    },
    run: (work) => admin.run(work),
    close: () => admin.close(),
  };
}

function select(targets: { node: string; address: string }[], node: string | undefined, what = 'with a queue') {
  const chosen = node === undefined ? targets : targets.filter((t) => t.node === node);
  if (!chosen.length) throw new CliError(node === undefined ? `no live node ${what}` : `no live node ${node} ${what}`);
  return chosen;
}
