import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

/** Runs `body` in a fresh process with the root logger as `log`; returns its stdout lines as JSON. */
function run(body: string): { lines: Record<string, unknown>[]; status: number | null } {
  const logger = new URL('./logger.js', import.meta.url).href;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import { createLogger } from '${logger}'; const log = createLogger({ level: 'info' }); ${body}`], { encoding: 'utf8' });
  return { lines: r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l)), status: r.status };
}

test('lines waiting in the batch are written when the process ends on its own', () => {
  const { lines } = run(`for (let i = 0; i < 3; i++) log.info({ event: 'test.line', i }, 'line');`);
  assert.deepEqual(lines.map((l) => l.i), [0, 1, 2]);
});

test('lines waiting in the batch are written when the process crashes', () => {
  const { lines, status } = run(`log.info({ event: 'test.before-crash' }, 'last words'); setTimeout(() => { throw new Error('crash'); }, 10);`);
  assert.equal(status, 1);
  assert.deepEqual(lines.map((l) => l.event), ['test.before-crash']);
});

test('lines waiting in the batch are written when the process calls exit', () => {
  const { lines, status } = run(`log.warn({ event: 'test.exit' }, 'bye'); process.exit(3);`);
  assert.equal(status, 3);
  assert.deepEqual(lines.map((l) => l.event), ['test.exit']);
});
