import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectEtcd, Keys } from '@mailgrid/cluster';
import { LmdbMailStore } from '@mailgrid/store';
import { eventually, ImapTranscript, MailboxProbe, runCli, sendMail, SmtpLoad, clusterFolder } from '@mailgrid/testing';

// Account and domain moves between hosting groups, in a cluster of real processes (etcd,
// HAProxy, a frontend, two groups of a primary and a replica): a move under SMTP load, a
// move interrupted after its mark (resumed, or aborted), a domain move. Every acknowledged
// message must end up in the account's new group exactly once, and nowhere else.

interface GroupRow {
  group: string;
  primary: string;
  address: string;
  epoch: number;
}

const RULES = 'require "fileinto";\nif header :contains "subject" "pre-" { fileinto "Pre"; }\n';

describe('account moves between hosting groups', () => {
  const { cwd, cli, ok, state } = clusterFolder('move-test');
  const primaryOf = async (group: string) => (JSON.parse((await ok('group', 'list', '--json')).stdout) as GroupRow[]).find((g) => g.group === group)!;
  const groupOf = async (account: string) => {
    const rows = JSON.parse((await ok('account', 'list', '--json')).stdout) as { address: string; group: string; move?: string }[];
    return rows.find((r) => r.address === account);
  };
  const queuesEmpty = () => eventually('the frontend queue is empty', async () => (JSON.parse((await cli('queue', 'list', '--json')).stdout).length === 0 ? true : undefined), 60_000);
  /** The X-Test-Ids stored in an account at its group's primary, with how often each is there. */
  const stored = async (group: string, account: string, folders = ['']) => {
    const probe = new MailboxProbe((await primaryOf(group)).address);
    try {
      return await probe.testIds([account], folders);
    } finally {
      probe.close();
    }
  };
  const exactlyOnce = (seen: Map<string, number>, acked: string[], where: string) => {
    assert.deepEqual(acked.filter((id) => !seen.has(id)), [], `acknowledged but not in ${where}`);
    assert.deepEqual([...seen].filter(([, n]) => n > 1).map(([id]) => id), [], `stored more than once in ${where}`);
  };
  /** A member's store, opened beside the running process (LMDB allows readers from other processes). */
  const withStore = async <T>(id: string, work: (s: LmdbMailStore) => T): Promise<T> => {
    const s = new LmdbMailStore(join(state().processes.find((p) => p.id === id)!.dataDir!, 'store'), { readOnly: true });
    try {
      return work(s);
    } finally {
      await s.close();
    }
  };
  /** Leaves an account as a `move` interrupted after its mark leaves it. */
  const markMoving = async (account: string, from: string, to: string) => {
    const client = connectEtcd(state().etcd);
    try {
      const [local, domain] = account.split('@');
      await client.put(new Keys(state().prefix).account(domain, local)).value(JSON.stringify({ group: from, moving: { to } }));
    } finally {
      client.close();
    }
  };
  const send = async (to: string, id: string) => assert.match(await sendMail(state().smtp, { to: [to], data: `Subject: ${id}\r\nX-Test-Id: ${id}\r\n\r\nhi\r\n` }), /^250 /);

  before(async () => {
    const env = { MAILGRID_QUEUE_MIN_RETRY_MS: '300', MAILGRID_QUEUE_MAX_RETRY_MS: '1000' };
    const up = await runCli(['cluster', 'up', '--frontends', '1', '--groups', '2', '--replicas', '1'], env, cwd);
    assert.equal(up.code, 0, up.stderr);
    await ok('domain', 'add', 'example.test');
    for (const a of ['mover', 'stay', 'pending', 'undo']) await ok('account', 'add', `${a}@example.test`, '--group', 'g1');
  });
  after(async () => {
    await cli('cluster', 'down');
  });

  it('moves an account under load with its folders and rules: every acknowledged message is in the new group once, and the old copy is gone', async (t) => {
    const rules = join(cwd, 'mover.sieve');
    writeFileSync(rules, RULES);
    await ok('rules', 'set', 'mover@example.test', rules);
    const early = Array.from({ length: 5 }, (_, i) => `pre-${i}`);
    for (const id of early) await send('mover@example.test', id);

    const load = new SmtpLoad(state().smtp, 'move', ['mover@example.test', 'stay@example.test']);
    t.after(() => load.stop());
    // Mail for the account is flowing when it moves, and goes on after.
    await load.acknowledged(10, 'mover@example.test');
    const moved = JSON.parse((await ok('account', 'move', 'mover@example.test', '--to', 'g2', '--json')).stdout);
    assert.equal(moved.from, 'g1');
    assert.equal(moved.to, 'g2');
    assert.ok(moved.messages >= early.length, `${moved.messages} messages copied`);
    process.stdout.write(`# moved ${moved.messages} messages (${moved.bytes} bytes) under load in ${moved.ms} ms\n`);
    await load.acknowledged(load.count('mover@example.test') + 10, 'mover@example.test');
    await load.stop();
    await queuesEmpty();

    assert.deepEqual(await groupOf('mover@example.test'), { address: 'mover@example.test', group: 'g2' });
    const ackedTo = (account: string) => [...load.acked].filter(([, a]) => a === account).map(([id]) => id);
    assert.ok(ackedTo('mover@example.test').length > 0);
    exactlyOnce(await stored('g2', 'mover@example.test', ['', 'Pre']), [...early, ...ackedTo('mover@example.test')], 'g2');
    exactlyOnce(await stored('g1', 'stay@example.test'), ackedTo('stay@example.test'), 'g1');
    assert.deepEqual([...(await stored('g2', 'mover@example.test', ['Pre'])).keys()].sort(), early, 'the folder came along');
    assert.equal((await ok('rules', 'get', 'mover@example.test')).stdout.trim(), RULES.trim(), 'the rules came along');

    // The old group keeps nothing of it; the new group's replica has it all.
    assert.deepEqual(await withStore('be-1', (s) => [...s.list('mover@example.test'), ...s.list('mover@example.test', 'Pre')]), []);
    const atPrimary = await withStore('be-2', (s) => s.list('mover@example.test').length);
    assert.equal(await withStore('be-2-r1', (s) => s.list('mover@example.test').length), atPrimary);
  });

  it('an IMAP session across a move: writes get [UNAVAILABLE] while it moves and the session ends after; at the new group the same UIDVALIDITY, uids and mod-sequences, VANISHED exact', async () => {
    // 'secret', hashed by Dovecot (`doveadm pw -s BLF-CRYPT`): logins are checked by the account's group.
    const file = join(cwd, 'reader.jsonl');
    writeFileSync(file, JSON.stringify({ address: 'reader@example.test', group: 'g1', passwordHash: '{BLF-CRYPT}$2y$05$ssvANxgzi6kxrnAT.LlkPOGtamuH6VkzZecX6nHX8UZCW04/JIn8u' }) + '\n');
    await ok('account', 'import', file);
    for (const id of ['r1', 'r2', 'r3']) await send('reader@example.test', id);
    const imaps = () => state().processes.find((p) => p.role === 'haproxy')!.ports.imaps;
    /** A session through the balancer, logged in with QRESYNC on. */
    const session = async () => {
      const s = await ImapTranscript.open(imaps(), { tls: true });
      const login = await s.login('reader@example.test', 'secret', '');
      if (!login.tagged.startsWith('OK')) {
        s.close();
        return undefined;
      }
      await s.run('ENABLE QRESYNC');
      return s;
    };
    const first = await eventually('a login with the imported hash', session, 30_000);
    const selected = (await first.run('SELECT INBOX')).untagged.join('\n');
    const uidValidity = Number(/UIDVALIDITY (\d+)/.exec(selected)![1]);
    const before = Number(/HIGHESTMODSEQ (\d+)/.exec(selected)![1]);
    assert.match((await first.run('UID SEARCH ALL')).untagged.join('\n'), /^SEARCH 1 2 3$/m, 'the three messages, delivered by SMTP');
    await first.run('UID STORE 1 +FLAGS.SILENT (\\Deleted)');
    assert.ok((await first.run('UID EXPUNGE 1')).untagged.includes('VANISHED 1'));
    const expunged = Number(/HIGHESTMODSEQ (\d+)/.exec((await first.run('STATUS INBOX (HIGHESTMODSEQ)')).untagged.join())![1]);
    assert.ok(expunged > before);

    // Marked as moving: reads go on, writes are refused for now.
    await markMoving('reader@example.test', 'g1', 'g2');
    const refused = await eventually('a write refused while the account moves', async () => {
      const r = await first.run('UID STORE 2 +FLAGS (\\Flagged)', null);
      return r.tagged.startsWith('NO') ? r.tagged : undefined;
    });
    assert.match(refused, /^NO \[UNAVAILABLE\]/);
    assert.match((await first.run('UID FETCH 2 (FLAGS)')).untagged.join('\n'), /UID 2 FLAGS \(\)/);

    assert.equal(JSON.parse((await ok('account', 'move', 'reader@example.test', '--resume', '--json')).stdout).done, 'resumed');
    // The old group lets the session go: it is told, and closed.
    await eventually('the session told to go', async () => {
      try {
        return /^\* BYE /.test(await first.line(1_000)) ? true : undefined;
      } catch {
        return undefined;
      }
    });
    await first.closed();

    const next = (await eventually('a session at the new group', session, 30_000))!;
    const again = (await next.run(`SELECT INBOX (QRESYNC (${uidValidity} ${before}))`)).untagged.join('\n');
    assert.equal(Number(/UIDVALIDITY (\d+)/.exec(again)![1]), uidValidity, 'UIDVALIDITY kept');
    assert.ok(Number(/HIGHESTMODSEQ (\d+)/.exec(again)![1]) >= expunged, 'HIGHESTMODSEQ never lower');
    assert.match(again, /^VANISHED \(EARLIER\) 1$/m, 'the expunge told exactly');
    assert.match((await next.run('UID SEARCH ALL')).untagged.join('\n'), /^SEARCH 2 3$/m);
    await send('reader@example.test', 'r4');
    await eventually('the new message seen', async () => ((await next.run('NOOP')).untagged.some((l) => /^3 EXISTS$/.test(l)) ? true : undefined));
    assert.match((await next.run('UID SEARCH ALL')).untagged.join('\n'), /^SEARCH 2 3 4$/m, 'no uid given twice');
    await next.run('LOGOUT');
    next.close();
  });

  it('an interrupted move defers the mail and says so; --resume finishes it and the waiting mail lands once in the new group', async () => {
    await markMoving('pending@example.test', 'g1', 'g2');
    assert.equal((await groupOf('pending@example.test'))?.move, 'to g2');
    await send('pending@example.test', 'waiting-1');
    type Queued = { recipients: { address: string; lastError?: { code: number; text: string } }[] };
    const waiting = await eventually('a delivery to pending@ tried and deferred', async () =>
      (JSON.parse((await ok('queue', 'list', '--json')).stdout) as Queued[]).flatMap((m) => m.recipients).find((r) => r.address === 'pending@example.test' && r.lastError),
    );
    assert.match(`${waiting.lastError!.code} ${waiting.lastError!.text}`, /^451 .*being moved/, 'it waits in the queue, and says why');

    const again = await cli('account', 'move', 'pending@example.test', '--to', 'g2');
    assert.equal(again.code, 1);
    assert.match(again.stderr, /under way.*--resume.*--abort/);
    const resumed = JSON.parse((await ok('account', 'move', 'pending@example.test', '--resume', '--json')).stdout);
    assert.equal(resumed.done, 'resumed');
    await queuesEmpty();
    assert.deepEqual(await groupOf('pending@example.test'), { address: 'pending@example.test', group: 'g2' });
    exactlyOnce(await stored('g2', 'pending@example.test'), ['waiting-1'], 'g2');
  });

  it('--abort undoes an interrupted move: the account stays where it was and its waiting mail is delivered there', async () => {
    await markMoving('undo@example.test', 'g1', 'g2');
    await send('undo@example.test', 'waiting-2');
    const aborted = JSON.parse((await ok('account', 'move', 'undo@example.test', '--abort', '--json')).stdout);
    assert.equal(aborted.done, 'aborted');
    await queuesEmpty();
    assert.deepEqual(await groupOf('undo@example.test'), { address: 'undo@example.test', group: 'g1' });
    exactlyOnce(await stored('g1', 'undo@example.test'), ['waiting-2'], 'g1');
    const none = await cli('account', 'move', 'undo@example.test', '--resume');
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no move of undo@example\.test is under way/);
  });

  it('domain move moves every account of the domain with its mail', async () => {
    await ok('domain', 'add', 'branch.test');
    for (const a of ['ann', 'bob']) {
      await ok('account', 'add', `${a}@branch.test`, '--group', 'g1');
      await send(`${a}@branch.test`, `branch-${a}`);
    }
    await ok('domain', 'move', 'branch.test', '--to', 'g2');
    for (const a of ['ann', 'bob']) {
      assert.equal((await groupOf(`${a}@branch.test`))?.group, 'g2');
      exactlyOnce(await stored('g2', `${a}@branch.test`), [`branch-${a}`], 'g2');
    }
  });

  it("a move whose target's primary dies fails cleanly, leaves the account where it was, and --resume finishes it on the new primary", async () => {
    await ok('account', 'add', 'late@example.test', '--group', 'g1');
    await send('late@example.test', 'before-failover');
    process.kill(state().processes.find((p) => p.id === 'be-2')!.pid, 'SIGKILL');
    // Within the dead primary's lease, etcd still names it: the copy cannot reach it.
    const failed = await cli('account', 'move', 'late@example.test', '--to', 'g2');
    assert.equal(failed.code, 1, failed.stdout);
    assert.match(failed.stderr, /stays in g1.*--resume/s);
    assert.equal((await groupOf('late@example.test'))?.group, 'g1');
    await send('late@example.test', 'during-failover');
    await eventually('the move finished on the new primary', async () => ((await cli('account', 'move', 'late@example.test', '--resume')).code === 0 ? true : undefined), 30_000);
    assert.equal((await primaryOf('g2')).primary, 'be-2-r1');
    await queuesEmpty();
    exactlyOnce(await stored('g2', 'late@example.test'), ['before-failover', 'during-failover'], 'g2');
    await ok('cluster', 'start', 'be-2');
  });
});
