import type { Logger, Service } from '@mailgrid/core';
import type { HostingGroups, Primary } from '@mailgrid/directory';
import type { Etcd3, IKeyValue } from 'etcd3';
import { readPrefix } from './etcd.js';
import { z } from 'zod';
import type { Keys } from './keys.js';
import { jsonValue, PrefixWatch } from './prefix-watch.js';

const leaderValue = z.looseObject({ id: z.string().min(1), grpc: z.string().min(1) });
const inSyncValue = z.looseObject({ members: z.array(z.string()) });
const failoverValue = z.looseObject({ at: z.number(), epoch: z.number(), to: z.string(), from: z.string().optional() });
const statusValue = z.looseObject({
  leader: z.string(),
  epoch: z.number(),
  inSync: z.array(z.string()),
  lag: z.record(z.string(), z.number()),
  seq: z.number(),
  /** The group's last failovers, oldest first: each primary carries its predecessor's list over. A malformed list is dropped, not the status. */
  failovers: z.array(failoverValue).optional().catch(undefined),
});

export type GroupStatus = z.infer<typeof statusValue>;
export type Failover = z.infer<typeof failoverValue>;

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
 * The hosting groups as the keys under `groups/` describe them (what exists, who is elected,
 * the in-sync set, the primary's figures), built key by key: from a watch, or from one read.
 */
class GroupTable {
  readonly groups = new Map<string, GroupView>();
  /** Groups that elected a primary since the caller last looked. */
  readonly elected = new Set<string>();
  /** The epoch each group's primary was last seen with; kept across reloads (`groups` is not). */
  private readonly epochs = new Map<string, number>();

  constructor(private readonly prefix: string) {}

  /** Applies one key; throws when its value does not parse (the key is then `remove`d). */
  put(kv: IKeyValue): void {
    this.apply(kv, false);
  }

  remove(kv: IKeyValue): void {
    this.apply(kv, true);
  }

  private apply(kv: IKeyValue, removed: boolean): void {
    const [name, field] = kv.key.toString().slice(this.prefix.length).split('/');
    if (field === undefined) {
      if (removed) this.groups.delete(name);
      else this.view(name);
      return;
    }
    const g = this.groups.get(name) ?? (removed ? undefined : this.view(name));
    if (!g) return;
    if (field === 'election') {
      if (removed) g.leader = undefined;
      else {
        const v = jsonValue(leaderValue, kv);
        g.leader = { id: v.id, address: v.grpc, epoch: Number(kv.create_revision) };
        // A reload puts every election key again: only an epoch not seen before is a new primary.
        if (this.epochs.get(name) !== g.leader.epoch) this.elected.add(name);
        this.epochs.set(name, g.leader.epoch);
      }
    } else if (field === 'in-sync') {
      g.inSync = removed ? undefined : jsonValue(inSyncValue, kv).members;
      g.inSyncRevision = removed ? 0 : Number(kv.mod_revision);
    } else if (field === 'status') g.status = removed ? undefined : jsonValue(statusValue, kv);
  }

  private view(name: string): GroupView {
    let g = this.groups.get(name);
    if (!g) this.groups.set(name, (g = { name, inSyncRevision: 0 }));
    return g;
  }

  list(): GroupView[] {
    return [...this.groups.values()].sort((a, b) => a.name.localeCompare(b.name));
  }
}

/** The hosting groups as etcd has them now, in one read (the CLI); a value that does not parse is left out. */
export async function readGroups(client: Etcd3, keys: Keys): Promise<GroupView[]> {
  const table = new GroupTable(keys.groups);
  await readPrefix(client, keys.groups, (kv) => {
    try {
      table.put(kv);
    } catch {
      table.remove(kv);
    }
  });
  return table.list();
}

/**
 * The hosting groups kept current by one watch of `groups/` (audited: a small prefix).
 * Frontends route by it; backends campaign and follow by it; a newly elected primary is a
 * `new-primary` event.
 */
export class HostingGroupsWatch extends PrefixWatch implements HostingGroups, Service {
  private readonly table: GroupTable;

  constructor(client: Etcd3, keys: Keys, log: Logger) {
    const table = new GroupTable(keys.groups);
    super({
      client,
      prefix: keys.groups,
      name: 'groups',
      log,
      auditEveryMs: 3_000,
      handler: {
        reset: () => table.groups.clear(),
        put: (kv) => table.put(kv),
        delete: (kv) => table.remove(kv),
        invalid: (kv) => table.remove(kv),
      },
    });
    this.table = table;
    this.on('change', () => {
      for (const group of table.elected) this.emit('new-primary', group);
      table.elected.clear();
    });
  }

  onNewPrimary(listener: (group: string) => void): void {
    this.on('new-primary', listener);
  }

  async primary(group: string): Promise<Primary | undefined> {
    const leader = this.table.groups.get(group)?.leader;
    return leader && { address: leader.address, epoch: leader.epoch };
  }

  group(name: string): GroupView | undefined {
    return this.table.groups.get(name);
  }

  list(): GroupView[] {
    return this.table.list();
  }
}
