import type { Logger, Service } from '@mailgrid/core';
import type { HostingGroups, Primary } from '@mailgrid/directory';
import type { Etcd3, IKeyValue } from 'etcd3';
import { z } from 'zod';
import type { Keys } from './keys.js';
import { jsonValue, PrefixWatch } from './prefix-watch.js';

const leaderValue = z.looseObject({ id: z.string().min(1), grpc: z.string().min(1) });
const inSyncValue = z.looseObject({ members: z.array(z.string()) });
const statusValue = z.looseObject({
  leader: z.string(),
  epoch: z.number(),
  inSync: z.array(z.string()),
  lag: z.record(z.string(), z.number()),
  seq: z.number(),
  lastFailoverAt: z.number().optional(),
});

export type GroupStatus = z.infer<typeof statusValue>;

/** One hosting group as etcd has it. */
export interface GroupView {
  name: string;
  /** The elected primary; its epoch is the create revision of the election key. */
  leader?: { id: string; address: string; epoch: number };
  /** The members that may be elected, and the key's mod revision (a campaign is guarded by it; 0: none yet). */
  inSync?: string[];
  inSyncRevision: number;
  status?: GroupStatus;
}

/**
 * The hosting groups under `groups/` (what exists, who is elected, the in-sync set and the
 * primary's figures), kept by one watch. Frontends route by it; backends campaign and
 * follow by it; a leader change is a `change` event.
 */
export class HostingGroupsWatch extends PrefixWatch implements HostingGroups, Service {
  private readonly groups = new Map<string, GroupView>();
  /** Groups that elected a primary in the batch being applied. */
  private readonly elected = new Set<string>();

  constructor(client: Etcd3, private readonly keys: Keys, log: Logger) {
    const view = (name: string) => {
      let g = this.groups.get(name);
      if (!g) this.groups.set(name, (g = { name, inSyncRevision: 0 }));
      return g;
    };
    const parse = (kv: IKeyValue, removed: boolean) => {
      const [name, field] = kv.key.toString().slice(keys.groups.length).split('/');
      const g = view(name);
      if (field === undefined) {
        if (removed) this.groups.delete(name);
      } else if (field === 'election') {
        if (removed) g.leader = undefined;
        else {
          const v = jsonValue(leaderValue, kv);
          g.leader = { id: v.id, address: v.grpc, epoch: Number(kv.create_revision) };
          this.elected.add(name);
        }
      } else if (field === 'in-sync') {
        g.inSync = removed ? undefined : jsonValue(inSyncValue, kv).members;
        g.inSyncRevision = removed ? 0 : Number(kv.mod_revision);
      } else if (field === 'status') g.status = removed ? undefined : jsonValue(statusValue, kv);
    };
    super({
      client,
      prefix: keys.groups,
      name: 'groups',
      log,
      auditEveryMs: 3_000,
      handler: {
        reset: () => this.groups.clear(),
        put: (kv) => parse(kv, false),
        delete: (kv) => parse(kv, true),
        invalid: (kv) => parse(kv, true),
      },
    });
    this.on('change', () => {
      for (const group of this.elected) this.emit('new-primary', group);
      this.elected.clear();
    });
  }

  onNewPrimary(listener: (group: string) => void): void {
    this.on('new-primary', listener);
  }

  async primary(group: string): Promise<Primary | undefined> {
    const leader = this.groups.get(group)?.leader;
    return leader && { address: leader.address, epoch: leader.epoch };
  }

  group(name: string): GroupView | undefined {
    return this.groups.get(name);
  }

  list(): GroupView[] {
    return [...this.groups.values()].sort((a, b) => a.name.localeCompare(b.name));
  }
}
