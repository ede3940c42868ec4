import type { FailureLedger } from '@mailgrid/access';
import { buildGroupMember } from '@mailgrid/backend';
import type { ClusterNode, MemberInfo } from '@mailgrid/cluster';
import { metrics, type Config, type Logger, type Service } from '@mailgrid/core';
import type { Directory, HostingGroups } from '@mailgrid/directory';
import { buildFrontend } from '@mailgrid/frontend';
import { flowServices, type QueueProtection, type QueueTakers } from '@mailgrid/mailflow';
import { routeGrpcLogs, type DeliveryTransport, type RoleParts } from '@mailgrid/protocol';
import { ClusterMember } from './member.js';
import { Standalone } from './standalone.js';

/** What a node is: the whole system on one machine, or a cluster member of one role. */
export type NodeRole = 'single' | 'frontend' | 'backend';

/** A role's part of a node. */
export interface NodePart extends RoleParts {
  /** What the member publishes of it (queue, submit mode, place in its group, listeners). */
  describe?(): Partial<MemberInfo>;
}

/**
 * What a node stands on: a single node's embedded directory and its backend thread
 * (`Standalone`), or a cluster member's etcd (`ClusterMember`). Either gives the role parts
 * what they are built over, and assembles them with the node's gRPC host, health
 * endpoints, metrics and dashboard.
 */
export interface NodeBase {
  directory: Directory;
  groups: HostingGroups;
  takers?: QueueTakers;
  protection?: QueueProtection;
  ledger?: FailureLedger;
  /** How deliveries reach the groups when not over gRPC (the single node's backend thread). */
  transport?: DeliveryTransport;
  /** The cluster member's etcd parts, for a backend's group membership. */
  cluster?: ClusterNode;
  /** The address other nodes use for this node's gRPC host, once it is bound. */
  address(): string | undefined;
  /** The node: its parts' services in start order, with its own around them and the HTTP endpoints in front. */
  assemble(parts: NodePart[]): Service[];
}

/**
 * The one composition of a mailgrid node, whatever its role. `single` is the frontend and
 * the backend over the embedded directory (the backend in a thread of its own); `frontend`
 * and `backend` are cluster members over etcd. The frontend part is the same in both; so is
 * the backend's store, built in the thread or inside its group membership. Start order;
 * stop runs in reverse, and a failed start stops what had started (`runUntilSignal`).
 */
export function composeNode(role: NodeRole, config: Config, log: Logger): Service[] {
  routeGrpcLogs(log);
  metrics.describeNode(config.nodeId, role, config.site);
  const standalone = role === 'single' ? new Standalone(config, log) : undefined;
  const base: NodeBase = standalone ?? new ClusterMember(config, log, role as 'frontend' | 'backend');
  const parts: NodePart[] = [];
  if (role !== 'backend') {
    const frontend = buildFrontend({ config, log, directory: base.directory, groups: base.groups, takers: base.takers, protection: base.protection, ledger: base.ledger, transport: base.transport });
    standalone?.serve(frontend.flow);
    parts.push({
      ...frontend,
      // A single node's backend thread hosts these, beside its gRPC host.
      grpc:
        role === 'single'
          ? []
          : flowServices({
              store: frontend.flow.store,
              node: config.nodeId,
              wake: () => frontend.flow.runner.wake(),
              receive: (s, a) => frontend.flow.submit.receive(s, a),
              copies: () => base.protection?.copies() ?? [],
              maxMessageBytes: () => config.smtp.maxMessageBytes,
              log,
            }),
      describe: () => ({ ...frontend.describe(), access: frontend.access.bound() }),
      listeners: () => frontend.access.bound(),
    });
  }
  if (role === 'backend') parts.push(buildGroupMember({ config, log, node: base.cluster!, protection: base.protection!, address: () => base.address() }));
  return base.assemble(parts);
}
