import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { clusterFolder, runCli, sendMail } from '@mailgrid/testing';

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

describe('cluster up --shared-ports: frontends on one host without a balancer (listen.reusePort)', () => {
  it('gives every frontend the same access ports, and the kernel spreads sessions over them', async () => {
    const { cli, ok, state, cwd } = clusterFolder('shared-ports');
    try {
      await ok('cluster', 'up', '--frontends', '2', '--groups', '1', '--shared-ports');
      const s = state();
      const frontends = s.processes.filter((p) => p.role === 'frontend');
      assert.equal(frontends.length, 2);
      assert.ok(!s.processes.some((p) => p.role === 'haproxy'), 'no balancer');
      for (const name of ['smtp', 'submission', 'submissions', 'pop3', 'pop3s']) assert.equal(new Set(frontends.map((p) => p.ports[name])).size, 1, `${name} shared`);
      assert.equal(s.smtp, `127.0.0.1:${frontends[0].ports.smtp}`);
      await ok('domain', 'add', 'example.test');
      await ok('account', 'add', 'alice@example.test', '--group', 'g1');
      const sessions = async (http: number) => Number(/^mailgrid_sessions_total\{protocol="smtp",listener="smtp"\} (\d+)/m.exec(await (await fetch(`http://127.0.0.1:${http}/metrics`)).text())?.[1] ?? 0);
      // Each connection from a new source port: the kernel's hash sends some to each frontend.
      for (let i = 0; i < 40; i++) assert.match(await sendMail(s.smtp, { to: ['alice@example.test'], data: `Subject: shared ${i}\r\n\r\nx\r\n` }), /^250 /);
      const counts = await Promise.all(frontends.map((p) => sessions(p.ports.http)));
      assert.equal(counts.reduce((a, b) => a + b, 0), 40);
      assert.ok(counts.every((n) => n > 0), `both frontends took sessions: ${counts}`);
      // A frontend that stops leaves the port to the other.
      await ok('cluster', 'stop', 'fe-1');
      for (let i = 0; i < 5; i++) assert.match(await sendMail(s.smtp, { to: ['alice@example.test'], data: `Subject: after ${i}\r\n\r\nx\r\n` }), /^250 /);
    } finally {
      await cli('cluster', 'down');
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});
