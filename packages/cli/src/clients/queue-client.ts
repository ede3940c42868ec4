import * as grpc from '@grpc/grpc-js';
import { createQueueClient, deadline, fromServiceError, type QueuedMessageInfo__Output, type QueueClient } from '@mailgrid/protocol';
import { CliError, explain } from '../errors.js';

export type QueueAction = 'Retry' | 'Delete' | 'Hold' | 'Release';

/** The queues of one or more nodes, each reached over the Queue service on its gRPC address. */
export class QueueTargets {
  private readonly clients: { node: string; address: string; client: QueueClient }[];

  constructor(targets: { node: string; address: string }[]) {
    if (!targets.length) throw new CliError('no node with a queue found');
    this.clients = targets.map((t) => ({ ...t, client: createQueueClient(t.address) }));
  }

  async list(limit = 0): Promise<QueuedMessageInfo__Output[]> {
    const all = await this.reachable((c) => this.call<{ messages: QueuedMessageInfo__Output[] }>(c, 'List', { limit }));
    return all.flatMap((r) => r.messages).sort((a, b) => Number(a.receivedAtMs) - Number(b.receivedAtMs));
  }

  async show(ids: string[]): Promise<QueuedMessageInfo__Output[]> {
    const all = await this.reachable((c) => this.call<{ messages: QueuedMessageInfo__Output[] }>(c, 'Show', { ids }));
    return all.flatMap((r) => r.messages);
  }

  /** Each node's queue totals: messages and bytes, as its counters say. */
  async totals(): Promise<{ node: string; messages: number; bytes: number }[]> {
    return this.reachable(async (c) => {
      const r = await this.call<{ totalMessages: number; totalBytes: number }>(c, 'List', { limit: 1 });
      return { node: c.node, messages: Number(r.totalMessages), bytes: Number(r.totalBytes) };
    });
  }

  /**
   * A listing from every node that answers: one that does not (killed, its entry not yet
   * expired) is named on stderr and left out, unless none answers.
   */
  private async reachable<T>(read: (c: { node: string; address: string; client: QueueClient }) => Promise<T>): Promise<T[]> {
    const settled = await Promise.allSettled(this.clients.map(read));
    const failed = settled.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length === settled.length) throw failed[0].reason;
    for (const f of failed) process.stderr.write(`mailgrid: skipped: ${(f.reason as Error).message}\n`);
    return settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  }

  /** Applies an action on every node; returns how many recipients it changed. */
  async act(action: QueueAction, ids: string[], all: boolean): Promise<number> {
    const res = await Promise.all(this.clients.map((c) => this.call<{ affected: number }>(c, action, { ids, all })));
    return res.reduce((n, r) => n + r.affected, 0);
  }

  close(): void {
    for (const c of this.clients) c.client.close();
  }

  private call<T>(c: { node: string; address: string; client: QueueClient }, method: string, req: unknown): Promise<T> {
    return new Promise((resolve, reject) =>
      (c.client as any)[method](req, new grpc.Metadata(), { deadline: deadline(10_000) }, (err: grpc.ServiceError | null, res: T) =>
        err ? reject(explain(fromServiceError(err), `the queue of ${c.node} at ${c.address}`)) : resolve(res),
      ),
    );
  }
}
