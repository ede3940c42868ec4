/**
 * `npm run bench:queue`: enqueue and dequeue rates of the durable queue as it grows to a
 * million messages and drains again (figures, not a test). Every enqueue and every settle
 * is flushed to disk, as in the running system; concurrent ones share flushes.
 *
 *   npm run bench:queue -- [--messages 1000000] [--size 1024] [--concurrency 64]
 */
import { mkdtempSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { QueueStore } from '@mailgrid/queue';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '1000000' },
    size: { type: 'string', default: '1024' },
    concurrency: { type: 'string', default: '64' },
  },
});
const N = Number(values.messages);
const C = Number(values.concurrency);
const body = Buffer.alloc(Number(values.size), 'x');
const STEP = Math.max(1, Math.floor(N / 10));

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'mailgrid-queue-bench-'));
  const store = new QueueStore(dir);
  const far = Date.now() + 86_400_000;
  console.log(`# queue bench: ${N} messages of ${body.length} B, ${C} concurrent writers`);

  // 1. Fill: every message scheduled a day ahead, so the queue is large but nothing is due.
  const enqueueRates: number[] = [];
  let next = 0;
  let t = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: C }, async () => {
      while (next < N) {
        const i = next++;
        await store.enqueue({
          message: { id: `m${String(i).padStart(8, '0')}`, mailFrom: 'a@x.test', receivedAt: Date.now(), size: body.length, origin: 'bench' },
          body,
          recipients: [{ address: `r${i}@y.test`, route: 'relay', queuedAt: Date.now(), nextAttemptAt: far + i }],
        });
        await store.flushed();
        if ((i + 1) % STEP === 0) {
          const now = process.hrtime.bigint();
          enqueueRates.push(Math.round(STEP / (Number(now - t) / 1e9)));
          t = now;
          console.log(`enqueue  ${String(i + 1).padStart(8)} queued  ${enqueueRates[enqueueRates.length - 1]} msgs/s`);
        }
      }
    }),
  );

  // 2. With the full queue scheduled for later, a few messages due now: the runner's scan
  //    must cost what is due, not what is queued.
  const due = 10_000;
  for (let i = 0; i < due; i += C) {
    await Promise.all(
      Array.from({ length: Math.min(C, due - i) }, (_, j) =>
        store.enqueue({
          message: { id: `due${i + j}`, mailFrom: 'a@x.test', receivedAt: Date.now(), size: body.length, origin: 'bench' },
          body,
          recipients: [{ address: `d${i + j}@y.test`, route: 'relay', queuedAt: Date.now(), nextAttemptAt: Date.now() }],
        }).then(() => store.flushed()),
      ),
    );
  }
  const scanStart = process.hrtime.bigint();
  let scanned = 0;
  for (;;) {
    const batch = store.dueRecipients(Date.now(), 1000);
    if (!batch.length) break;
    scanned += batch.length;
    await store.settle(batch.map((recipient) => ({ recipient, done: true })));
    await store.flushed();
  }
  const dueRate = Math.round(scanned / (Number(process.hrtime.bigint() - scanStart) / 1e9));
  console.log(`due now  ${scanned} of ${store.messageCount + scanned} queued  taken and settled at ${dueRate} msgs/s`);

  // 3. Drain everything (as if it all became due), batches of 1,000 settled C at a time.
  const dequeueRates: number[] = [];
  const total = store.messageCount;
  let drained = 0;
  let mark = 0;
  t = process.hrtime.bigint();
  for (;;) {
    const batch = store.dueRecipients(far + N + 1, Math.min(1000 * C, STEP));
    if (!batch.length) break;
    const parts: (typeof batch)[] = [];
    for (let i = 0; i < batch.length; i += 1000) parts.push(batch.slice(i, i + 1000));
    await Promise.all(parts.map((p) => store.settle(p.map((recipient) => ({ recipient, done: true })))));
    await store.flushed();
    drained += batch.length;
    if (drained - mark >= STEP || store.messageCount === 0) {
      const now = process.hrtime.bigint();
      dequeueRates.push(Math.round((drained - mark) / (Number(now - t) / 1e9)));
      [mark, t] = [drained, now];
      console.log(`dequeue  ${String(total - drained).padStart(8)} left    ${dequeueRates[dequeueRates.length - 1]} msgs/s`);
    }
  }
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  const figures = { date: new Date().toISOString(), messages: N, sizeBytes: body.length, concurrency: C, enqueueRates, dueRate, dequeueRates };
  mkdirSync('bench-results', { recursive: true });
  writeFileSync(`bench-results/queue-${Date.now()}.json`, JSON.stringify(figures, null, 2));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
