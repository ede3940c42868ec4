import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { metrics } from '@mailgrid/core';
import { repoRoot } from '@mailgrid/testing';

// The alert rules and the Grafana dashboard in deploy/ against what the nodes serve and
// docs/metrics.md describes: promtool checks and unit-tests the rules, and every metric
// they name must exist and be documented, so a renamed metric cannot leave a silent alert.

const PROMETHEUS = join(repoRoot, 'deploy', 'prometheus');
const read = (...p: string[]) => readFileSync(join(repoRoot, ...p), 'utf8');

/** The series names a registry's metrics appear as (a histogram as its _bucket, _sum and _count). */
async function served(): Promise<Set<string>> {
  metrics.describeNode('alerts-test', 'single', 'main');
  const names = new Set<string>();
  for (const m of await metrics.registry.getMetricsAsJSON()) {
    names.add(m.name);
    if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m.name + s);
  }
  return names;
}

const named = (text: string) => new Set(text.match(/\b(?:mailgrid|process|nodejs)_[a-z0-9_]+/g) ?? []);

describe('alert rules and the Grafana dashboard', () => {
  it('promtool checks the rules and their unit tests pass', () => {
    const check = spawnSync('promtool', ['check', 'rules', 'alerts.yml'], { cwd: PROMETHEUS, encoding: 'utf8' });
    assert.equal(check.status, 0, check.stdout + check.stderr);
    const test = spawnSync('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: PROMETHEUS, encoding: 'utf8' });
    assert.equal(test.status, 0, test.stdout + test.stderr);
    // Each alert the issue names is there.
    const rules = read('deploy', 'prometheus', 'alerts.yml');
    for (const alert of ['MailgridQueueGrowing', 'MailgridReplicaOutOfSync', 'MailgridQueueUnprotected', 'MailgridLeaseFlapping', 'MailgridDiskGuardActive'])
      assert.match(rules, new RegExp(`alert: ${alert}\\b`));
  });

  it("every alert's runbook link names a section of docs/operations.md", () => {
    // GitHub's heading anchors: lower case, punctuation dropped, spaces as dashes.
    const slug = (h: string) => h.trim().toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-');
    const anchors = new Set(read('docs', 'operations.md').split('\n').filter((l) => l.startsWith('#')).map((l) => slug(l.replace(/^#+/, ''))));
    const links = [...read('deploy', 'prometheus', 'alerts.yml').matchAll(/runbook: docs\/operations\.md#([a-z0-9-]+)/g)].map((m) => m[1]);
    assert.ok(links.length >= 8);
    for (const a of links) assert.ok(anchors.has(a), `docs/operations.md has no section #${a}`);
  });

  it('every metric they use is served by a node and described in docs/metrics.md', async () => {
    const have = await served();
    const doc = read('docs', 'metrics.md');
    const dashboard = JSON.parse(read('deploy', 'grafana', 'mailgrid-dashboard.json')) as { panels: { targets?: { expr: string }[] }[] };
    const exprs = dashboard.panels.flatMap((p) => p.targets ?? []).map((t) => t.expr);
    assert.ok(exprs.length >= 15, 'the dashboard has its panels');
    const used = new Set([...named(read('deploy', 'prometheus', 'alerts.yml')), ...exprs.flatMap((e) => [...named(e)])]);
    for (const name of used) {
      assert.ok(have.has(name), `${name} is used in deploy/ but no node serves it`);
      const base = name.replace(/_(bucket|sum|count)$/, '');
      if (name.startsWith('mailgrid_')) assert.ok(doc.includes(`\`${have.has(base) ? base : name}\``), `${name} is not described in docs/metrics.md`);
    }
    // And the other way: every mailgrid metric a node serves is described.
    for (const name of have) if (name.startsWith('mailgrid_') && !/_(bucket|sum|count)$/.test(name)) assert.ok(doc.includes(`\`${name}\``), `${name} is served but not in docs/metrics.md`);
  });
});
