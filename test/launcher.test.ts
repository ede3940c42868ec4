import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runCli } from '@mailgrid/testing';

/**
 * A busy machine: another program keeps taking and releasing ports the way every outgoing
 * connection and port-0 bind does, from the kernel's ephemeral range. A launcher that picks
 * a free port there and releases it before the node binds it loses the race sooner or later.
 */
function squatPorts(held = 1_500, every = 20) {
  const servers: Server[] = [];
  let stopped = false;
  const open = () =>
    new Promise<void>((res) => {
      const s = createServer();
      s.once('error', () => res());
      s.listen(0, '127.0.0.1', () => (servers.push(s), res()));
    });
  const loop = (async () => {
    while (!stopped) {
      const batch = servers.splice(0, Math.max(0, servers.length - held + 100));
      for (const s of batch) s.close();
      await Promise.all(Array.from({ length: 100 }, open));
      // The churn's rate, not a wait for anything: unpaced, it takes more than a core.
      await new Promise((r) => setTimeout(r, every));
    }
  })();
  return async () => {
    stopped = true;
    await loop;
    for (const s of servers.splice(0)) s.close();
  };
}

describe('cluster up on a busy machine', () => {
  it('comes up and goes down 10 times in a row while other programs churn ports', async () => {
    const stop = squatPorts();
    const cwd = mkdtempSync(join(tmpdir(), 'mailgrid-launcher-test-'));
    try {
      for (let i = 1; i <= 10; i++) {
        const up = await runCli(['cluster', 'up', '--frontends', '1', '--groups', '1'], {}, cwd);
        assert.equal(up.code, 0, `cycle ${i}: ${up.stderr}`);
        const state = JSON.parse(readFileSync(join(cwd, '.mailgrid', 'cluster.json'), 'utf8'));
        const ports = state.processes.flatMap((p: { ports: Record<string, number> }) => Object.values(p.ports));
        assert.equal(new Set(ports).size, ports.length, 'every port chosen once');
        const down = await runCli(['cluster', 'down'], {}, cwd);
        assert.equal(down.code, 0, `cycle ${i}: ${down.stderr}`);
      }
    } finally {
      await stop();
      await runCli(['cluster', 'down'], {}, cwd);
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});
