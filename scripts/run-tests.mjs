// Runs every compiled test: unit tests beside the code (packages/*/dist/**/*.test.js)
// and end-to-end tests (test/dist/*.test.js), with Node's own test runner.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const files = [];
const walk = (dir) => {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== 'node_modules') walk(p);
    } else if (name.endsWith('.test.js')) files.push(p);
  }
};
for (const pkg of readdirSync('packages')) {
  try {
    walk(join('packages', pkg, 'dist'));
  } catch {
    // package without tests
  }
}
walk(join('test', 'dist'));
const filter = process.argv.slice(2);
const selected = filter.length ? files.filter((f) => filter.some((x) => f.includes(x))) : files;
// --test-force-exit: a test file whose tests have all ended exits even if something it
// started keeps the event loop busy (a cluster test process once spun for minutes after
// its suite had finished, holding CI up to its time limit). The runner then leaves out its
// closing `# duration_ms` line, so it is printed here, in the same form.
const started = performance.now();
const res = spawnSync(process.execPath, ['--test', '--test-concurrency=2', '--test-force-exit', ...selected], { stdio: 'inherit' });
process.stdout.write(`# duration_ms ${(performance.now() - started).toFixed(6)}\n`);
process.exit(res.status ?? 1);
