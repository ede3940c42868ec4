import { closer, setLogLevel, type Config, type Logger, type Service } from '@mailgrid/core';
import { connectEtcd } from './etcd.js';
import { EtcdDirectory } from './etcd-directory.js';
import { Keys } from './keys.js';
import { HostingGroupsWatch } from './hosting-groups.js';
import { MemberQueueTakers, Membership, type MemberInfo, type MembershipOptions } from './membership.js';
import { NodeSettings } from './settings.js';

/**
 * What every cluster role has: the etcd client, the directory cache, its membership entry
 * (`describe` adds what is only known at run time), the hosting groups (elected primaries,
 * in-sync sets) and the
 * queue takers as the member list shows them, and its live settings (the log level applied here; a role
 * applies the rest). The role orders these among its own services.
 */
export function clusterNode(
  config: Config,
  log: Logger,
  self: Pick<MemberInfo, 'role'> & Partial<MemberInfo>,
  options: Pick<MembershipOptions, 'describe' | 'urgent'> = {},
) {
  if (!config.etcd) throw new Error(`a ${self.role} needs etcd endpoints (--etcd or MAILGRID_ETCD)`);
  const client = connectEtcd(config.etcd);
  const keys = new Keys(config.cluster.prefix);
  const directory = new EtcdDirectory(client, keys, log.child({ component: 'directory' }));
  const settings = new NodeSettings(client, keys, config, log.child({ component: 'settings' }));
  settings.on('change', (c: Config) => setLogLevel(log, c.log.level));
  const membership = new Membership(
    client,
    keys,
    {
      id: config.nodeId,
      site: config.site,
      http: `${config.http.host}:${config.http.port}`,
      state: 'up',
      pid: process.pid,
      startedAt: new Date().toISOString(),
      ...self,
    },
    config.cluster.leaseTtlSec,
    log.child({ component: 'membership' }),
    options,
  );
  const groups = new HostingGroupsWatch(client, keys, log.child({ component: 'groups' }));
  const takers = new MemberQueueTakers(membership, config.nodeId);
  const etcd: Service = closer('etcd', () => client.close());
  return { client, keys, directory, settings, membership, groups, takers, etcd };
}

/** What a cluster member's roles are built on: its etcd client, directory cache, settings, membership, groups and takers. */
export type ClusterNode = ReturnType<typeof clusterNode>;
