import { ACCESS_LISTENERS, leaves, type AccessListenerName } from '@mailgrid/core';

/**
 * What each role is started with: its ports and its MAILGRID_* settings. `mailgrid cluster
 * up` builds every node's environment here, and test/deploy.test.ts holds the files in
 * deploy/ (Compose, Kubernetes, systemd) to the same table, so a setting a role needs
 * cannot be added in one place and forgotten in the other.
 */
export type NodeRole = 'frontend' | 'backend';
export type PortName = AccessListenerName | 'grpc' | 'http';

const envOf = (key: string) => leaves().find((l) => l.key === key)!.env;

/** The variable that sets each port: an access listener's is its protocol's port setting (`MAILGRID_POP3_TLS_PORT` for pop3s). */
export const PORT_ENV = {
  ...Object.fromEntries(ACCESS_LISTENERS.map((l) => [l.name, envOf(`${l.protocol}.${l.portKey}`)])),
  grpc: envOf('grpc.port'),
  http: envOf('http.port'),
} as Record<PortName, string>;

/** The access listeners, by the registry's names: what a frontend serves and a balancer balances. */
export const ACCESS_SERVICES = ACCESS_LISTENERS.map((l) => l.name);

/** The ports each role listens on (in the order the launcher picks them). */
export const ROLE_PORTS: Record<NodeRole, readonly PortName[]> = {
  frontend: [...ACCESS_SERVICES, 'http', 'grpc'],
  backend: ['grpc', 'http'],
};

/** The well-known ports clients use, where a balancer (HAProxy, a LoadBalancer Service) listens. */
export const ACCESS_PORTS = Object.fromEntries(ACCESS_LISTENERS.map((l) => [l.name, l.wellKnown])) as Record<AccessListenerName, number>;

/**
 * A node with a network of its own (a container, a machine): what the loopback cluster
 * leaves at the defaults, because there every node shares 127.0.0.1.
 */
export interface Placement {
  /** Every listener's address: 0.0.0.0 in a container. */
  host: string;
  /** host:port the other nodes and the CLI dial for its gRPC server. */
  advertise: string;
  /** The name in the greeting, Received: headers and HELO (a container's own hostname is a hash). */
  mailName: string;
  /** Given explicitly so the engine's stop timeout can be set above it. */
  drainMs: number;
  /** The dashboard's admin token, from a secret (empty: the dashboard is read-only). */
  adminToken: string;
}

export interface NodeSpec {
  id: string;
  dataDir: string;
  etcd: string;
  ports: Partial<Record<PortName, number>>;
  /** A backend's hosting group. */
  group?: string;
  /** A frontend behind a balancer that sends the PROXY header: the balancer's addresses. Unset: clients arrive with their own address. */
  proxyFrom?: string;
  placed?: Placement;
}

/** The MAILGRID_* environment of one node. */
export function roleEnv(role: NodeRole, node: NodeSpec): Record<string, string> {
  const env: Record<string, string> = { MAILGRID_NODE_ID: node.id, MAILGRID_DATA_DIR: node.dataDir, MAILGRID_ETCD: node.etcd };
  for (const name of ROLE_PORTS[role]) {
    const port = node.ports[name];
    if (port === undefined) throw new Error(`${node.id}: no ${name} port`);
    env[PORT_ENV[name]] = String(port);
  }
  if (role === 'backend') {
    if (!node.group) throw new Error(`${node.id}: a backend needs its hosting group`);
    env.MAILGRID_BACKEND_GROUP = node.group;
  } else {
    // Said either way: a deployment file shows which of the two it chose.
    env[envOf('listen.proxyProtocol')] = String(node.proxyFrom !== undefined);
    if (node.proxyFrom !== undefined) env[envOf('listen.proxyFrom')] = node.proxyFrom;
  }
  const p = node.placed;
  if (p) {
    // A backend serves no mail access, so its listen.host means nothing.
    if (role === 'frontend') env[envOf('listen.host')] = p.host;
    env.MAILGRID_GRPC_HOST = p.host;
    env.MAILGRID_HTTP_HOST = p.host;
    env.MAILGRID_GRPC_ADVERTISE = p.advertise;
    env.MAILGRID_SMTP_HOSTNAME = p.mailName;
    env.MAILGRID_DRAIN_MS = String(p.drainMs);
    env.MAILGRID_HTTP_ADMIN_TOKEN = p.adminToken;
  }
  return env;
}

/** Node ids as `cluster up` names them: fe-1…; per group be-<n> (elected first), then its replicas be-<n>-r1, …. */
export const frontendId = (i: number) => `fe-${i + 1}`;
export const groupName = (i: number) => `g${i + 1}`;
export const backendId = (group: number, replica: number) => (replica ? `be-${group + 1}-r${replica}` : `be-${group + 1}`);

/** Every node of a cluster of this shape, in start order. */
export function clusterNodes(shape: { frontends: number; groups: number; replicas: number }): { id: string; role: NodeRole; group?: string }[] {
  const groups = Array.from({ length: shape.groups }, (_, g) => g);
  return [
    ...groups.map((g) => ({ id: backendId(g, 0), role: 'backend' as const, group: groupName(g) })),
    ...groups.flatMap((g) => Array.from({ length: shape.replicas }, (_, r) => ({ id: backendId(g, r + 1), role: 'backend' as const, group: groupName(g) }))),
    ...Array.from({ length: shape.frontends }, (_, i) => ({ id: frontendId(i), role: 'frontend' as const })),
  ];
}
