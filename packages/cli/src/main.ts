import { Command, Option } from 'commander';
import { clusterBackend } from '@mailgrid/backend';
import { CLUSTER_SCOPE } from '@mailgrid/cluster';
import { ConfigError, leaves, loadConfig, runRole, StartError, type Config } from '@mailgrid/core';
import { checkedAddress, checkedDomain, DirectoryError, type DirectoryAdmin } from '@mailgrid/directory';
import { clusterFrontend } from '@mailgrid/frontend';
import { CliError, MailboxReader, NodeDirectoryAdmin } from './admin-client.js';
import { ClusterAdmin } from './cluster-admin.js';
import { QueueTargets, type QueueAction } from './queue-client.js';
import { alive, clusterDown, clusterStart, clusterStop, clusterUp, readState, requireState } from './launcher.js';
import { singleNode } from './single-node.js';

const program = new Command('mailgrid')
  .description('mailgrid: a mail cluster of SMTP frontends and LMDB backends')
  .showHelpAfterError()
  .option('--config <file>', 'JSON config file (also MAILGRID_CONFIG)')
  .option('--json', 'machine-readable output for listings');

// Every config key is a flag (and a MAILGRID_* variable): --smtp-port for smtp.port.
for (const leaf of leaves()) {
  const opt = new Option(leaf.kind === 'boolean' ? `--${leaf.flag} [bool]` : `--${leaf.flag} <value>`, `${leaf.key} (${leaf.env})`).hideHelp(
    !['data-dir', 'smtp-port', 'smtp-host', 'grpc-port', 'grpc-host', 'log-level'].includes(leaf.flag),
  );
  program.addOption(opt);
}

function config(): Config {
  const opts = program.opts();
  const overrides: Record<string, string | boolean> = {};
  for (const leaf of leaves()) {
    const v = opts[camel(leaf.flag)];
    if (v !== undefined) overrides[leaf.key] = v === true ? 'true' : v;
  }
  return loadConfig({ file: opts.config, env: process.env, overrides });
}

const camel = (flag: string) => flag.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const json = () => Boolean(program.opts().json);
const nodeAddress = (c: Config) => `${c.grpc.host === '0.0.0.0' ? '127.0.0.1' : c.grpc.host}:${c.grpc.port}`;

function print(rows: Record<string, unknown>[], columns: string[], data: unknown = rows): void {
  if (json()) {
    process.stdout.write(JSON.stringify(data, null, 2) + '\n');
    return;
  }
  if (!rows.length) return;
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? '').length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd();
  process.stdout.write([line(columns.map((c) => c.toUpperCase())), ...rows.map((r) => line(columns.map((c) => String(r[c] ?? ''))))].join('\n') + '\n');
}

/**
 * Where directory and mailbox commands go: a cluster (--etcd, MAILGRID_ETCD, or the
 * launcher's state file in this folder) or else the single node's gRPC services.
 */
function clusterTarget(c: Config): ClusterAdmin | undefined {
  if (c.etcd) return new ClusterAdmin(c.etcd, c.cluster.prefix);
  const state = readState();
  return state ? new ClusterAdmin(state.etcd, state.prefix) : undefined;
}

async function withCluster<T>(work: (admin: ClusterAdmin, c: Config) => Promise<T>): Promise<T> {
  const c = config();
  const admin = clusterTarget(c);
  if (!admin) throw new CliError('not in a cluster: give --etcd <endpoints>, set MAILGRID_ETCD, or run where `mailgrid cluster up` ran');
  try {
    return await admin.run(() => work(admin, c));
  } finally {
    admin.close();
  }
}

async function withDirectory<T>(work: (dir: DirectoryAdmin, cluster: ClusterAdmin | undefined) => Promise<T>): Promise<T> {
  const c = config();
  const cluster = clusterTarget(c);
  if (cluster) {
    try {
      return await cluster.run(() => work(cluster.directory, cluster));
    } finally {
      cluster.close();
    }
  }
  const node = new NodeDirectoryAdmin(nodeAddress(c));
  try {
    return await work(node, undefined);
  } finally {
    node.close();
  }
}

async function withMailbox<T>(account: string, work: (mb: MailboxReader) => Promise<T>): Promise<T> {
  const c = config();
  const cluster = clusterTarget(c);
  let address = nodeAddress(c);
  if (cluster) {
    try {
      address = await cluster.run(() => cluster.backendFor(account));
    } finally {
      cluster.close();
    }
  }
  const mb = new MailboxReader(address);
  try {
    return await work(mb);
  } finally {
    mb.close();
  }
}

program
  .command('start')
  .description('run a single node: SMTP frontend and backend with the embedded directory')
  .option('--print-config', 'print the effective configuration and exit')
  .action((opts) => runRole(singleNode, config(), opts.printConfig));

program
  .command('frontend')
  .description('run a cluster frontend (SMTP; needs --etcd)')
  .option('--print-config', 'print the effective configuration and exit')
  .action((opts) => runRole(clusterFrontend, config(), opts.printConfig));

program
  .command('backend')
  .description('run a cluster backend serving one hosting group (--backend-group; needs --etcd)')
  .option('--print-config', 'print the effective configuration and exit')
  .action((opts) => runRole(clusterBackend, config(), opts.printConfig));

const domain = program.command('domain').description('hosted domains');
domain
  .command('add <domain>')
  .description('host a domain')
  .action((d: string) => withDirectory(async (a) => (await a.addDomain(checkedDomain(d)), done(`domain ${checkedDomain(d)} added`))));
domain
  .command('remove <domain>')
  .description('stop hosting a domain (it must have no accounts)')
  .action((d: string) => withDirectory(async (a) => (await a.removeDomain(checkedDomain(d)), done(`domain ${checkedDomain(d)} removed`))));
domain
  .command('list')
  .description('list hosted domains')
  .action(() =>
    withDirectory(async (a) => {
      const domains = await a.listDomains();
      print(domains.map((d) => ({ domain: d })), ['domain'], domains);
    }),
  );

const account = program.command('account').description('accounts');
account
  .command('add <address>')
  .description('create an account in a hosted domain')
  .option('--group <group>', 'hosting group (default: the node\'s group)')
  .action((address: string, opts) =>
    withDirectory(async (a, cluster) => {
      const key = checkedAddress(address).key;
      await a.addAccount(key, opts.group ?? (cluster ? await cluster.defaultGroup() : ''));
      done(`account ${key} added`);
    }),
  );
account
  .command('remove <address>')
  .description('remove an account (its stored mail stays on the backend)')
  .action((address: string) =>
    withDirectory(async (a) => {
      const key = checkedAddress(address).key;
      await a.removeAccount(key);
      done(`account ${key} removed`);
    }),
  );
account
  .command('list [domain]')
  .description('list accounts, of one domain or all')
  .action((d: string | undefined) =>
    withDirectory(async (a) => {
      const accounts = await a.listAccounts(d === undefined ? undefined : checkedDomain(d));
      print(accounts as unknown as Record<string, unknown>[], ['address', 'group']);
    }),
  );

const alias = program.command('alias').description('other addresses of accounts');
alias
  .command('add <alias> <account>')
  .description('deliver mail for <alias> to <account>')
  .action((a: string, target: string) =>
    withDirectory(async (dir) => {
      const [key, to] = [checkedAddress(a).key, checkedAddress(target).key];
      await dir.addAlias(key, to);
      done(`alias ${key} → ${to} added`);
    }),
  );
alias
  .command('remove <alias>')
  .description('remove an alias')
  .action((a: string) =>
    withDirectory(async (dir) => {
      const key = checkedAddress(a).key;
      await dir.removeAlias(key);
      done(`alias ${key} removed`);
    }),
  );
alias
  .command('list [domain]')
  .description('list aliases, of one domain or all')
  .action((d: string | undefined) =>
    withDirectory(async (dir) => print((await dir.listAliases(d === undefined ? undefined : checkedDomain(d))) as unknown as Record<string, unknown>[], ['alias', 'target'])),
  );

const mailbox = program.command('mailbox').description('stored mail');
mailbox
  .command('list <address>')
  .description("list an account's messages")
  .action((address: string) =>
    withMailbox(address, async (mb) => {
      const messages = await mb.list(checkedAddress(address).key);
      print(
        messages.map((m) => ({ uid: m.uid, size: m.size, received: new Date(Number(m.receivedAtMs)).toISOString(), folder: m.folder })),
        ['uid', 'size', 'received', 'folder'],
      );
    }),
  );
mailbox
  .command('get <address> <uid>')
  .description('write one message, raw, to stdout')
  .action((address: string, uid: string) => {
    if (!/^[1-9]\d*$/.test(uid)) throw new CliError(`invalid uid: ${uid}`);
    return withMailbox(address, async (mb) => {
      process.stdout.write(await mb.fetch(checkedAddress(address).key, Number(uid)));
    });
  });

const cluster = program.command('cluster').description('a local cluster: etcd, HAProxy, frontends and backends as processes');
cluster
  .command('up')
  .description('start etcd, backends, frontends and HAProxy on free loopback ports')
  .option('--frontends <n>', 'number of frontends', '2')
  .option('--groups <n>', 'number of hosting groups (one backend each)', '2')
  .action(async (opts) => {
    const state = await clusterUp({ frontends: Number(opts.frontends), groups: Number(opts.groups) });
    if (json()) process.stdout.write(JSON.stringify(state, null, 2) + '\n');
    else {
      print(state.processes.map((p) => ({ id: p.id, role: p.role, group: p.group ?? '', pid: p.pid, ports: ports(p.ports) })), ['id', 'role', 'group', 'pid', 'ports']);
      process.stdout.write(`\nSMTP (through HAProxy): ${state.smtp}\netcd: ${state.etcd}\nlogs and data: ${state.dir}\n`);
    }
  });
cluster
  .command('status')
  .description('every member with its role, group, pid, ports and state')
  .action(async () => {
    const state = requireState();
    let members: Awaited<ReturnType<ClusterAdmin['members']>> = [];
    if (alive(state.processes.find((p) => p.role === 'etcd')?.pid ?? 0)) {
      const admin = new ClusterAdmin(state.etcd, state.prefix);
      members = await admin.members().catch(() => []);
      admin.close();
    }
    const rows = state.processes.map((p) => {
      const m = members.find((x) => x.id === p.id);
      const running = alive(p.pid);
      const status = !running ? 'stopped' : p.role === 'frontend' || p.role === 'backend' ? (m?.state ?? 'unregistered') : 'running';
      return { id: p.id, role: p.role, group: p.group ?? '', pid: p.pid, ports: ports(p.ports), status, dataDir: p.dataDir ?? '', log: p.log };
    });
    if (json()) process.stdout.write(JSON.stringify({ smtp: state.smtp, etcd: state.etcd, dir: state.dir, members: rows }, null, 2) + '\n');
    else {
      print(rows, ['id', 'role', 'group', 'pid', 'ports', 'status']);
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
  .description('stop every process and remove the cluster\'s data')
  .action(async () => {
    await clusterDown();
    done('cluster stopped and removed');
  });

const ports = (p: Record<string, number>) => Object.entries(p).map(([k, v]) => `${k}=${v}`).join(' ');

program
  .command('member')
  .description('cluster members')
  .command('list')
  .description('live members registered in etcd')
  .action(() =>
    withCluster(async (admin) => {
      const members = await admin.members();
      print(
        members.map((m) => ({ id: m.id, role: m.role, site: m.site, group: m.group ?? '', state: m.state, smtp: m.smtp ?? '', grpc: m.grpc ?? '', pid: m.pid })),
        ['id', 'role', 'site', 'group', 'state', 'smtp', 'grpc', 'pid'],
        members,
      );
    }),
  );

program
  .command('group')
  .description('hosting groups')
  .command('list')
  .description('hosting groups and the backend serving each')
  .action(() =>
    withCluster(async (admin) => {
      const groups = await admin.groups();
      print(groups as unknown as Record<string, unknown>[], ['group', 'primary', 'address', 'site']);
    }),
  );

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

/** The queues a queue command works on: the single node's, or every queue-holding member's. */
async function withQueues<T>(nodeFilter: string | undefined, work: (q: QueueTargets) => Promise<T>): Promise<T> {
  const c = config();
  const cluster = clusterTarget(c);
  let targets = [{ node: c.nodeId, address: `${c.grpc.host === '0.0.0.0' ? '127.0.0.1' : c.grpc.host}:${c.queue.grpcPort}` }];
  if (cluster) {
    try {
      const members = await cluster.run(() => cluster.members());
      targets = members.filter((m) => m.queue).map((m) => ({ node: m.id, address: m.queue! }));
    } finally {
      cluster.close();
    }
  }
  if (nodeFilter) {
    targets = targets.filter((t) => t.node === nodeFilter);
    if (!targets.length) throw new CliError(`no node ${nodeFilter} with a queue`);
  }
  const q = new QueueTargets(targets);
  try {
    return await work(q);
  } finally {
    q.close();
  }
}

const duration = (ms: number) => {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
};
const age = (since: number) => duration(Date.now() - since);

const queue = program.command('queue').description('the durable queues (one node, or every node of a cluster)');
queue
  .command('list')
  .description('queued messages with each recipient\'s attempts, last error and next try')
  .option('--node <id>', 'only this node\'s queue')
  .option('--limit <n>', 'at most this many messages per node', '0')
  .action((opts) =>
    withQueues(opts.node, async (q) => {
      const messages = await q.list(Number(opts.limit));
      const rows = messages.flatMap((m) =>
        m.recipients.map((r, i) => ({
          id: i ? '' : m.id,
          node: i ? '' : m.node,
          age: i ? '' : age(Number(m.receivedAtMs)),
          size: i ? '' : m.size,
          from: i ? '' : m.mailFrom || '<>',
          rcpt: r.address,
          state: r.state,
          attempts: r.attempts,
          next: r.state !== 'queued' ? '-' : Number(r.nextAttemptMs) <= Date.now() ? 'now' : `in ${duration(Number(r.nextAttemptMs) - Date.now())}`,
          error: r.lastError ? `${r.lastError.code} ${r.lastError.enhanced} ${r.lastError.text}`.slice(0, 60) : '',
        })),
      );
      print(rows, ['id', 'node', 'age', 'size', 'from', 'rcpt', 'state', 'attempts', 'next', 'error'], messages);
      if (!json()) process.stdout.write(`${messages.length} message(s) queued\n`);
    }),
  );
queue
  .command('show <id...>')
  .description('one or more queued messages in full')
  .action((ids: string[]) =>
    withQueues(undefined, async (q) => {
      const messages = await q.show(ids);
      const missing = ids.filter((id) => !messages.some((m) => m.id === id));
      if (missing.length) throw new CliError(`not in any queue: ${missing.join(', ')}`);
      process.stdout.write(JSON.stringify(messages, null, 2) + '\n');
    }),
  );
const actions: [string, QueueAction, string][] = [
  ['retry', 'Retry', 'try the selected messages now'],
  ['delete', 'Delete', 'remove the selected messages without a bounce'],
  ['hold', 'Hold', 'stop trying the selected messages until released'],
  ['release', 'Release', 'try held messages again'],
];
for (const [name, action, description] of actions) {
  queue
    .command(`${name} [id...]`)
    .description(description)
    .option('--all', 'every message')
    .option('--node <id>', 'only this node\'s queue')
    .action((ids: string[], opts) => {
      if (!ids.length && !opts.all) throw new CliError(`name the messages to ${name}, or give --all`);
      return withQueues(opts.node, async (q) => done(`${name}: ${await q.act(action, ids, Boolean(opts.all))} recipient(s)`));
    });
}

function done(text: string): void {
  if (json()) process.stdout.write(JSON.stringify({ ok: true, message: text }) + '\n');
  else process.stdout.write(text + '\n');
}

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof ConfigError || err instanceof CliError || err instanceof DirectoryError || err instanceof StartError) {
    process.stderr.write(`mailgrid: ${err.message}\n`);
  } else {
    process.stderr.write(`mailgrid: unexpected error: ${(err as Error)?.stack ?? err}\n`);
  }
  process.exitCode = 1;
});
