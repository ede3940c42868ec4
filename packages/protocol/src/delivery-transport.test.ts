import { Replies } from '@mailgrid/core';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageChannel } from 'node:worker_threads';
import { PortDeliveryTransport, servePortDeliveries, type Delivery, type DeliveryHandler } from './delivery-transport.js';

const envelope = (size: number): Delivery['envelope'] => ({
  messageId: 'm1',
  mailFrom: 'a@sender.test',
  recipients: [{ address: 'u@example.test', account: 'u@example.test', idempotencyKey: 'm1:u@example.test' }],
  size,
  receivedAtMs: 1,
  group: 'g1',
  epoch: 0,
  directoryRevision: 3,
});

/** Both ends on a real MessageChannel (the backend end runs on this thread here). */
function pair(handler: DeliveryHandler, timeoutMs = 5_000): PortDeliveryTransport {
  const { port1, port2 } = new MessageChannel();
  servePortDeliveries(port2, handler);
  port2.unref();
  return new PortDeliveryTransport(port1, { timeoutMs });
}

test('the backend gets the whole body and the envelope; the sender keeps its body intact', async () => {
  let seen: Delivery | undefined;
  const t = pair(async (d) => {
    seen = d;
    return { results: [{ address: 'u@example.test', outcome: 'STORED', reply: { code: 250, enhanced: '2.0.0', text: 'stored' }, uid: 7 }] };
  });
  // A view into a larger pooled buffer, as Buffer.concat makes for small messages.
  const body = Buffer.from('Subject: x\r\n\r\nhello\r\n');
  const results = await t.deliver('local', { envelope: envelope(body.length), body, trace: { session: 's1' } });
  assert.equal(results[0].outcome, 'STORED');
  assert.equal(results[0].uid, 7);
  assert.equal(seen!.body.toString(), 'Subject: x\r\n\r\nhello\r\n');
  assert.ok(Buffer.isBuffer(seen!.body));
  assert.equal(seen!.envelope.directoryRevision, 3);
  assert.equal(seen!.trace.session, 's1');
  // Still readable here: the queue may need it after a failed attempt.
  assert.equal(body.toString(), 'Subject: x\r\n\r\nhello\r\n');
  t.close();
});

test("a refusal arrives as the backend's MailError, code and reply", async () => {
  const t = pair(async () => {
    throw Replies.staleEpoch(1, 2);
  });
  await assert.rejects(t.deliver('local', { envelope: envelope(1), body: Buffer.from('x'), trace: {} }), (err: { code: string; reply: { code: number } }) => {
    assert.equal(err.code, Replies.staleEpoch(1, 2).code);
    assert.equal(err.reply.code, 451);
    return true;
  });
  t.close();
});

test('an unexpected fault of the backend is a 451 4.3.0, never a 5xx', async () => {
  const t = pair(async () => {
    throw new Error('disk on fire');
  });
  await assert.rejects(t.deliver('local', { envelope: envelope(1), body: Buffer.from('x'), trace: {} }), (err: { reply: { code: number; enhanced: string } }) => {
    assert.deepEqual([err.reply.code, err.reply.enhanced], [451, '4.3.0']);
    return true;
  });
  t.close();
});

test('a backend that does not answer in time is a 4xx timeout, and closing fails what is pending', async () => {
  const never: DeliveryHandler = () => new Promise(() => undefined);
  const slow = pair(never, 50);
  await assert.rejects(slow.deliver('local', { envelope: envelope(1), body: Buffer.from('x'), trace: {} }), (err: { reply: { code: number; enhanced: string } }) => {
    assert.deepEqual([err.reply.code, err.reply.enhanced], [451, '4.4.7']);
    return true;
  });
  slow.close();
  const closed = pair(never);
  const pending = closed.deliver('local', { envelope: envelope(1), body: Buffer.from('x'), trace: {} });
  closed.close();
  await assert.rejects(pending, (err: { reply: { code: number } }) => err.reply.code === 451);
});
