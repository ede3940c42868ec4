import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectEtcd, EtcdDirectory, fromEtcdError, Keys, Membership, NodeSettings, type MemberInfo } from '@mailgrid/cluster';
import { AdminError, defaults, MailError, parseAddress, type Logger } from '@mailgrid/core';
import { eventually, startEtcd, startTcpProxy, type EtcdHandle } from '@mailgrid/testing';
import type { Etcd3 } from 'etcd3';
import { pino } from 'pino';

// The cluster's etcd watches (directory, members, settings) against a real etcd: values
// written by hand that do not parse, and a watch resumed past a compaction.

type LogLine = Record<string, unknown>;

/** A debug logger whose lines land in `lines`. */
function capture(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { log, lines };
}

const addr = (s: string) => parseAddress(s)!;
const account = JSON.stringify({ group: 'g1' });

/** Asserts a lookup defers with DIRECTORY_ENTRY_INVALID (a 4xx, never a bounce). */
async function rejectsInvalid(directory: EtcdDirectory, address: string): Promise<void> {
  await assert.rejects(directory.resolve(addr(address)), (err: unknown) => {
    assert.ok(MailError.is(err), String(err));
    assert.equal(err.code, 'DIRECTORY_ENTRY_INVALID');
    assert.equal(err.reply.code, 451);
    return true;
  });
}

describe('etcd prefix watches', () => {
  let etcd: EtcdHandle;
  let client: Etcd3;
  let n = 0;
  /** A fresh key prefix per test, so tests share one etcd. */
  const freshKeys = () => new Keys(`/test-${++n}`);

  before(async () => {
    etcd = await startEtcd();
    client = connectEtcd(etcd.endpoint);
  });
  after(async () => {
    client.close();
    await etcd.stop();
  });

  it('directory: malformed values at the initial load are deferred, the other keys load', async (t) => {
    const keys = freshKeys();
    await client.put(keys.domain('example.test')).value('{}');
    await client.put(keys.domain('broken.test')).value('not json');
    await client.put(keys.account('example.test', 'a')).value(account);
    await client.put(keys.account('example.test', 'b')).value(account);
    await client.put(keys.account('example.test', 'broken')).value('{not json');
    await client.put(keys.account('example.test', 'wronggroup')).value('{"group": 5}');
    await client.put(keys.account('example.test', 'c')).value(account);
    await client.put(keys.alias('example.test', 'badalias')).value('{"target": "no address"}');
    const { log, lines } = capture();
    const directory = new EtcdDirectory(client, keys, log);
    t.after(() => directory.stop());
    await directory.start();

    assert.equal(directory.isSynced, true);
    for (const local of ['a', 'b', 'c']) assert.deepEqual(await directory.resolve(addr(`${local}@example.test`)), { kind: 'account', account: `${local}@example.test`, group: 'g1' });
    await rejectsInvalid(directory, 'broken@example.test');
    await rejectsInvalid(directory, 'wronggroup@example.test');
    await rejectsInvalid(directory, 'badalias@example.test');
    await rejectsInvalid(directory, 'anyone@broken.test');
    assert.deepEqual(await directory.resolve(addr('nobody@example.test')), { kind: 'unknown-user' });
    assert.deepEqual(await directory.resolve(addr('someone@elsewhere.test')), { kind: 'foreign' });

    const bad = lines.filter((l) => l.event === 'etcd.bad-value');
    assert.deepEqual(bad.map((l) => l.key).sort(), [
      keys.account('example.test', 'broken'),
      keys.account('example.test', 'wronggroup'),
      keys.alias('example.test', 'badalias'),
      keys.domain('broken.test'),
    ].sort());
    assert.equal(bad.find((l) => l.key === keys.account('example.test', 'broken'))!.err, 'not JSON');
    assert.match(String(bad.find((l) => l.key === keys.account('example.test', 'wronggroup'))!.err), /^group: /);
    // The admin list skips what does not parse.
    assert.deepEqual((await directory.listAccounts('example.test')).map((a) => a.address).sort(), ['a@example.test', 'b@example.test', 'c@example.test']);
  });

  it('directory: a malformed value through the watch is deferred, never crashes, and a fix or a delete clears it', async (t) => {
    const keys = freshKeys();
    await client.put(keys.domain('example.test')).value('{}');
    await client.put(keys.account('example.test', 'was-good')).value(account);
    const { log, lines } = capture();
    const directory = new EtcdDirectory(client, keys, log);
    t.after(() => directory.stop());
    await directory.start();
    assert.equal((await directory.resolve(addr('was-good@example.test'))).kind, 'account');

    await client.put(keys.account('example.test', 'late-broken')).value('{not json');
    await client.put(keys.account('example.test', 'was-good')).value('[]');
    await client.put(keys.account('example.test', 'after')).value(account);
    await eventually('after@ applied', async () => ((await directory.resolve(addr('after@example.test'))).kind === 'account' ? true : undefined));
    await rejectsInvalid(directory, 'late-broken@example.test');
    // The good value it had before is gone, not served stale.
    await rejectsInvalid(directory, 'was-good@example.test');
    assert.ok(lines.some((l) => l.event === 'etcd.bad-value' && l.key === keys.account('example.test', 'late-broken')));

    await client.delete().key(keys.account('example.test', 'was-good'));
    await client.put(keys.account('example.test', 'late-broken')).value(JSON.stringify({ group: 'g2' }));
    await eventually('late-broken@ fixed', async () => ((await directory.resolve(addr('late-broken@example.test'))).kind === 'account' ? true : undefined));
    assert.deepEqual(await directory.resolve(addr('late-broken@example.test')), { kind: 'account', account: 'late-broken@example.test', group: 'g2' });
    assert.deepEqual(await directory.resolve(addr('was-good@example.test')), { kind: 'unknown-user' });
  });

  it('directory: revision reaches the revision of each change', async (t) => {
    const keys = freshKeys();
    await client.put(keys.domain('example.test')).value('{}');
    const directory = new EtcdDirectory(client, keys, capture().log);
    t.after(() => directory.stop());
    await directory.start();
    const before = directory.revision;
    assert.ok(before > 0);

    const put = await client.put(keys.account('example.test', 'new')).value(account).exec();
    const revision = Number(put.header.revision);
    assert.ok(revision > before);
    await eventually('revision applied', async () => (directory.revision >= revision ? true : undefined));
    assert.equal((await directory.resolve(addr('new@example.test'))).kind, 'account');
  });

  /** A directory with domain example.test and account a@, reading etcd through a proxy the test can cut. */
  async function directoryThroughProxy(t: { after(fn: () => Promise<void>): void }) {
    const keys = freshKeys();
    await client.put(keys.domain('example.test')).value('{}');
    await client.put(keys.account('example.test', 'a')).value(account);
    const proxy = await startTcpProxy(new URL(etcd.endpoint).host);
    const viaProxy = connectEtcd(`http://${proxy.address}`);
    const { log, lines } = capture();
    const directory = new EtcdDirectory(viaProxy, keys, log);
    t.after(async () => {
      await directory.stop();
      viaProxy.close();
      await proxy.close();
    });
    return { keys, proxy, viaProxy, directory, lines };
  }

  it('directory: cut off from etcd while the history is compacted, it reloads once back', async (t) => {
    const { keys, proxy, viaProxy, directory, lines } = await directoryThroughProxy(t);
    await directory.start();
    assert.equal((await directory.resolve(addr('a@example.test'))).kind, 'account');

    proxy.cut();
    await eventually('unsynced while cut off', async () => (directory.isSynced ? undefined : true));
    // Known addresses are still answered, unknown ones deferred.
    assert.equal((await directory.resolve(addr('a@example.test'))).kind, 'account');
    await assert.rejects(directory.resolve(addr('x@example.test')), (err: unknown) => MailError.is(err) && err.code === 'LOOKUP_FAILED');
    // A call through the cut is an etcd fault, a 4xx.
    await assert.rejects(viaProxy.get('any').exec(), (err: unknown) => fromEtcdError(err).code === 'ETCD_UNAVAILABLE');

    await client.put(keys.account('example.test', 'x')).value(account);
    await client.delete().key(keys.account('example.test', 'a'));
    const now = (await client.get('any').exec()).header.revision;
    await client.kv.compact({ revision: now, physical: true });
    proxy.restore();

    await eventually('reloaded after the compaction', async () =>
      directory.isSynced && (await directory.resolve(addr('x@example.test'))).kind === 'account' ? true : undefined,
    );
    assert.deepEqual(await directory.resolve(addr('a@example.test')), { kind: 'unknown-user' });
    assert.ok(directory.revision >= Number(now));
    // It got there by a reload after etcd cancelled the resumed watch, not by a catch-up.
    assert.ok(lines.some((l) => l.event === 'etcd.watch-canceled'), 'the watch was cancelled');
    assert.equal(lines.filter((l) => l.event === 'etcd.loaded').length, 2);
  });

  it('directory: started while etcd is unreachable, it answers 451 and loads once etcd is back', async (t) => {
    const { keys, proxy, viaProxy, directory, lines } = await directoryThroughProxy(t);
    proxy.cut();
    await directory.start();
    assert.equal(directory.isSynced, false);
    assert.ok(lines.some((l) => l.event === 'etcd.load-failed'));
    await assert.rejects(directory.resolve(addr('a@example.test')), (err: unknown) => MailError.is(err) && err.code === 'LOOKUP_FAILED');

    proxy.restore();
    await eventually('loaded in the background', async () => (directory.isSynced ? true : undefined));
    assert.equal((await directory.resolve(addr('a@example.test'))).kind, 'account');
  });

  it('directory admin: every write is one transaction, domain remove too', async () => {
    const keys = freshKeys();
    await client.put(keys.group('g1')).value('{}');
    const admin = new EtcdDirectory(client, keys, capture().log);
    const code = async (work: Promise<unknown>) => work.then(() => 'ok', (err: unknown) => (AdminError.is(err) ? err.code : String(err)));
    assert.equal(await code(admin.removeDomain('example.test')), 'NOT_FOUND');
    assert.equal(await code(admin.addDomain('example.test')), 'ok');
    assert.equal(await code(admin.addDomain('example.test')), 'ALREADY_EXISTS');
    assert.equal(await code(admin.addAccount('a@example.test', 'g1')), 'ok');
    assert.equal(await code(admin.addAccount('b@example.test', 'nosuchgroup')), 'FAILED_PRECONDITION');
    assert.equal(await code(admin.removeDomain('example.test')), 'FAILED_PRECONDITION', 'a domain with an account stays');
    assert.equal((await client.get(keys.domain('example.test')).exec()).kvs.length, 1);
    assert.equal(await code(admin.removeAccount('a@example.test')), 'ok');
    assert.equal(await code(admin.removeDomain('example.test')), 'ok', 'an empty domain goes');
    assert.equal((await client.get(keys.domain('example.test')).exec()).kvs.length, 0);
  });

  it('membership: malformed entries are skipped; the epoch is the create revision of each registration', async (t) => {
    const keys = freshKeys();
    await client.put(keys.member('bogus')).value('{not json');
    await client.put(keys.member('half')).value(JSON.stringify({ id: 'half', role: 'frontend' }));
    const self = (id: string, role: MemberInfo['role']): MemberInfo => ({ id, role, site: 'main', state: 'up', pid: process.pid, startedAt: new Date().toISOString() });
    // A previous incarnation of be-1 that crashed: its entry lives until its lease expires.
    const stale = client.lease(60);
    await stale.put(keys.member('be-1')).value(JSON.stringify({ ...self('be-1', 'backend'), group: 'g1', grpc: '127.0.0.1:1' }));
    const staleRevision = Number((await client.get(keys.member('be-1')).exec()).kvs[0].create_revision);
    t.after(() => stale.revoke());

    const { log, lines } = capture();
    const backend = new Membership(client, keys, { ...self('be-1', 'backend'), group: 'g1' }, 5, log, {
      describe: () => ({ grpc: '127.0.0.1:7525', services: ['mailgrid.v1.Delivery'] }),
    });
    const frontend = new Membership(client, keys, self('fe-1', 'frontend'), 5, capture().log);
    t.after(() => Promise.all([backend.stop(), frontend.stop()]));
    await backend.start();
    await frontend.start();

    const createRevision = async (id: string) => Number((await client.get(keys.member(id)).exec()).kvs[0].create_revision);
    const epoch = backend.epoch!;
    assert.ok(epoch > staleRevision, `a new epoch (${epoch}), not the stale entry's (${staleRevision})`);
    assert.equal(epoch, await createRevision('be-1'));
    await eventually('both members listed', async () => (backend.members().length === 2 ? true : undefined));
    assert.deepEqual(backend.members().map((m) => m.id).sort(), ['be-1', 'fe-1']);
    assert.deepEqual(
      lines.filter((l) => l.event === 'etcd.bad-value').map((l) => l.key).sort(),
      [keys.member('bogus'), keys.member('half')],
    );
    assert.equal(frontend.members().find((m) => m.id === 'be-1')!.epoch, epoch);
    assert.deepEqual(frontend.members().find((m) => m.id === 'be-1')!.services, ['mailgrid.v1.Delivery']);

    await backend.update({ queueDepth: 3 });
    assert.equal(backend.epoch, epoch);
    assert.equal(await createRevision('be-1'), epoch);

    await backend.stop();
    assert.equal(backend.epoch, undefined);
    const again = new Membership(client, keys, { ...self('be-1', 'backend'), group: 'g1' }, 5, capture().log, { describe: () => ({ grpc: '127.0.0.1:7525' }) });
    t.after(() => again.stop());
    await again.start();
    assert.ok(again.epoch! > epoch);
    assert.equal(again.epoch, await createRevision('be-1'));
    await eventually('the member has the new epoch', async () => (frontend.members().find((m) => m.id === 'be-1')?.epoch === again.epoch ? true : undefined));
  });

  it('settings: invalid and restart-only values are logged and ignored, valid ones apply', async (t) => {
    const keys = freshKeys();
    const base = { ...defaults(), nodeId: 'n1' };
    await client.put(keys.setting('_cluster', 'log.level')).value('"debug"');
    await client.put(keys.setting('n1', 'smtp.maxRecipients')).value('"lots"');
    await client.put(keys.setting('n1', 'listen.maxClients')).value('{not json');
    await client.put(keys.setting('n1', 'smtp.port')).value('2600');
    await client.put(keys.setting('n2', 'listen.maxClients')).value('7');
    const { log, lines } = capture();
    const settings = new NodeSettings(client, keys, base, log);
    t.after(() => settings.stop());
    await settings.start();

    assert.equal(settings.effective.log.level, 'debug');
    assert.equal(settings.effective.smtp.maxRecipients, base.smtp.maxRecipients);
    assert.equal(settings.effective.listen.maxClients, base.listen.maxClients);
    assert.equal(settings.effective.smtp.port, base.smtp.port);
    const invalid = lines.filter((l) => l.event === 'settings.invalid').map((l) => l.key);
    assert.deepEqual([...new Set(invalid)].sort(), ['listen.maxClients', 'smtp.maxRecipients']);
    assert.ok(lines.some((l) => l.event === 'settings.not-live' && l.key === 'smtp.port'));

    let changes = 0;
    settings.on('change', () => changes++);
    await client.put(keys.setting('n1', 'smtp.maxRecipients')).value('42');
    await eventually('the new value applied', async () => (settings.effective.smtp.maxRecipients === 42 ? true : undefined));
    assert.equal(changes, 1);
    assert.equal(settings.effective.listen.maxClients, base.listen.maxClients);
    // A key under its old name (smtp.maxClients became listen.maxClients) still works, with a warning.
    await client.delete().key(keys.setting('n1', 'listen.maxClients'));
    await client.put(keys.setting('n1', 'smtp.maxClients')).value('9');
    await eventually('the old name applied', async () => (settings.effective.listen.maxClients === 9 ? true : undefined));
    assert.ok(lines.some((l) => l.event === 'settings.deprecated' && l.key === 'smtp.maxClients' && l.now === 'listen.maxClients'));
  });
});
