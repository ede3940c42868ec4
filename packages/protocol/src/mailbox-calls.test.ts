import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { createMailboxClient } from './clients.js';
import { proto } from './load.js';
import { MailboxCalls } from './mailbox-calls.js';
import type { MailboxClient } from './generated/mailgrid/v1/Mailbox.js';

/**
 * The rules of a Mailbox hold, against a real gRPC server on loopback whose Hold does what a
 * test tells it: the grant has the call's deadline (a primary that never answers does not
 * hang a login), and a hold that ends without a release is `lost`.
 */
describe('MailboxCalls.hold', () => {
  let server: grpc.Server;
  let client: MailboxClient;
  /** Holds granted and not yet let go, as the real server keeps them: Release ends the stream. */
  const held = new Map<string, grpc.ServerWritableStream<{ holder: string }, unknown>>();
  /** What the server's Hold does with the call: by the holder's name. */
  const behaviour: Record<string, (call: grpc.ServerWritableStream<{ holder: string }, unknown>) => void> = {
    silent: () => undefined,
    granted: (call) => {
      held.set(call.request.holder, call);
      call.write({ held: true });
    },
    'granted-then-ended': (call) => {
      call.write({ held: true });
      setImmediate(() => call.end());
    },
  };

  before(async () => {
    server = new grpc.Server();
    server.addService(proto.Mailbox.service, {
      Hold: (call: grpc.ServerWritableStream<{ holder: string }, unknown>) => behaviour[call.request.holder](call),
      Release: (call: grpc.ServerUnaryCall<{ holder: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        held.get(call.request.holder)?.end();
        held.delete(call.request.holder);
        cb(null, { released: true });
      },
    } as never);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    client = createMailboxClient(`127.0.0.1:${port}`);
  });
  after(() => {
    client.close();
    server.forceShutdown();
  });

  const calls = () => new MailboxCalls(client, { address: 'test', epoch: 7 }, { timeoutMs: 300 });

  it('fails with TIMEOUT when the primary never grants the hold', async () => {
    await assert.rejects(calls().hold('a@example.test', 'silent'), (err: Error & { code?: string }) => err.code === 'TIMEOUT');
  });

  it('is lost when the primary ends it, and not when the session lets go', async () => {
    const lost = await calls().hold('a@example.test', 'granted-then-ended');
    await lost.lost;
    const kept = await calls().hold('a@example.test', 'granted', true);
    let settled = false;
    void kept.lost.then(() => (settled = true));
    await kept.release();
    // The server ended the stream with the release; one more call on the channel has been answered after that end.
    await calls().hold('b@example.test', 'granted').then((h) => h.release());
    assert.equal(settled, false, 'letting go is not losing the mailbox');
  });
});
