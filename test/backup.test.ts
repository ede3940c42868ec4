import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually, runCli, sendMail, startNode, clusterFolder } from '@mailgrid/testing';

// Backups: `mailgrid group backup` copies a group's LMDB store while it serves, from an
// in-sync replica; a member whose disk is lost is restored from the copy, catches up from
// its primary's log, and then holds every message (it takes over and serves them all).


const send = async (smtp: string | number, n: number, tag: string) => {
  for (let i = 0; i < n; i++) assert.match(await sendMail(smtp, { to: ['ann@example.test'], data: `Subject: ${tag} ${i}\r\n\r\nhi\r\n` }), /^250 /);
};

describe('backup and restore of a hosting group in a cluster', () => {
  const { cwd, cli, ok, state, proc } = clusterFolder('backup');
  const primary = async () => (JSON.parse((await ok('group', 'list', '--json')).stdout) as { primary: string }[])[0].primary;
  const messages = async () => (JSON.parse((await ok('mailbox', 'list', 'ann@example.test', '--json')).stdout) as unknown[]).length;

  before(async () => {
    const up = await runCli(['cluster', 'up', '--frontends', '1', '--groups', '1', '--replicas', '1'], {}, cwd);
    assert.equal(up.code, 0, up.stderr);
    await ok('domain', 'add', 'example.test');
    await ok('account', 'add', 'ann@example.test');
  });
  after(async () => {
    await cli('cluster', 'down');
  });

  it('a replica restored from a backup catches up and then serves every message as primary', async () => {
    await send(state().smtp, 20, 'before');
    const lead = await primary();
    const replica = state().processes.find((p) => p.role === 'backend' && p.id !== lead)!;
    await eventually('the replica in sync', async () => ((await fetch(`http://127.0.0.1:${replica.ports.http}/readyz`)).status === 200 ? true : undefined), 30_000);

    const folder = join(cwd, 'backups', 'g1');
    const made = JSON.parse((await ok('group', 'backup', 'g1', folder, '--json')).stdout) as { node: string; seq: string; bytes: string };
    assert.equal(made.node, replica.id, 'taken from the in-sync replica, not the primary');
    assert.ok(Number(made.seq) >= 20, `the copy's log position: ${made.seq}`);
    const manifest = JSON.parse(readFileSync(join(folder, 'mailgrid-backup.json'), 'utf8')) as { group: string; seq: number; parts: string[] };
    assert.deepEqual([manifest.group, manifest.seq, manifest.parts], ['g1', Number(made.seq), ['store']]);
    assert.ok(existsSync(join(folder, 'store', 'data.mdb')));
    // The folder is not overwritten, and a relative path means nothing on another host.
    assert.match((await cli('group', 'backup', 'g1', folder)).stderr, /is not empty/);
    assert.match((await cli('group', 'backup', 'g1', 'relative/path')).stderr, /absolute path/);

    await send(state().smtp, 10, 'after');
    // The replica's disk is lost: killed, its store replaced by the backup, started again.
    process.kill(replica.pid, 'SIGKILL');
    await eventually('the replica gone', async () => {
      try {
        process.kill(replica.pid, 0);
        return undefined;
      } catch {
        return true;
      }
    });
    rmSync(join(replica.dataDir!, 'store'), { recursive: true, force: true });
    cpSync(join(folder, 'store'), join(replica.dataDir!, 'store'), { recursive: true });
    await ok('cluster', 'start', replica.id);
    const restarted = proc(replica.id);
    await eventually('the restored replica in sync again', async () => ((await fetch(`http://127.0.0.1:${restarted.ports.http}/readyz`)).status === 200 ? true : undefined), 60_000);

    // The old primary leaves; the restored member takes over and has all 30.
    await ok('cluster', 'stop', lead);
    await eventually('the restored member elected', async () => ((await primary()) === replica.id ? true : undefined), 30_000);
    assert.equal(await eventually('the mailbox listed', () => messages()), 30);
  });
});

describe('backup and restore of a single node', () => {
  it('the copy has the store and the directory; a node started on it has every message and account', async () => {
    const node = await startNode();
    const folder = join(mkdtempSync(join(tmpdir(), 'mailgrid-backup-')), 'copy');
    try {
      assert.equal((await node.cli('domain', 'add', 'example.test')).code, 0);
      assert.equal((await node.cli('account', 'add', 'ann@example.test')).code, 0);
      await send(node.smtpPort, 3, 'single');
      const made = await node.cli('group', 'backup', 'default', folder);
      assert.equal(made.code, 0, made.stderr);
      assert.match(made.stdout, /log position 3 /);
      assert.match((await node.cli('group', 'backup', 'g9', `${folder}-2`)).stderr, /serves hosting group default, not g9/);
    } finally {
      await node.stop();
    }
    const dataDir = mkdtempSync(join(tmpdir(), 'mailgrid-restored-'));
    for (const part of ['store', 'directory']) cpSync(join(folder, part), join(dataDir, part), { recursive: true });
    const restored = await startNode({ dataDir });
    try {
      const list = await restored.cli('mailbox', 'list', 'ann@example.test', '--json');
      assert.equal(list.code, 0, list.stderr);
      assert.equal((JSON.parse(list.stdout) as unknown[]).length, 3);
    } finally {
      await restored.stop();
    }
  });
});
