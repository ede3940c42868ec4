import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectEtcd, EtcdDirectory, Keys } from '@mailgrid/cluster';
import { LmdbMailStore } from '@mailgrid/store';
import { ACCESS_LISTENERS, freePort } from '@mailgrid/core';
import { cliPath, eventually, MailboxProbe, nodeLog, runCli, sendMail, SmtpTranscript, startTcpProxy } from '@mailgrid/testing';
import { pino } from 'pino';

interface Proc {
  id: string;
  role: string;
  group?: string;
  pid: number;
  ports: Record<string, number>;
  dataDir?: string;
}
interface State {
  dir: string;
  etcd: string;
  prefix: string;
  smtp: string;
  processes: Proc[];
}


function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

/** SIGKILL, and wait until the process is gone (or a zombie), as `cluster start` needs. */
async function killHard(pid: number): Promise<void> {
  process.kill(pid, 'SIGKILL');
  await eventually(`process ${pid} gone after SIGKILL`, async () => (alive(pid) ? undefined : true), 10_000);
}

/** One message with an X-Test-Id on its own connection; the reply to the final dot. */
const sendOne = (hostPort: string, rcpt: string, id: string, proxy?: string) =>
  sendMail(hostPort, { from: 'load@sender.test', to: [rcpt], data: `Subject: cluster\r\nX-Test-Id: ${id}\r\n\r\nbody of ${id}\r\n`, proxy });

async function rcptReply(hostPort: string, rcpt: string, proxy?: string): Promise<string> {
  const [host, port] = hostPort.split(':');
  const s = await SmtpTranscript.open(Number(port), host);
  try {
    if (proxy) s.write(proxy);
    await s.expect('220');
    await s.send('EHLO cluster.test', '250');
    await s.send('MAIL FROM:<probe@sender.test>', '250');
    s.write(`RCPT TO:<${rcpt}>\r\n`);
    return await s.reply();
  } finally {
    s.close();
  }
}

/** How many times each X-Test-Id is stored in these accounts' mailboxes. */
async function storedIds(probe: MailboxProbe, addresses: Iterable<string>): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  for (const address of addresses) {
    for (const m of await probe.list(address)) {
      const id = /X-Test-Id: (\S+)/.exec((await probe.fetch(address, m.uid)).toString())?.[1];
      if (id) seen.set(id, (seen.get(id) ?? 0) + 1);
    }
  }
  return seen;
}

describe('cluster: 2 frontends, 2 hosting groups, etcd and HAProxy as real processes', () => {
  const cwd = mkdtempSync(join(tmpdir(), 'mailgrid-cluster-test-'));
  let state: State;
  const cli = (...args: string[]) => runCli(args, {}, cwd);
  const proc = (id: string) => state.processes.find((p) => p.id === id)!;
  const readState = () => (state = JSON.parse(readFileSync(join(cwd, '.mailgrid', 'cluster.json'), 'utf8')));
  const accounts = Array.from({ length: 100 }, (_, i) => ({ address: `user${i}@example.test`, group: i % 2 ? 'g2' : 'g1' }));
  const acked = new Map<string, string>(); // test id → account

  before(async () => {
    // Quick retries, so a queued message is retried within the test.
    const up = await runCli(['cluster', 'up', '--frontends', '2', '--groups', '2'], { MAILGRID_QUEUE_MIN_RETRY_MS: '500', MAILGRID_QUEUE_MAX_RETRY_MS: '1000' }, cwd);
    assert.equal(up.code, 0, up.stderr);
    readState();
    assert.equal((await cli('domain', 'add', 'example.test')).code, 0);
    const client = connectEtcd(state.etcd);
    const directory = new EtcdDirectory(client, new Keys(state.prefix), pino({ level: 'silent' }));
    await Promise.all(accounts.map((a) => directory.addAccount(a.address, a.group)));
    client.close();
  });

  after(async () => {
    const down = await cli('cluster', 'down');
    assert.equal(down.code, 0, down.stderr);
  });

  it('lists every member and group', async () => {
    const status = JSON.parse((await cli('cluster', 'status', '--json')).stdout);
    assert.deepEqual(status.members.map((m: { id: string; status: string }) => `${m.id}:${m.status}`).sort(), [
      'be-1:up', 'be-2:up', 'etcd:running', 'fe-1:up', 'fe-2:up', 'haproxy:running',
    ]);
    assert.equal(status.smtp, state.smtp);
    const groups = JSON.parse((await cli('group', 'list', '--json')).stdout);
    assert.deepEqual(groups.map((g: { group: string; primary: string }) => `${g.group}:${g.primary}`), ['g1:be-1', 'g2:be-2']);
  });

  it('runs one gRPC port per member, advertised with the services it offers', async () => {
    const members = JSON.parse((await cli('member', 'list', '--json')).stdout) as { id: string; role: string; grpc: string; services: string[]; epoch: number }[];
    assert.deepEqual(members.map((m) => m.id).sort(), ['be-1', 'be-2', 'fe-1', 'fe-2']);
    for (const m of members) {
      const p = proc(m.id);
      assert.equal(m.grpc, `127.0.0.1:${p.ports.grpc}`, `${m.id} advertises its one gRPC port`);
      assert.deepEqual(m.services, m.role === 'frontend' ? ['Queue', 'Submit', 'QueueCopy'] : ['Delivery', 'Mailbox', 'Rules', 'Backup', 'Queue', 'Submit', 'Replication', 'AccountMove', 'QueueCopy'], `${m.id} services`);
      assert.ok(Number.isInteger(m.epoch) && m.epoch > 0, `${m.id} has an epoch`);
      assert.deepEqual(Object.keys(p.ports).sort(), m.role === 'frontend' ? ['grpc', 'http', ...ACCESS_LISTENERS.map((l) => l.name)].sort() : ['grpc', 'http'], `${m.id} listens on no other port`);
    }
  });

  it('delivers 1,000 messages through HAProxy, each stored in its own group and nowhere else', async () => {
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < 1000) {
          const i = next++;
          const account = accounts[i % accounts.length].address;
          const reply = await sendOne(state.smtp, account, `bulk-${i}`);
          assert.match(reply, /^250 2\.0\.0/);
          acked.set(`bulk-${i}`, account);
        }
      }),
    );
    const stores = { g1: new LmdbMailStore(join(proc('be-1').dataDir!, 'store'), { readOnly: true }), g2: new LmdbMailStore(join(proc('be-2').dataDir!, 'store'), { readOnly: true }) };
    try {
      let total = 0;
      for (const a of accounts) {
        const own = stores[a.group as 'g1' | 'g2'].list(a.address).length;
        const other = stores[a.group === 'g1' ? 'g2' : 'g1'].list(a.address).length;
        assert.equal(own, 10, `${a.address} in ${a.group}`);
        assert.equal(other, 0, `${a.address} must not be stored outside ${a.group}`);
        total += own;
      }
      assert.equal(total, 1000);
    } finally {
      await stores.g1.close();
      await stores.g2.close();
    }
  });

  it('accepts an account added with the CLI without restarting anything', async () => {
    assert.match(await rcptReply(state.smtp, 'newcomer@example.test'), /^550 5\.1\.1/);
    const t0 = Date.now();
    const add = await cli('account', 'add', 'newcomer@example.test', '--group', 'g2');
    assert.equal(add.code, 0, add.stderr);
    // Both frontends must know it: HAProxy may pick either.
    for (const fe of ['fe-1', 'fe-2']) {
      const header = 'PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n';
      await eventually(`${fe} accepts the new account`, async () =>
        /^250/.test(await sendOne(`127.0.0.1:${proc(fe).ports.smtp}`, 'newcomer@example.test', `new-${fe}`, header)) ? true : undefined,
      );
    }
    console.log(`# new account accepted by both frontends ${Date.now() - t0} ms after \`account add\` returned`);
  });

  it('places an account added without --group in the group with the fewest accounts on the site', async () => {
    const accounts = JSON.parse((await cli('account', 'list', '--json')).stdout) as { group: string }[];
    const count = (g: string) => accounts.filter((a) => a.group === g).length;
    const fewest = count('g1') <= count('g2') ? 'g1' : 'g2';
    const add = await cli('account', 'add', 'placed@example.test');
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, new RegExp(`to group ${fewest}`));
    const listed = JSON.parse((await cli('account', 'list', '--json')).stdout) as { address: string; group: string }[];
    assert.equal(listed.find((a) => a.address === 'placed@example.test')?.group, fewest);
  });

  it('imports accounts from JSON lines and CSV, reports bad lines by number, loads the good ones, and runs again safely', async () => {
    const file = join(cwd, 'accounts.txt');
    writeFileSync(
      file,
      [
        'address,group,hash',
        'imp1@example.test,g1',
        '{"address":"imp2@example.test","group":"g2","passwordHash":"{BLF-CRYPT}$2y$05$ssvANxgzi6kxrnAT.LlkPOGtamuH6VkzZecX6nHX8UZCW04/JIn8u"}',
        'not-an-address,g1',
        'imp3@nowhere.test,g1',
        'imp4@example.test,g9',
        '{"address":"imp5@example.test","group":"g1","passwordHash":"plain"}',
        'imp1@example.test,g1',
        'imp6@example.test,g2,$6$YubDpBpZBFX7V464$2xc4zmX30wKll8d9HW2YipE3trYNZpFakijU8aLmv5zSpXBXlvb3YXh.kPDqaz7IF0D1IH/bCSUZTG28qgpK20',
      ].join('\n') + '\n',
    );
    const first = await cli('account', 'import', file);
    assert.equal(first.code, 1, 'bad lines make it exit non-zero');
    assert.match(first.stdout, /^3 accounts loaded, 0 already there, 5 bad lines/);
    const bad = first.stderr.trim().split('\n').flatMap((l) => /accounts\.txt:(\d+):/.exec(l)?.slice(1).map(Number) ?? []);
    assert.deepEqual(bad, [4, 5, 6, 7, 8]);
    const listed = JSON.parse((await cli('account', 'list', '--json')).stdout) as { address: string; group: string }[];
    const groupOf = (a: string) => listed.find((x) => x.address === a)?.group;
    assert.deepEqual(['imp1', 'imp2', 'imp6'].map((l) => groupOf(`${l}@example.test`)), ['g1', 'g2', 'g2']);
    assert.equal(groupOf('imp5@example.test'), undefined);
    assert.match(await rcptReply(state.smtp, 'imp6@example.test'), /^250/);
    const again = await cli('account', 'import', file);
    assert.match(again.stdout, /^0 accounts loaded, 3 already there, 5 bad lines/);
  });

  it('delivers mail for an alias to its account in the account\'s group', async () => {
    const add = await cli('alias', 'add', 'sales@example.test', 'newcomer@example.test');
    assert.equal(add.code, 0, add.stderr);
    await eventually('the alias is accepted', async () => (/^250/.test(await sendOne(state.smtp, 'sales@example.test', 'via-alias')) ? true : undefined));
    const probe = new MailboxProbe(`127.0.0.1:${proc('be-2').ports.grpc}`);
    try {
      assert.equal((await storedIds(probe, ['newcomer@example.test'])).get('via-alias'), 1);
    } finally {
      probe.close();
    }
  });

  it('applies a node setting edited in etcd live', async () => {
    const fe1 = `127.0.0.1:${proc('fe-1').ports.smtp}`;
    const ehloSize = async () => {
      const s = await SmtpTranscript.open(Number(fe1.split(':')[1]));
      try {
        s.write('PROXY TCP4 192.0.2.8 127.0.0.1 40001 25\r\n');
        await s.expect('220');
        return /SIZE (\d+)/.exec(await s.send('EHLO settings.test', '250'))?.[1];
      } finally {
        s.close();
      }
    };
    assert.equal(await ehloSize(), String(25 * 1024 * 1024));
    const set = await cli('node', 'set', 'fe-1', 'smtp.maxMessageBytes', '2048');
    assert.equal(set.code, 0, set.stderr);
    await eventually('fe-1 advertises SIZE 2048', async () => ((await ehloSize()) === '2048' ? true : undefined));
    const bad = await cli('node', 'set', 'fe-1', 'smtp.maxMessageBytes', 'lots');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /not a number/);
    assert.equal((await cli('node', 'unset', 'fe-1', 'smtp.maxMessageBytes')).code, 0);
    await eventually('fe-1 back to the default size', async () => ((await ehloSize()) === String(25 * 1024 * 1024) ? true : undefined));
  });

  it('skips a malformed directory value written by hand, and serves the keys around it and after it', async () => {
    const client = connectEtcd(state.etcd);
    const keys = new Keys(state.prefix);
    try {
      // As an operator's etcdctl typo would: not JSON, and JSON of the wrong shape.
      await client.put(keys.account('example.test', 'broken')).value('{not json');
      await client.put(keys.account('example.test', 'badgroup')).value('{"group": 5}');
      assert.equal((await cli('account', 'add', 'after-bad@example.test', '--group', 'g1')).code, 0);
      const header = 'PROXY TCP4 192.0.2.10 127.0.0.1 40003 25\r\n';
      const frontends = ['fe-1', 'fe-2'];
      for (const fe of frontends) {
        const at = `127.0.0.1:${proc(fe).ports.smtp}`;
        await eventually(`${fe} accepts the account added after the bad values`, async () =>
          /^250/.test(await sendOne(at, 'after-bad@example.test', `after-bad-${fe}`, header)) ? true : undefined,
        );
        assert.match(await sendOne(at, 'user1@example.test', `around-${fe}`, header), /^250/, 'an account next to them');
      }
      for (const bad of ['broken@example.test', 'badgroup@example.test']) assert.match(await rcptReply(state.smtp, bad), /^451 4\.4\.3 /, 'deferred, not bounced');
      for (const p of state.processes) assert.ok(alive(p.pid), `${p.id} still running`);
      // The same values met by the initial load of a node that starts now.
      assert.equal((await cli('cluster', 'stop', 'fe-2')).code, 0);
      assert.equal((await cli('cluster', 'start', 'fe-2')).code, 0);
      readState();
      const fe2 = `127.0.0.1:${proc('fe-2').ports.smtp}`;
      assert.match(await sendOne(fe2, 'after-bad@example.test', 'after-restart', header), /^250/);
      assert.match(await sendOne(fe2, 'user2@example.test', 'around-restart', header), /^250/);
      const log = readFileSync(join(state.dir, 'fe-2.log'), 'utf8');
      assert.match(log, /"event":"etcd\.bad-value"[^\n]*accounts\/example\.test\/broken/, 'the bad key is named in the log');
    } finally {
      await client.delete().key(keys.account('example.test', 'broken'));
      await client.delete().key(keys.account('example.test', 'badgroup'));
      client.close();
    }
  });

  it('defers mail for an account a lagging backend does not know yet (4xx, never 5xx) and delivers it once it catches up', async () => {
    // A third hosting group whose backend reaches etcd through a proxy the test can stall.
    const proxy = await startTcpProxy(state.etcd.replace('http://', ''));
    const [grpc, http] = [await freePort(), await freePort()];
    const dataDir = mkdtempSync(join(tmpdir(), 'mailgrid-be3-'));
    const out = openSync(join(state.dir, 'be-3.log'), 'a');
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MAILGRID_')));
    const be3 = spawn(process.execPath, [cliPath, 'backend'], {
      env: { ...env, MAILGRID_ETCD: `http://${proxy.address}`, MAILGRID_NODE_ID: 'be-3', MAILGRID_BACKEND_GROUP: 'g3', MAILGRID_GRPC_PORT: String(grpc), MAILGRID_HTTP_PORT: String(http), MAILGRID_DATA_DIR: dataDir },
      stdio: ['ignore', out, out],
    });
    closeSync(out);
    const probe = new MailboxProbe(`127.0.0.1:${grpc}`);
    try {
      await eventually('be-3 registers', async () => (JSON.parse((await cli('member', 'list', '--json')).stdout).some((m: { id: string }) => m.id === 'be-3') ? true : undefined), 20_000);
      proxy.pause();
      assert.equal((await cli('account', 'add', 'lagging@example.test', '--group', 'g3')).code, 0);
      for (const fe of ['fe-1', 'fe-2'])
        await eventually(`${fe} knows the new account`, async () =>
          /^250/.test(await rcptReply(`127.0.0.1:${proc(fe).ports.smtp}`, 'lagging@example.test', 'PROXY TCP4 192.0.2.11 127.0.0.1 40004 25\r\n')) ? true : undefined,
        );
      assert.match(await sendOne(state.smtp, 'lagging@example.test', 'lagging-1'), /^250 2\.0\.0 Ok: queued as /, 'accepted and queued, not refused');
      const queued = JSON.parse((await cli('queue', 'list', '--json')).stdout) as { recipients: { address: string; lastError: { code: number; enhanced: string } | null }[] }[];
      const entry = queued.flatMap((m) => m.recipients).find((r) => r.address === 'lagging@example.test');
      assert.equal(entry?.lastError?.code, 451, 'the backend answered 451');
      assert.equal(entry?.lastError?.enhanced, '4.4.3');
      proxy.resume();
      const seen = await eventually('delivered once be-3 catches up', async () => {
        const ids = await storedIds(probe, ['lagging@example.test']);
        return ids.get('lagging-1') ? ids : undefined;
      }, 20_000);
      assert.equal(seen.get('lagging-1'), 1, 'stored exactly once');
    } finally {
      probe.close();
      proxy.resume();
      be3.kill('SIGTERM');
      await new Promise((r) => be3.once('exit', r));
      await proxy.close();
    }
  });

  it('queues the recipients of a backend that is down and delivers them once when it returns', async () => {
    assert.equal((await cli('cluster', 'stop', 'be-2')).code, 0);
    const g2 = accounts.find((a) => a.group === 'g2')!.address;
    const g1 = accounts.find((a) => a.group === 'g1')!.address;
    for (let i = 0; i < 5; i++) assert.match(await sendOne(state.smtp, g2, `be2-down-${i}`), /^250 2\.0\.0 Ok: queued as /);
    assert.match(await sendOne(state.smtp, g1, 'be1-up'), /^250 2\.0\.0 Ok: stored as /);
    const queued = JSON.parse((await cli('queue', 'list', '--json')).stdout) as { id: string; recipients: { address: string; attempts: number }[] }[];
    assert.equal(queued.filter((m) => m.recipients.some((r) => r.address === g2)).length, 5);
    const start = await cli('cluster', 'start', 'be-2');
    assert.equal(start.code, 0, start.stderr);
    readState();
    const probe = new MailboxProbe(`127.0.0.1:${proc('be-2').ports.grpc}`);
    try {
      const ids = await eventually('the queued messages arrive', async () => {
        const found: string[] = [];
        for (const m of await probe.list(g2)) {
          const id = /X-Test-Id: (be2-down-\d)/.exec((await probe.fetch(g2, m.uid)).toString())?.[1];
          if (id) found.push(id);
        }
        return found.length >= 5 ? found : undefined;
      });
      assert.deepEqual(ids.sort(), ['be2-down-0', 'be2-down-1', 'be2-down-2', 'be2-down-3', 'be2-down-4'], 'each exactly once');
    } finally {
      probe.close();
    }
    await eventually('queues empty', async () => (JSON.parse((await cli('queue', 'list', '--json')).stdout).length === 0 ? true : undefined));
  });

  it('routes around a frontend killed with SIGKILL and loses no acknowledged message', async () => {
    const ids: [string, string][] = [];
    let killedAt = -1;
    let n = 0;
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        while (ids.length < 300) {
          const id = `kill-${w}-${n++}`;
          const account = accounts[n % accounts.length].address;
          try {
            if (/^250/.test(await sendOne(state.smtp, account, id))) ids.push([id, account]);
          } catch {
            // the connection was on the killed frontend: no 250, nothing promised
          }
          if (ids.length >= 100 && killedAt < 0) {
            killedAt = ids.length;
            await killHard(proc('fe-1').pid);
          }
        }
      }),
    );
    assert.ok(ids.length - killedAt >= 150, 'messages keep being accepted after the kill');
    const probes = { g1: new MailboxProbe(`127.0.0.1:${proc('be-1').ports.grpc}`), g2: new MailboxProbe(`127.0.0.1:${proc('be-2').ports.grpc}`) };
    try {
      const stored = new Set<string>();
      const touched = new Set(ids.map(([, a]) => a));
      for (const address of touched) {
        const probe = probes[accounts.find((a) => a.address === address)!.group as 'g1' | 'g2'];
        for (const m of await probe.list(address)) {
          const id = /X-Test-Id: (\S+)/.exec((await probe.fetch(address, m.uid)).toString())?.[1];
          if (id) stored.add(id);
        }
      }
      const lost = ids.filter(([id]) => !stored.has(id)).map(([id]) => id);
      assert.deepEqual(lost, []);
    } finally {
      probes.g1.close();
      probes.g2.close();
    }
    const start = await cli('cluster', 'start', 'fe-1');
    assert.equal(start.code, 0, start.stderr);
    readState();
  });

  it('queues what a backend killed with SIGKILL under load did not store, and delivers each exactly once', async () => {
    const g1 = accounts.filter((a) => a.group === 'g1').map((a) => a.address);
    const acked: string[] = [];
    let queued = 0;
    let n = 0;
    let killed = false;
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        while (acked.length < 150) {
          const id = `bekill-${w}-${n++}`;
          const reply = await sendOne(state.smtp, g1[n % g1.length], id);
          assert.match(reply, /^250 2\.0\.0 Ok: (stored|queued) as /, 'stored or queued, never refused');
          if (reply.includes('queued')) queued++;
          acked.push(id);
          if (acked.length >= 50 && !killed) {
            killed = true;
            await killHard(proc('be-1').pid);
          }
        }
      }),
    );
    assert.ok(queued > 0, 'some deliveries were queued while be-1 was down');
    const start = await cli('cluster', 'start', 'be-1');
    assert.equal(start.code, 0, start.stderr);
    readState();
    await eventually('queues empty', async () => (JSON.parse((await cli('queue', 'list', '--json')).stdout).length === 0 ? true : undefined), 30_000);
    const probe = new MailboxProbe(`127.0.0.1:${proc('be-1').ports.grpc}`);
    try {
      const seen = await storedIds(probe, g1);
      assert.deepEqual(acked.filter((id) => seen.get(id) !== 1).map((id) => `${id}:${seen.get(id) ?? 0}`), [], 'every acknowledged message stored exactly once');
    } finally {
      probe.close();
    }
  });

  it('delivers everything a frontend killed with SIGKILL held in its queue once it restarts', async () => {
    const g1 = accounts.filter((a) => a.group === 'g1').map((a) => a.address);
    assert.equal((await cli('cluster', 'stop', 'be-1')).code, 0);
    const fe1 = `127.0.0.1:${proc('fe-1').ports.smtp}`;
    const ids = Array.from({ length: 30 }, (_, i) => `held-${i}`);
    for (const [i, id] of ids.entries()) {
      assert.match(await sendOne(fe1, g1[i % g1.length], id, 'PROXY TCP4 192.0.2.9 127.0.0.1 40002 25\r\n'), /^250 2\.0\.0 Ok: queued as /);
    }
    await killHard(proc('fe-1').pid);
    assert.equal((await cli('cluster', 'start', 'be-1')).code, 0);
    assert.equal((await cli('cluster', 'start', 'fe-1')).code, 0);
    readState();
    await eventually('fe-1 drains its queue', async () => (JSON.parse((await cli('queue', 'list', '--json', '--node', 'fe-1')).stdout).length === 0 ? true : undefined), 30_000);
    const probe = new MailboxProbe(`127.0.0.1:${proc('be-1').ports.grpc}`);
    try {
      const seen = await storedIds(probe, g1);
      assert.deepEqual(ids.filter((id) => seen.get(id) !== 1), []);
    } finally {
      probe.close();
    }
  });

  it('keeps accepting known accounts while etcd is down, answers 451 for new lookups, and recovers', async () => {
    const frontends = ['fe-1', 'fe-2'];
    const primaries = (JSON.parse((await cli('group', 'list', '--json')).stdout) as { primary: string }[]).map((g) => g.primary).filter((id) => id !== '-');
    const known = accounts[3].address;
    const header = 'PROXY TCP4 192.0.2.12 127.0.0.1 40005 25\r\n';
    let round = 0;
    /** Each frontend takes mail for a known account; once its directory watch is cut, an address it does not know is a 451. */
    const takesMail = async (cut: boolean) => {
      for (const fe of frontends) {
        const at = `127.0.0.1:${proc(fe).ports.smtp}`;
        assert.match(await sendOne(at, known, `etcd-down-${fe}-${round}`, header), /^250/, `${fe}: known account accepted with etcd down (round ${round})`);
        if (cut) assert.match(await rcptReply(at, `stranger${round}@example.test`, header), /^451 4\.4\.3/, `${fe}: an unknown address deferred (round ${round})`);
      }
      round++;
    };
    /** Whether each of `ids`, as running now, logged `event` since etcd went down. */
    const allLogged = (ids: string[], event: string, extra: (l: Record<string, unknown>) => boolean = () => true) =>
      ids.every((id) => nodeLog(state.dir, id).some((l) => l.event === event && l.pid === proc(id).pid && Date.parse(String(l.time)) >= downSince && extra(l)));
    const downSince = Date.now();
    assert.equal((await cli('cluster', 'stop', 'etcd')).code, 0);
    await takesMail(false);
    // The state changes etcd's absence brings, each in turn: the mail keeps being taken through all of them.
    await eventually('the frontends see their directory watch cut', async () => (allLogged(frontends, 'etcd.watch-disconnected', (l) => l.watch === 'directory') ? true : undefined));
    await takesMail(true);
    await eventually(`the primaries (${primaries}) stop taking writes`, async () => (allLogged(primaries, 'leadership.demoted') ? true : undefined), 30_000);
    await takesMail(true);
    await eventually('every member gives its etcd lease up as lost', async () => (allLogged([...frontends, ...primaries], 'membership.lease-lost') ? true : undefined), 30_000);
    await takesMail(true);
    for (const p of state.processes.filter((x) => x.role !== 'etcd')) assert.doesNotThrow(() => process.kill(p.pid, 0), `${p.id} still running`);
    const start = await cli('cluster', 'start', 'etcd');
    assert.equal(start.code, 0, start.stderr);
    readState();
    await eventually('lookups answered again', async () => (/^550 5\.1\.1/.test(await rcptReply(state.smtp, 'stranger@example.test')) ? true : undefined), 20_000);
    assert.equal((await cli('account', 'add', 'after-etcd@example.test', '--group', 'g1')).code, 0);
    await eventually('account added after recovery accepted', async () =>
      /^250/.test(await sendOne(state.smtp, 'after-etcd@example.test', 'after-etcd')) ? true : undefined,
    );
  });
});
