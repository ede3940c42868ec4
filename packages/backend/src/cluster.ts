import type { Config, Logger, Service } from '@mailgrid/core';
import { clusterRole, GroupLeadership, passwordIntake } from '@mailgrid/cluster';
import { createMailFlow } from '@mailgrid/mailflow';
import { buildBackend } from './build.js';
import { moveService } from './move-service.js';
import { GroupReplication } from './replication.js';

/**
 * A backend of a cluster: a member of its hosting group, which elects one primary among its
 * in-sync members and replicates every store write to them before answering it. Only the
 * primary serves (fenced by its epoch); the others follow it. Rules make mail through the
 * node's mail flow (submit mode `auto` is remote here: to a queue taker, else its own
 * queue). Stop runs in reverse: the lease goes first (frontends stop routing here), then
 * the election is given up (a replica takes over at once), deliveries under way finish,
 * the queue runner stops and the stores close.
 */
export function clusterBackend(config: Config, log: Logger): Service[] {
  const group = config.backend.group;
  return clusterRole(config, log, { role: 'backend', group }, (node, address) => {
    let current = config;
    let replication: GroupReplication | undefined;
    const leadership = new GroupLeadership({
      client: node.client,
      keys: node.keys,
      groups: node.groups,
      group,
      node: config.nodeId,
      address,
      ttlSec: config.cluster.leaseTtlSec,
      canLead: () => backend.store.ready,
      log: log.child({ component: 'leadership', group }),
    });
    const flow = createMailFlow({ config, current: () => current, log, directory: node.directory, groups: node.groups, place: 'backend', takers: node.takers, protection: node.queue });
    const backend = buildBackend({
      config,
      log,
      directory: node.directory,
      epoch: () => leadership.writableEpoch(),
      submit: (s) => flow.submit.submit(s),
      durable: (seq) => replication!.durable(seq),
      trimPoint: () => replication!.trimPoint(),
    });
    replication = new GroupReplication({
      store: backend.store,
      leadership,
      groups: node.groups,
      group,
      node: config.nodeId,
      maxLagMs: () => current.backend.replicaMaxLagMs,
      logRetain: () => current.backend.logRetain,
      log: log.child({ component: 'replication', group }),
    });
    const passwords = passwordIntake({
      client: node.client,
      keys: node.keys,
      primary: () => leadership.writableEpoch() !== undefined,
      ours: (address) => node.directory.home(address)?.group === group,
      has: (address) => backend.store.passwordHash(address) !== undefined,
      store: (address, hash) => backend.store.setPasswordHash(address, hash),
      log: log.child({ component: 'passwords', group }),
    });
    return {
      services: [...backend.services, ...flow.services, passwords],
      grpc: [
        ...backend.grpc,
        ...flow.grpc,
        replication.service(),
        moveService({ group, store: backend.store, directory: node.directory, epoch: () => leadership.writableEpoch(), log }),
      ],
      after: [replication, leadership, ...backend.after],
      apply(next: Config) {
        current = next;
        backend.apply(next);
      },
      // A replica is ready once it has every write (it may be elected): a disruption budget then never takes a group below its in-sync members.
      notReady: () =>
        leadership.epoch !== undefined || node.groups.group(group)?.inSync?.includes(config.nodeId) ? undefined : `not in the in-sync set of hosting group ${group}`,
      describe: () => {
        const r = replication!.describe();
        return { ...flow.describe(), groupRole: r.role, logSeq: r.seq };
      },
    };
  });
}
