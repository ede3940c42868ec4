import type { Config, Logger } from '@mailgrid/core';
import { GroupLeadership, type ClusterNode, type MemberInfo } from '@mailgrid/cluster';
import { createMailFlow, flowServices, type MailFlow, type QueueProtection } from '@mailgrid/mailflow';
import type { RoleParts } from '@mailgrid/protocol';
import { buildBackend } from './build.js';
import { moveService } from './move-service.js';
import { passwordIntake } from './password-intake.js';
import { GroupReplication } from './replication.js';

/**
 * The backend role of a cluster member: a member of its hosting group, which elects one
 * primary among its in-sync members and replicates every store write to them before
 * answering it. Only the primary serves (fenced by its epoch); the others follow it. Rules
 * make mail through the node's own mail flow (submit mode `auto` is remote here: to a queue
 * taker, else its own queue). Stop runs in reverse: the election is given up (a replica
 * takes over at once), deliveries under way finish, the queue runner stops and the stores
 * close.
 */
export function buildGroupMember(deps: {
  config: Config;
  log: Logger;
  node: ClusterNode;
  /** The queue partnership that protects this node's queue. */
  protection: QueueProtection;
  /** The address the member advertises for its gRPC host (known once it is bound). */
  address: () => string | undefined;
}): RoleParts & { flow: MailFlow; describe(): Partial<MemberInfo> } {
  const { config, log, node } = deps;
  const group = config.backend.group;
  let current = config;
  let replication: GroupReplication | undefined;
  const leadership = new GroupLeadership({
    client: node.client,
    keys: node.keys,
    groups: node.groups,
    group,
    node: config.nodeId,
    address: deps.address,
    ttlSec: config.cluster.leaseTtlSec,
    canLead: () => backend.store.ready,
    log: log.child({ component: 'leadership', group }),
  });
  const flow = createMailFlow({ config, current: () => current, log, directory: node.directory, groups: node.groups, place: 'backend', takers: node.takers, protection: deps.protection });
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
    flow,
    services: [...backend.services, ...flow.services, passwords],
    grpc: [
      ...backend.grpc,
      ...flowServices({
        store: flow.store,
        node: config.nodeId,
        wake: () => flow.runner.wake(),
        receive: (s, a) => flow.submit.receive(s, a),
        copies: () => deps.protection.copies(),
        maxMessageBytes: () => current.smtp.maxMessageBytes,
        log,
      }),
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
}
