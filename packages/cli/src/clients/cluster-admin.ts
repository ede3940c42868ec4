import { connectEtcd, EtcdDirectory, fromEtcdError, Keys, putSetting, readGroups, parseMember, readPrefix, SettingRefused, type GroupView, type MemberInfo } from '@mailgrid/cluster';
import type { Primary } from '@mailgrid/directory';
import { CodedError, parseAddress, Replies, type Config, type Logger } from '@mailgrid/core';
import type { Etcd3 } from 'etcd3';
import { pino } from 'pino';
import { CliError, explain } from '../errors.js';

export interface GroupInfo {
  group: string;
  primary: string;
  address: string;
  epoch: number | string;
  site: string;
  inSync: string;
  /** Each replica's lag behind the primary, in log entries. */
  lag: string;
  lastFailover: string;
  members: string;
}

/** What the CLI does against a cluster: straight to etcd. */
export class ClusterAdmin {
  readonly client: Etcd3;
  readonly keys: Keys;
  readonly directory: EtcdDirectory;

  constructor(readonly endpoints: string, prefix: string) {
    this.client = connectEtcd(endpoints);
    this.keys = new Keys(prefix);
    this.directory = new EtcdDirectory(this.client, this.keys, pino({ level: 'silent' }) as unknown as Logger);
  }

  /** Runs one etcd-backed command; an unreachable etcd becomes one clear line (by error class, not text). */
  async run<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (err instanceof CliError || CodedError.is(err)) throw err;
      const e = fromEtcdError(err);
      throw e.code === 'ETCD_UNAVAILABLE' ? explain(e, this.endpoints) : err;
    }
  }

  /** Live members (a malformed entry is skipped, as the nodes skip it). */
  async members(): Promise<MemberInfo[]> {
    const out: MemberInfo[] = [];
    await readPrefix(this.client, this.keys.members, (kv) => {
      try {
        out.push(parseMember(kv));
      } catch {
        // not a member we can read
      }
    });
    return out;
  }

  /** The hosting groups as etcd has them now. */
  groupViews(): Promise<GroupView[]> {
    return readGroups(this.client, this.keys);
  }

  async groups(): Promise<GroupInfo[]> {
    const members = await this.members();
    return (await this.groupViews()).map((g) => {
      const leader = members.find((m) => m.id === g.leader?.id);
      const status = g.status?.epoch === g.leader?.epoch ? g.status : undefined;
      return {
        group: g.name,
        primary: g.leader?.id ?? '-',
        address: g.leader?.address ?? '-',
        epoch: g.leader?.epoch ?? '-',
        site: leader?.site ?? '-',
        inSync: (g.inSync ?? []).join(',') || '-',
        lag: status ? Object.entries(status.lag).map(([n, l]) => `${n}:${l}`).join(',') || '-' : '-',
        lastFailover: status?.failovers?.length ? new Date(status.failovers.at(-1)!.at).toISOString() : '-',
        members: members.filter((m) => m.role === 'backend' && m.group === g.name).map((m) => `${m.id}(${m.groupRole ?? '?'})`).join(',') || '-',
      };
    });
  }

  async groupNames(): Promise<string[]> {
    return (await this.groupViews()).map((g) => g.name);
  }

  /** Every account's group, read in pages (a million accounts take a few seconds). */
  async accountGroups(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const prefix = `${this.keys.directory}accounts/`;
    await readPrefix(this.client, prefix, (kv) => {
      const [domain, local] = kv.key.toString().slice(prefix.length).split('/');
      try {
        out.set(`${local}@${domain}`, JSON.parse(kv.value.toString()).group);
      } catch {
        // a hand-written value: not an account to count
      }
    });
    return out;
  }

  /**
   * Where `account add` without --group puts an account: the group with the fewest accounts
   * among those whose primary is on `site` (every group when none is), ties by name.
   */
  async placement(site: string): Promise<string> {
    const [views, members, accounts] = await Promise.all([this.groupViews(), this.members(), this.accountGroups()]);
    if (!views.length) throw new CliError('the cluster has no hosting groups yet (start a backend first)');
    const siteOf = (g: GroupView) => members.find((m) => m.id === g.leader?.id)?.site;
    const local = views.filter((g) => siteOf(g) === site);
    const count = new Map<string, number>();
    for (const group of accounts.values()) count.set(group, (count.get(group) ?? 0) + 1);
    const pick = (local.length ? local : views).map((g) => ({ name: g.name, n: count.get(g.name) ?? 0 })).sort((a, b) => a.n - b.n || a.name.localeCompare(b.name));
    return pick[0].name;
  }

  /** The primary that serves an account: its gRPC address and epoch (which its writes carry). */
  async backendFor(address: string): Promise<Primary> {
    const a = parseAddress(address);
    if (!a) throw Replies.invalidAddress(address);
    const [local] = a.key.split('@');
    const kv = (await this.client.get(this.keys.account(a.domain, local)).exec()).kvs[0];
    if (!kv) throw Replies.noSuchAccount(a.key);
    const group = JSON.parse(kv.value.toString()).group as string;
    const leader = (await this.groupViews()).find((g) => g.name === group)?.leader;
    if (!leader) throw new CliError(`hosting group ${group} of ${a.key} has no elected primary`);
    return { address: leader.address, epoch: leader.epoch };
  }

  /** Members that offer the Queue service, with their gRPC address. */
  async queues(): Promise<{ node: string; address: string }[]> {
    return (await this.members()).filter((m) => m.grpc && m.services?.includes('Queue')).map((m) => ({ node: m.id, address: m.grpc! }));
  }

  /** Settings of a node (`_cluster` for the defaults): what is set in etcd. */
  async settings(node: string): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = {};
    const prefix = `${this.keys.settings}${node}/`;
    await readPrefix(this.client, prefix, (kv) => {
      const raw = kv.value.toString();
      try {
        out[kv.key.toString().slice(prefix.length)] = JSON.parse(raw);
      } catch {
        out[kv.key.toString().slice(prefix.length)] = raw;
      }
    });
    return out;
  }

  /** Sets one live setting after checking it against the config schema (as the dashboard does). */
  async setSetting(node: string, key: string, raw: string, base: Config): Promise<unknown> {
    try {
      return await putSetting(this.client, this.keys, { node, key, raw }, base, async (id) => (await this.members()).some((m) => m.id === id));
    } catch (err) {
      throw err instanceof SettingRefused ? new CliError(err.message) : err;
    }
  }

  async unsetSetting(node: string, key: string): Promise<boolean> {
    const res = await this.client.delete().key(this.keys.setting(node, key)).exec();
    return Number(res.deleted) > 0;
  }

  close(): void {
    this.client.close();
  }
}
