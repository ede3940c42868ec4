/**
 * `npm run bench:store`: the backend's mail store under a million deliveries, and how large
 * its idempotency table stays (printed figures, not a test).
 *
 *   npm run bench:store -- [--deliveries 1000000] [--days 30] [--concurrency 64]
 *
 * Deliveries of a 200-byte message to one of 1,000 accounts, arriving evenly over `--days`
 * simulated days; every 100,000 deliveries (about every 3 simulated days) a pass forgets the
 * keys older than the retention (the default queue lifetime, 5 days, and a day's margin), as
 * the backend does every hour.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { defaults } from '@mailgrid/core';
import { LmdbMailStore, pruneDedupe } from '@mailgrid/store';

const { values } = parseArgs({
  options: { deliveries: { type: 'string', default: '1000000' }, days: { type: 'string', default: '30' }, concurrency: { type: 'string', default: '64' } },
});
const N = Number(values.deliveries);
const SPAN = Number(values.days) * 86_400_000;
const C = Number(values.concurrency);
const RETENTION = defaults().queue.lifetimeMs + 86_400_000;

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'mailgrid-store-bench-'));
  const store = new LmdbMailStore(dir);
  const body = Buffer.from('Subject: bench\r\n\r\n' + 'x'.repeat(180) + '\r\n');
  const t0 = Date.now();
  const start = Date.now() - SPAN;
  let next = 0;
  let pruned = 0;
  let maxKept = 0;
  let pruning: Promise<void> = Promise.resolve();
  await Promise.all(
    Array.from({ length: C }, async () => {
      while (next < N) {
        const i = next++;
        const at = start + Math.floor((i / N) * SPAN);
        await store.append({ body, receivedAt: at, recipients: [{ account: `u${i % 1000}@example.test`, idempotencyKey: `m${i}:u${i % 1000}` }] });
        if (i % 100_000 === 0) {
          pruning = pruning.then(async () => {
            maxKept = Math.max(maxKept, store.dedupeSize);
            pruned += await pruneDedupe(store, at - RETENTION);
          });
          await pruning;
        }
        if ((i + 1) % 100_000 === 0) console.log(`${String(i + 1).padStart(8)} deliveries, ${store.dedupeSize} idempotency keys kept`);
      }
    }),
  );
  const seconds = (Date.now() - t0) / 1000;
  pruned += await pruneDedupe(store, start + SPAN - RETENTION);
  const kept = store.dedupeSize;
  const fileMb = statSync(join(dir, 'data.mdb')).size / 1024 ** 2;
  console.log(`# ${N} deliveries over ${values.days} simulated days in ${seconds.toFixed(1)} s (${Math.round(N / seconds)} deliveries/s, each flushed)`);
  console.log(
    `idempotency keys kept: ${kept} after the last pass, at most ${maxKept} (the last ${RETENTION / 86_400_000} days' deliveries and up to 3 days more, a pass every 100,000); ${pruned} pruned; without pruning ${N}`,
  );
  console.log(`store file: ${fileMb.toFixed(0)} MB`);
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
