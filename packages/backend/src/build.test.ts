import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { defaults, withOverrides, type Service } from '@mailgrid/core';
import { EmbeddedDirectory } from '@mailgrid/directory';
import { DeliveryChannel, type Submission } from '@mailgrid/mailflow';
import { GrpcHost } from '@mailgrid/protocol';
import { pino } from 'pino';
import { buildBackend } from './build.js';

const log = pino({ level: 'silent' });

describe('backend live settings', () => {
  let dir: string;
  let directory: EmbeddedDirectory;
  let services: Service[];
  let backend: ReturnType<typeof buildBackend>;
  let channel: DeliveryChannel;
  /** Messages up to 64 KB go as one unary call (DeliverWhole), `channel`'s are streamed in 1 KB chunks. */
  let whole: DeliveryChannel;
  /** What the accounts' rules made, as the node's submit channel got it. */
  const made: Submission[] = [];
  const base = () => withOverrides({ ...defaults(), dataDir: dir }, { 'smtp.maxMessageBytes': 1_000 });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mailgrid-backend-'));
    directory = new EmbeddedDirectory(join(dir, 'directory'));
    await directory.addDomain('example.test');
    await directory.addAccount('a@example.test', base().backend.group);
    backend = buildBackend({ config: base(), log, directory, submit: async (s) => { made.push(s); return { id: s.id ?? 'made', accepted: true, reply: { code: 250, enhanced: '2.0.0', text: 'queued' }, recipients: [] }; } });
    const grpc = new GrpcHost({ host: '127.0.0.1', port: 0, log }).add(...backend.grpc);
    services = [...backend.services, grpc];
    for (const s of services) await s.start();
    const groups = { primary: async () => ({ address: grpc.address, epoch: 0 }) };
    channel = new DeliveryChannel({ groups, timeoutMs: 10_000, chunkBytes: 1_024, node: 'test' });
    whole = new DeliveryChannel({ groups, timeoutMs: 10_000, chunkBytes: 64 * 1_024, node: 'test' });
  });
  after(async () => {
    channel.close();
    whole.close();
    for (const s of [...services].reverse()) await s.stop(1_000);
    await directory.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const deliver = (id: string, size: number, via = channel) =>
    via.deliver(
      base().backend.group,
      { id, mailFrom: 's@sender.test', body: Buffer.from(`Subject: ${id}\r\n\r\n${'x'.repeat(size)}\r\n`), receivedAt: Date.now(), directoryRevision: 0 },
      [{ address: 'a@example.test', account: 'a@example.test' }],
    );

  it('takes a message as large as a raised smtp.maxMessageBytes lets a frontend accept', async () => {
    const [before] = await deliver('too-big', 3_000);
    assert.equal(before.reply.code, 552, 'over twice the start-up limit');
    backend.apply(withOverrides(base(), { 'smtp.maxMessageBytes': 10_000 }));
    const [after] = await deliver('raised', 3_000);
    assert.equal(after.outcome, 'STORED', `${after.reply.code} ${after.reply.text}`);
  });

  it('applies the same limit to a message sent whole in one call', async () => {
    backend.apply(base());
    const [before] = await deliver('whole-too-big', 3_000, whole);
    assert.equal(before.reply.code, 552, 'over twice the limit');
    backend.apply(withOverrides(base(), { 'smtp.maxMessageBytes': 10_000 }));
    const [after] = await deliver('whole-raised', 3_000, whole);
    assert.equal(after.outcome, 'STORED', `${after.reply.code} ${after.reply.text}`);
  });
});
