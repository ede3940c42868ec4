import { withHealth, type Config, type Logger, type Service } from '@mailgrid/core';
import { GrpcHost, routeGrpcLogs, type RoleParts } from '@mailgrid/protocol';
import { clusterNode } from './cluster-node.js';
import type { MemberInfo } from './membership.js';

export type ClusterNode = ReturnType<typeof clusterNode>;

/** A role's parts as a cluster member runs them: live settings applied, fields published with its membership. */
export interface ClusterRoleParts extends RoleParts {
  apply?(config: Config): void;
  describe?(): Partial<MemberInfo>;
  /** Started once the gRPC host is bound, stopped before it drains (a backend's election and replication). */
  after?: Service[];
}

/**
 * The one composition of a cluster member, whatever its role: etcd (directory, settings,
 * membership), the role's parts, and one gRPC host with every service the role offers,
 * advertised with the member's entry. Start order; stop runs in reverse, so the lease goes
 * first (nobody routes here any more), then the role drains, then the stores close.
 */
export function clusterRole(
  config: Config,
  log: Logger,
  self: Pick<MemberInfo, 'role'> & Partial<MemberInfo>,
  build: (node: ClusterNode, address: () => string | undefined) => ClusterRoleParts,
): Service[] {
  routeGrpcLogs(log);
  const grpc = new GrpcHost({ host: config.grpc.host, port: config.grpc.port, log: log.child({ component: 'grpc' }) });
  let parts: ClusterRoleParts | undefined;
  const address = () => config.grpc.advertise || grpc.address;
  const node = clusterNode(config, log, self, {
    describe: () => ({ grpc: address(), services: grpc.services, ...parts?.describe?.() }),
    urgent: () => {
      const d = parts?.describe?.();
      return `${d?.submitMode}/${d?.takes}/${d?.groupRole}`;
    },
  });
  parts = build(node, address);
  grpc.add(...parts.grpc);
  node.settings.on('change', (next: Config) => parts!.apply?.(next));
  return withHealth(config.http, log, [node.etcd, node.directory, node.settings, node.groups, ...parts.services, grpc, ...(parts.after ?? []), node.membership]);
}
