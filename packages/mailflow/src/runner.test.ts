import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MailQueue, QueueStore, type Relay } from '@mailgrid/queue';
import { pino } from 'pino';
import { DeliveryChannel } from './delivery-channel.js';
import { Dispatcher } from './dispatcher.js';
import { Router } from './router.js';
import { QueueRunner } from './runner.js';

const policy = { minRetryMs: 60_000, maxRetryMs: 60_000, lifetimeMs: 86_400_000, delayWarningMs: 0 };
const log = pino({ level: 'silent' });

describe('QueueRunner when a DSN cannot be queued', () => {
  let dir: string;
  let store: QueueStore;
  let queue: MailQueue;
  let sent: string[][] = [];
  /** What the queue said of each recipient while the outside server had it: marked as being handed over. */
  let marked: boolean[] = [];
  let runner: QueueRunner;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mailgrid-runner-'));
    store = new QueueStore(dir);
    queue = new MailQueue(store, { limits: () => ({ maxMessages: 10, maxBytes: 1e9, minFreeBytes: 0 }), path: dir, log, copied: true });
    const router = new Router({ revision: 0, resolve: async () => ({ kind: 'foreign' as const }), hostedDomains: async () => [], firstAccount: async () => undefined });
    // The outside server takes one recipient and refuses the other for good.
    const relay = {
      send: async (_d: string, _m: unknown, recipients: { address: string }[]) => {
        const rcpts = recipients.map((r) => r.address);
        sent.push(rcpts);
        marked = store.recipientsOf('m1').map((r) => typeof r.handingAt === 'number');
        return rcpts.map((address) =>
          address.startsWith('ok')
            ? { address, delivered: true, reply: { code: 250, enhanced: '2.0.0', text: 'ok' } }
            : { address, delivered: false, reply: { code: 550, enhanced: '5.1.1', text: 'no such user' } },
        );
      },
    } as unknown as Relay;
    const channel = new DeliveryChannel({ groups: { primary: async () => undefined }, timeoutMs: 1000, chunkBytes: 65536, node: 'n' });
    const bounce = async () => {
      throw new Error('no DSN now');
    };
    const dispatcher = new Dispatcher({ queue, router, channel, relay, policy: () => policy, bounce, log });
    runner = new QueueRunner(queue, dispatcher, { concurrency: 1, inlineGraceMs: () => 65_000, log });
  });
  after(async () => {
    await runner.stop(1000);
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lets the delivered recipient leave and keeps the bounced one for another try', async () => {
    await queue.enqueue({
      id: 'm1',
      mailFrom: 'a@sender.test',
      body: Buffer.from('Subject: x\r\n\r\nx\r\n'),
      receivedAt: Date.now(),
      origin: 'test',
      recipients: [
        { address: 'ok@far.test', route: 'relay' },
        { address: 'bad@far.test', route: 'relay' },
      ],
    });
    await runner.start();
    for (let i = 0; i < 100 && store.recipientsOf('m1').length !== 1; i++) await new Promise((r) => setTimeout(r, 20));
    const left = store.recipientsOf('m1');
    assert.deepEqual(left.map((r) => r.address), ['bad@far.test'], 'the delivered recipient is gone, the bounced one stays');
    assert.equal(left[0].attempts, 1);
    assert.ok(left[0].nextAttemptAt > Date.now(), 'tried again later');
    assert.deepEqual(sent, [['ok@far.test', 'bad@far.test']], 'the delivered recipient is not sent again');
    assert.deepEqual(marked, [true, true], 'marked in the queue before the SMTP transaction');
    assert.equal(left[0].handingAt, undefined, 'the mark is gone with the settle after it');
  });
});
