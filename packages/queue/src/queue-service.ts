import { proto, toServiceError, type GrpcService, type QueueHandlers, type QueuedMessageInfo } from '@mailgrid/protocol';
import type { QueuedMessage, QueuedRecipient, QueueStore } from './queue-store.js';

/**
 * The Queue service of a node with a queue (`mailgrid queue ...`), hosted on the node's one
 * gRPC host. `wake` tells the node's runner that something became due; `copies` names the
 * partner copies that have every message.
 */
export function queueService(store: QueueStore, node: string, wake: () => void, copies: () => string[] = () => []): GrpcService {
  const info = (m: QueuedMessage, rcpts: QueuedRecipient[]): QueuedMessageInfo => ({
    id: m.id,
    mailFrom: m.mailFrom,
    receivedAtMs: m.receivedAt,
    size: m.size,
    node,
    copies: copies(),
    recipients: rcpts.map((r) => ({
      address: r.address,
      route: r.route,
      state: r.state,
      attempts: r.attempts,
      queuedAtMs: r.queuedAt,
      nextAttemptMs: r.state === 'queued' ? r.nextAttemptAt : 0,
      lastAttemptMs: r.lastAttemptAt ?? 0,
      lastError: r.lastError ?? null,
    })),
  });
  const totals = () => ({ totalMessages: store.messageCount, totalBytes: store.byteCount });
  const selected = (ids: string[], all: boolean) =>
    all ? [...store.list()].map((e) => e.recipients).flat() : ids.flatMap((id) => store.recipientsOf(id));

  const act = (change: (r: QueuedRecipient, now: number) => { recipient: QueuedRecipient; done: boolean } | undefined) =>
    ((call: { request: { ids: string[]; all: boolean } }, cb: (err: unknown, res?: { affected: number }) => void) => {
      const now = Date.now();
      const changes = selected(call.request.ids, call.request.all)
        .map((r) => change(r, now))
        .filter((c): c is { recipient: QueuedRecipient; done: boolean } => !!c);
      // An operator's change is acknowledged once it is on disk.
      store
        .settle(changes)
        .then(() => store.flushed())
        .then(
          () => {
            wake();
            cb(null, { affected: changes.length });
          },
          (err) => cb(toServiceError(err)),
        );
    }) as never;

  const handlers: QueueHandlers = {
    List(call, cb) {
      const limit = call.request.limit || Infinity;
      cb(null, { messages: [...store.list(limit)].map((e) => info(e.message, e.recipients)), ...totals() });
    },
    Show(call, cb) {
      const messages = call.request.ids.flatMap((id) => {
        const m = store.message(id);
        return m ? [info(m, store.recipientsOf(id))] : [];
      });
      cb(null, { messages, ...totals() });
    },
    Retry: act((r, now) => (r.state === 'queued' ? { recipient: { ...r, nextAttemptAt: now }, done: false } : undefined)),
    Release: act((r, now) => (r.state === 'held' ? { recipient: { ...r, state: 'queued', nextAttemptAt: now }, done: false } : undefined)),
    Hold: act((r) => (r.state === 'queued' ? { recipient: { ...r, state: 'held' }, done: false } : undefined)),
    Delete: act((r) => ({ recipient: r, done: true })),
  };
  return { name: 'Queue', definition: proto.Queue.service, handlers: handlers as never };
}
