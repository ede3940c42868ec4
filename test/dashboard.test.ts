import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { repoRoot, runCli, sendMail, SmtpLoad, startNode } from '@mailgrid/testing';

interface State {
  etcd: string;
  smtp: string;
  adminToken: string;
  processes: { id: string; role: string; pid: number; ports: Record<string, number> }[];
}

/** Debian's chromium (`.ci/run` installs it), driven by playwright-core: no browser download. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(repoRoot, 'test', 'artifacts');

/** Waits (with a deadline) until the element's text matches; the error says what it showed last. */
async function waitText(page: Page, selector: string, pattern: RegExp, timeout = 30_000): Promise<string> {
  try {
    await page.waitForFunction(
      ([sel, source, flags]) => {
        const e = document.querySelector(sel);
        return Boolean(e) && new RegExp(source, flags).test(e!.textContent ?? '');
      },
      [selector, pattern.source, pattern.flags] as const,
      { timeout, polling: 200 },
    );
  } catch (err) {
    const shown = await page.locator(selector).first().textContent({ timeout: 1_000 }).catch(() => '(no such element)');
    throw new Error(`${selector} never matched ${pattern} within ${timeout} ms; it shows: ${JSON.stringify(shown)}`, { cause: err });
  }
  return (await page.locator(selector).first().textContent()) ?? '';
}

/** Waits until a number shown in the element is at least `min`. */
async function waitNumber(page: Page, selector: string, min: number, timeout = 30_000): Promise<number> {
  await page.waitForFunction(([sel, least]) => Number((document.querySelector(sel)?.textContent ?? '').replace(/,/g, '')) >= least, [selector, min] as const, {
    timeout,
    polling: 200,
  });
  return Number((await page.locator(selector).textContent())!.replace(/,/g, ''));
}

/** The page's document as the functions run in the browser use it (the test project has no DOM types). */
declare const document: { querySelector(selector: string): { textContent: string | null; getAttribute(name: string): string | null } | null };

const field = (member: string, name: string) => `#members tr[data-member="${member}"] td[data-field="${name}"]`;

describe('dashboard: a real browser on a running local cluster', () => {
  const cwd = mkdtempSync(join(tmpdir(), 'mailgrid-dashboard-test-'));
  const cli = (...args: string[]) => runCli(args, {}, cwd);
  let state: State;
  let browser: Browser;
  let page: Page;
  let adminPage: Page;
  let url: string;
  /** Mail from the throughput test on, one message at a time, so the chart has a line. */
  let load: SmtpLoad | undefined;

  before(async () => {
    const up = await cli('cluster', 'up', '--frontends', '2', '--groups', '1', '--replicas', '1');
    assert.equal(up.code, 0, up.stderr);
    state = JSON.parse(readFileSync(join(cwd, '.mailgrid', 'cluster.json'), 'utf8'));
    assert.equal((await cli('domain', 'add', 'example.test')).code, 0);
    assert.equal((await cli('account', 'add', 'alice@example.test', '--group', 'g1')).code, 0);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const printed = await cli('dashboard', '--no-open');
    assert.equal(printed.code, 0, printed.stderr);
    const fe1 = state.processes.find((p) => p.id === 'fe-1')!;
    assert.equal(printed.stdout.trim(), `http://127.0.0.1:${fe1.ports.http}/dashboard#token=${state.adminToken}`, 'the first frontend, with the cluster token');
    url = printed.stdout.trim().split('#')[0];
  });

  after(async () => {
    await load?.stop();
    await browser?.close();
    const down = await cli('cluster', 'down');
    assert.equal(down.code, 0, down.stderr);
    rmSync(cwd, { recursive: true, force: true });
  });

  it('shows every member with its role, the group with its primary and in-sync set, the queue takers', async () => {
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await waitText(page, '#status', /^live/);
    await waitText(page, '#node', /^fe-1$/);
    for (const [id, role, place] of [
      ['fe-1', 'frontend', ''],
      ['fe-2', 'frontend', ''],
      ['be-1', 'backend', 'primary'],
      ['be-1-r1', 'backend', 'replica'],
    ]) {
      await waitText(page, field(id, 'role'), new RegExp(`^${role}$`));
      await waitText(page, field(id, 'place'), new RegExp(`^${place}$`));
      await waitText(page, field(id, 'site'), /^main$/);
    }
    await waitText(page, field('be-1', 'group'), /^g1$/);
    await waitText(page, field('fe-1', 'submitMode'), /^local-for-others$/);
    await waitText(page, '#groups tr[data-group="g1"] td[data-field="primary"]', /^be-1$/);
    await waitText(page, '#groups tr[data-group="g1"] td[data-field="inSync"]', /^be-1, be-1-r1$/);
    await waitText(page, '#groups tr[data-group="g1"] td[data-field="members"]', /^be-1, be-1-r1$/);
    await waitText(page, '#takers', /fe-1.*fe-2/);
    await waitText(page, '#partners tr[data-owner="fe-1"] td[data-field="partner"]', /^\S+$/);
    await waitText(page, field('be-1-r1', 'health'), /^ok$/);
    assert.equal(await page.locator('#members tbody tr').count(), 4);
    assert.deepEqual(errors, [], 'no script error');
  });

  it('is read-only without the admin token: no edit control, the API refuses writes, a wrong token is refused', async () => {
    await waitText(page, '#admin-state', /^read-only$/);
    assert.equal(await page.locator('select[data-edit]').count(), 0);
    assert.equal(await page.locator('#settings').isHidden(), true);
    const change = JSON.stringify({ node: 'fe-2', key: 'submit.mode', value: 'local' });
    const post = (authorization?: string) =>
      fetch(`${new URL(url).origin}/api/settings`, { method: 'POST', headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) }, body: change });
    assert.equal((await post()).status, 401);
    assert.equal((await post('Bearer not-the-token')).status, 401);
    await page.fill('#token', 'not-the-token');
    await page.click('#login button');
    await waitText(page, '#message', /wrong admin token/);
    await waitText(page, '#admin-state', /^read-only$/);
    assert.equal(await page.locator('select[data-edit]').count(), 0);
    const members = JSON.parse((await cli('member', 'list', '--json')).stdout) as { id: string; submitMode: string }[];
    assert.equal(members.find((m) => m.id === 'fe-2')!.submitMode, 'local-for-others', 'nothing was written');
  });

  it('counts mail sent through HAProxy and draws it', async () => {
    for (let i = 0; i < 20; i++) assert.match(await sendMail(state.smtp, { to: ['alice@example.test'], data: `Subject: dashboard ${i}\r\n\r\nhello\r\n` }), /^250 /);
    load = new SmtpLoad(state.smtp, 'dashboard', ['alice@example.test'], 1);
    // fe-1 reads its own counters live; the others publish theirs every 10 s.
    assert.ok((await waitNumber(page, '#total-accepted', 20)) >= 20);
    assert.ok((await waitNumber(page, '#total-delivered', 20)) >= 20);
    // Delivered is counted where the delivery is made: the frontends, when the primary stored the message.
    assert.ok((await waitNumber(page, field('fe-1', 'delivered'), 1)) >= 1);
    await page.waitForFunction(() => Number(document.querySelector('#chart')?.getAttribute('data-peak')) > 0, undefined, { timeout: 30_000, polling: 200 });
    assert.ok((await page.locator('#chart polyline[data-series="accepted"]').getAttribute('points'))!.split(' ').length >= 2);
  });

  it('takes the admin token from the URL fragment and sets a member’s submit mode from the page', async () => {
    adminPage = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    await adminPage.goto(`${url}#token=${state.adminToken}`);
    await waitText(adminPage, '#admin-state', /^admin$/);
    assert.equal(new URL(adminPage.url()).hash, '', 'the token leaves the address bar');
    const mode = adminPage.locator('select[data-edit="submit.mode"][data-member="fe-2"]');
    await mode.waitFor({ timeout: 10_000 });
    assert.equal(await mode.inputValue(), 'local-for-others');
    await mode.selectOption('local');
    await waitText(adminPage, '#message', /fe-2: submit\.mode = "local"/);
    // fe-2 applies it and publishes its entry again: no longer a queue taker.
    await adminPage.waitForFunction(() => !document.querySelector('#takers li[data-taker="fe-2"]') && Boolean(document.querySelector('#takers li[data-taker="fe-1"]')), undefined, {
      timeout: 30_000,
      polling: 200,
    });
    const members = JSON.parse((await cli('member', 'list', '--json')).stdout) as { id: string; submitMode: string }[];
    assert.equal(members.find((m) => m.id === 'fe-2')!.submitMode, 'local');
    assert.equal(JSON.parse((await cli('node', 'get', 'fe-2', 'submit.mode', '--json')).stdout), 'local');

    // The general form: a value the config schema refuses, then back to the default.
    await adminPage.selectOption('#set-node', 'fe-2');
    await adminPage.selectOption('#set-key', 'submit.mode');
    await adminPage.fill('#set-value', 'sometimes');
    await adminPage.click('#settings-form button');
    await waitText(adminPage, '#message', /not set: submit\.mode: /);
    await adminPage.fill('#set-value', 'auto');
    await adminPage.click('#settings-form button');
    await waitText(adminPage, '#message', /fe-2: submit\.mode = "auto"/);
    await waitText(adminPage, '#takers', /fe-2/);
  });

  it('shows a primary killed with kill -9 gone, its replica elected, and the failover', async () => {
    const be1 = state.processes.find((p) => p.id === 'be-1')!;
    process.kill(be1.pid, 'SIGKILL');
    for (const p of [page, adminPage]) {
      // Its lease lapses after the TTL (5 s); the replica is elected and publishes the group's status.
      await waitText(p, field('be-1', 'health'), /^gone/);
      await waitText(p, '#groups tr[data-group="g1"] td[data-field="primary"]', /^be-1-r1$/);
      await waitText(p, '#failovers tr[data-group="g1"] td[data-field="from"]', /^be-1$/);
      await waitText(p, '#failovers tr[data-group="g1"] td[data-field="to"]', /^be-1-r1$/);
      await waitText(p, field('be-1-r1', 'place'), /^primary$/);
      await waitText(p, '#members-count', /3 live, 1 gone/);
    }
    assert.equal(await page.locator('#failovers tbody tr').count(), 1, 'the group’s first election is no failover');
    // Mail goes on to the new primary.
    const delivered = Number((await adminPage.locator('#total-delivered').textContent())!.replace(/,/g, ''));
    await waitNumber(adminPage, '#total-delivered', delivered + 1);
    assert.ok(load!.acked.size > 0);
    mkdirSync(ARTIFACTS, { recursive: true });
    // Kept for a look at what the test saw (docs/dashboard.png is one of these).
    await adminPage.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });
  });
});

describe('dashboard: a single node', () => {
  it('shows the node as the one member and primary of its group, and has no settings to set (501)', async () => {
    const node = await startNode({ env: { MAILGRID_HTTP_ADMIN_TOKEN: 'single-token', MAILGRID_NODE_ID: 'solo' } });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    try {
      const base = `http://127.0.0.1:${node.ports.http}`;
      const page = await browser.newPage();
      await page.goto(`${base}/dashboard#token=single-token`);
      await waitText(page, field('solo', 'role'), /^single$/);
      await waitText(page, field('solo', 'place'), /^primary$/);
      await waitText(page, field('solo', 'submitMode'), /^local$/);
      await waitText(page, '#groups tr[data-group="default"] td[data-field="primary"]', /^solo$/);
      await waitText(page, '#admin-state', /^admin$/);
      assert.equal(await page.locator('select[data-edit]').count(), 0, 'nothing to edit on a single node');
      assert.equal(await page.locator('#settings').isHidden(), true);
      const post = (authorization: string) =>
        fetch(`${base}/api/settings`, { method: 'POST', headers: { authorization }, body: JSON.stringify({ node: 'solo', key: 'submit.mode', value: 'remote' }) });
      assert.equal((await post('Bearer wrong')).status, 401);
      assert.equal((await post('Bearer single-token')).status, 501);
    } finally {
      await browser.close();
      await node.stop();
    }
  });
});
