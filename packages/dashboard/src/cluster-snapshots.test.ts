import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { ClusterSnapshots, type GroupEntry, type MemberEntry } from './cluster-snapshots.js';

const member = (m: Partial<MemberEntry> & Pick<MemberEntry, 'id' | 'role'>): MemberEntry => ({ site: 'main', state: 'up', startedAt: '2025-01-01T00:00:00Z', ...m });

describe('ClusterSnapshots', () => {
  const list = new EventEmitter() as EventEmitter & { live: MemberEntry[]; members(): MemberEntry[] };
  list.live = [
    member({ id: 'fe-1', role: 'frontend', submitMode: 'local-for-others', takes: true, partner: 'fe-2', copies: ['fe-2'] }),
    member({ id: 'fe-2', role: 'frontend', submitMode: 'local-for-others', takes: false, partner: 'fe-1', copies: [] }),
    member({ id: 'be-1', role: 'backend', group: 'g1', groupRole: 'primary', accepted: 0, delivered: 100, countedAt: 1_000, epoch: 7 }),
    member({ id: 'be-1-r1', role: 'backend', group: 'g1', groupRole: 'replica' }),
  ];
  list.members = () => list.live;
  const groups: GroupEntry[] = [
    {
      name: 'g1',
      leader: { id: 'be-1', epoch: 12 },
      inSync: ['be-1'],
      status: { epoch: 12, lag: { 'be-1-r1': 40 }, failovers: [{ at: 500, epoch: 12, to: 'be-1', from: 'be-0' }, { at: 100, epoch: 5, to: 'be-0' }] },
    },
    { name: 'g2', status: { epoch: 3, lag: { x: 1 } } },
  ];
  let own = { accepted: 10, delivered: 0 };
  const snapshots = new ClusterSnapshots({ node: 'fe-1', membership: list, groups: { list: () => groups }, takers: (ms) => ms.filter((m) => m.submitMode === 'local-for-others' && m.takes).map((m) => m.id), counters: () => own, describe: () => ({ queueDepth: 3 }) });

  it('lists members with health, groups with their current lag, takers, failovers newest first', () => {
    const v = snapshots.view(2_000);
    assert.deepEqual(v.members.map((m) => `${m.id}:${m.health}:${m.notes.join('/')}`), ['be-1:ok:', 'be-1-r1:warn:not in sync', 'fe-1:ok:', 'fe-2:warn:queue unprotected/queue full']);
    assert.equal(v.members.find((m) => m.id === 'fe-1')!.accepted, 10, 'its own counters are read live');
    assert.equal(v.members.find((m) => m.id === 'fe-1')!.queueDepth, 3, 'and its queue');
    assert.deepEqual(v.takers, ['fe-1']);
    assert.deepEqual(v.groups.map((g) => [g.name, g.primary, g.inSync, g.lag, g.members]), [
      ['g1', 'be-1', ['be-1'], { 'be-1-r1': 40 }, ['be-1', 'be-1-r1']],
      ['g2', undefined, [], {}, []],
    ]);
    assert.deepEqual(v.failovers.map((f) => `${f.group}:${f.from ?? '?'}>${f.to}@${f.epoch}`), ['g1:be-0>be-1@12', 'g1:?>be-0@5']);
  });

  it('shows a member that left as gone, then forgets it', () => {
    list.live = list.live.filter((m) => m.id !== 'be-1-r1');
    list.emit('change');
    const v = snapshots.view(3_000);
    const gone = v.members.find((m) => m.id === 'be-1-r1')!;
    assert.equal(gone.state, 'gone');
    assert.equal(gone.health, 'gone');
    assert.ok(gone.goneAt! <= 3_000);
    assert.equal(snapshots.view(gone.goneAt! + 11 * 60_000).members.find((m) => m.id === 'be-1-r1'), undefined);
  });

  it('samples throughput from its own counters and the published ones', () => {
    snapshots.sample(10_000);
    own = { accepted: 30, delivered: 0 };
    list.live = list.live.map((m) => (m.id === 'be-1' ? { ...m, delivered: 150, countedAt: 11_000 } : m));
    snapshots.sample(12_000);
    const last = snapshots.view(12_000).throughput.at(-1)!;
    assert.deepEqual(last, { at: 12_000, accepted: 10, delivered: 5 });
  });
});
