import { queueTakers } from '@mailgrid/cluster';
import { json, print, done, program, withCluster, withTarget } from '../context.js';
import { CliError } from '../errors.js';
import type { QueueAction, QueueTargets } from '../clients/queue-client.js';

/** Runs `work` on the queues of the target: the single node's, or every member's that offers Queue. */
function withQueues<T>(node: string | undefined, work: (q: QueueTargets) => Promise<T>): Promise<T> {
  return withTarget(async (t) => {
    const q = await t.queues(node);
    try {
      return await work(q);
    } finally {
      q.close();
    }
  });
}

const duration = (ms: number) => {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
};
const age = (since: number) => duration(Date.now() - since);

const queue = program.command('queue').description('the durable queues (one node, or every node of a cluster)');
queue
  .command('list')
  .description("queued messages with the node that owns each and the partner copies that have it, each recipient's attempts, last error and next try")
  .option('--node <id>', "only this node's queue")
  .option('--limit <n>', 'at most this many messages per node', '0')
  .action((opts) =>
    withQueues(opts.node, async (q) => {
      const messages = await q.list(Number(opts.limit));
      const rows = messages.flatMap((m) =>
        m.recipients.map((r, i) => ({
          id: i ? '' : m.id,
          node: i ? '' : m.node,
          copy: i ? '' : m.copies.join(',') || '-',
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
      print(rows, ['id', 'node', 'copy', 'age', 'size', 'from', 'rcpt', 'state', 'attempts', 'next', 'error'], messages);
      if (!json()) process.stdout.write(`${messages.length} message(s) queued\n`);
    }),
  );
queue
  .command('stats')
  .description("each node's queue: messages and bytes (what backpressure counts)")
  .option('--node <id>', "only this node's queue")
  .action((opts) =>
    withQueues(opts.node, async (q) => {
      const totals = await q.totals();
      print(totals, ['node', 'messages', 'bytes']);
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
    .option('--node <id>', "only this node's queue")
    .action((ids: string[], opts) => {
      if (!ids.length && !opts.all) throw new CliError(`name the messages to ${name}, or give --all`);
      return withQueues(opts.node, async (q) => done(`${name}: ${await q.act(action, ids, Boolean(opts.all))} recipient(s)`));
    });
}

const bytes = (n: number | undefined) => (n === undefined ? '' : n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(1)}G` : `${Math.round(n / 1024 ** 2)}M`);

queue
  .command('takers')
  .description('the live queue takers: members in local-for-others mode whose queue has room, with its depth and headroom')
  .action(() =>
    withCluster(async (admin) => {
      const takers = queueTakers(await admin.members());
      if (!takers.length && !json()) {
        process.stdout.write('no live queue taker: members in remote mode queue what they make themselves\n');
        return;
      }
      print(
        takers.map((m) => ({ id: m.id, role: m.role, grpc: m.grpc, depth: m.queueDepth ?? 0, headroom: bytes(m.queueFreeBytes) })),
        ['id', 'role', 'grpc', 'depth', 'headroom'],
        takers,
      );
    }),
  );
