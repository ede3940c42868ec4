import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLogger, freePort, HealthServer } from '@mailgrid/core';
import { authorize, dashboardRoutes } from './routes.js';
import { ThroughputRing, type ClusterView } from './snapshot.js';

const log = createLogger({ level: 'silent' });
const view: ClusterView = { node: 'fe-1', at: 1, members: [], groups: [], takers: [], throughput: [], failovers: [] };

/** A node's HTTP port with the dashboard's routes, on a free loopback port (port 0 turns the HTTP port off). */
async function serve(options: { token: string; setSetting?: (node: string, key: string, value: string) => Promise<unknown> }) {
  const server = new HealthServer({
    host: '127.0.0.1',
    port: await freePort(),
    log,
    services: () => [],
    routes: dashboardRoutes({ snapshot: () => view, adminToken: () => options.token, setSetting: options.setSetting, log }),
  });
  await server.start();
  const base = `http://127.0.0.1:${server.port}`;
  const post = (body: unknown, auth?: string) =>
    fetch(`${base}/api/settings`, { method: 'POST', headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) }, body: JSON.stringify(body) });
  return { server, base, post };
}

describe('dashboard routes', () => {
  const writes: string[] = [];
  let s: Awaited<ReturnType<typeof serve>>;
  before(async () => {
    s = await serve({
      token: 'sesame',
      setSetting: async (node, key, value) => {
        if (key === 'nope') throw Object.assign(new Error('nope cannot be changed on a running node'), { code: 'SETTING_REFUSED' });
        if (key === 'etcd.down') throw new Error('etcd unreachable');
        writes.push(`${node} ${key}=${value}`);
        return value;
      },
    });
  });
  after(() => s.server.stop());

  it('serves the page from the package, self-contained and locked down', async () => {
    const res = await fetch(`${s.base}/dashboard`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /^text\/html/);
    assert.match(res.headers.get('content-security-policy')!, /default-src 'none'.*connect-src 'self'/);
    const html = await res.text();
    assert.match(html, /<title>mailgrid dashboard<\/title>/);
    // No script or style from elsewhere, no literal outside address (other members' pages are linked by their published address).
    assert.doesNotMatch(html, /<script[^>]+src=|<link[^>]+href=|@import|https?:\/\/(?!www\.w3\.org\/2000\/svg|\$\{)/, 'nothing loaded from outside');
    assert.equal((await fetch(`${s.base}/`, { redirect: 'manual' })).headers.get('location'), '/dashboard');
  });

  it('serves the snapshot to anyone, saying whether an admin may write', async () => {
    const res = await fetch(`${s.base}/api/cluster`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const body = (await res.json()) as { node: string; admin: boolean; settable: string[] };
    assert.equal(body.node, 'fe-1');
    assert.equal(body.admin, true);
    assert.ok(body.settable.includes('submit.mode'));
  });

  it('refuses writes without the token or with a wrong one (401), takes them with it', async () => {
    const change = { node: 'fe-1', key: 'submit.mode', value: 'local' };
    const none = await s.post(change);
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate')!, /^Bearer/);
    assert.equal((await s.post(change, 'Bearer sesam')).status, 401);
    assert.equal((await s.post(change, 'Bearer sesame-and-more')).status, 401);
    assert.equal((await s.post(change, 'Basic sesame')).status, 401);
    assert.deepEqual(writes, []);
    const ok = await s.post(change, 'Bearer sesame');
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), change);
    assert.deepEqual(writes, ['fe-1 submit.mode=local']);
    assert.equal((await fetch(`${s.base}/api/session`, { headers: { authorization: 'Bearer sesame' } })).status, 200);
    assert.equal((await fetch(`${s.base}/api/session`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
  });

  it('answers a refused value 400, a fault 503, a bad body 400, a wrong method 405', async () => {
    const auth = 'Bearer sesame';
    const refused = await s.post({ node: 'fe-1', key: 'nope', value: '1' }, auth);
    assert.equal(refused.status, 400);
    assert.match(((await refused.json()) as { error: string }).error, /cannot be changed/);
    assert.equal((await s.post({ node: 'fe-1', key: 'etcd.down', value: '1' }, auth)).status, 503);
    assert.equal((await s.post({ node: 'fe-1' }, auth)).status, 400);
    const notJson = await fetch(`${s.base}/api/settings`, { method: 'POST', headers: { authorization: auth }, body: '{' });
    assert.equal(notJson.status, 400);
    const big = await fetch(`${s.base}/api/settings`, { method: 'POST', headers: { authorization: auth }, body: 'x'.repeat(64 * 1024) }).catch(() => undefined);
    assert.ok(!big || big.status === 413);
    assert.equal((await fetch(`${s.base}/api/settings`)).status, 405);
    assert.equal((await fetch(`${s.base}/api/cluster`, { method: 'POST' })).status, 405);
  });

  it('is read-only for everyone while no token is configured (403), and a node without settings answers 501', async () => {
    const open = await serve({ token: '', setSetting: async () => assert.fail('written without a token') });
    try {
      assert.equal((await open.post({ node: 'a', key: 'submit.mode', value: 'local' })).status, 403);
      assert.equal((await open.post({ node: 'a', key: 'submit.mode', value: 'local' }, 'Bearer ')).status, 403);
      assert.equal(((await (await fetch(`${open.base}/api/cluster`)).json()) as { admin: boolean }).admin, false);
    } finally {
      await open.server.stop();
    }
    const single = await serve({ token: 'sesame' });
    try {
      assert.equal((await single.post({ node: 'a', key: 'submit.mode', value: 'local' })).status, 401);
      assert.equal((await single.post({ node: 'a', key: 'submit.mode', value: 'local' }, 'Bearer sesame')).status, 501);
      assert.deepEqual(((await (await fetch(`${single.base}/api/cluster`)).json()) as { settable: string[] }).settable, []);
    } finally {
      await single.server.stop();
    }
  });

  it('compares tokens as digests', () => {
    assert.equal(authorize('Bearer abc', 'abc'), 'admin');
    assert.equal(authorize('bearer  abc ', 'abc'), 'admin');
    assert.equal(authorize('Bearer abcd', 'abc'), 'unauthorized');
    assert.equal(authorize(undefined, 'abc'), 'unauthorized');
    assert.equal(authorize('Bearer abc', ''), 'no-token');
  });
});

describe('ThroughputRing', () => {
  it('sums each source rate between its own readings, a restart counting from zero', () => {
    const ring = new ThroughputRing(60_000, 25_000);
    const t0 = 1_000_000;
    assert.deepEqual(ring.sample(t0, [{ id: 'a', accepted: 100, delivered: 50, at: t0 }]), { at: t0, accepted: 0, delivered: 0 });
    // a: 20 more in 2 s; b: first seen
    assert.deepEqual(ring.sample(t0 + 2000, [{ id: 'a', accepted: 120, delivered: 60, at: t0 + 2000 }, { id: 'b', accepted: 7, delivered: 0, at: t0 }]), {
      at: t0 + 2000,
      accepted: 10,
      delivered: 5,
    });
    // b published again 10 s after its first reading: 30 in 10 s; a restarted: 4 in 2 s
    const s = ring.sample(t0 + 4000, [{ id: 'a', accepted: 4, delivered: 0, at: t0 + 4000 }, { id: 'b', accepted: 37, delivered: 20, at: t0 + 10_000 }]);
    assert.deepEqual(s, { at: t0 + 4000, accepted: 2 + 3, delivered: 0 + 2 });
    // b's rate holds until its next reading; stale past 25 s, it counts 0; a gone is forgotten
    assert.equal(ring.sample(t0 + 20_000, [{ id: 'b', accepted: 37, delivered: 20, at: t0 + 10_000 }]).accepted, 3);
    assert.equal(ring.sample(t0 + 40_000, [{ id: 'b', accepted: 37, delivered: 20, at: t0 + 10_000 }]).accepted, 0);
    // Only the window is kept.
    ring.sample(t0 + 70_000, []);
    assert.deepEqual(
      ring.list().map((x) => x.at),
      [t0 + 20_000, t0 + 40_000, t0 + 70_000],
    );
  });
});
