import { closer, HealthServer, type Config, type Logger, type Service } from '@mailgrid/core';
import { routeGrpcLogs } from '@mailgrid/protocol';
import { clusterNode, MemberHostingGroups } from '@mailgrid/cluster';
import { frontendParts } from './frontend.js';

/**
 * A frontend of a cluster: SMTP in, the directory cached from etcd, deliveries routed to
 * each hosting group's live primary, its own durable queue. Start order; stop runs in
 * reverse, so SMTP drains first (and /readyz turns 503 at once), then the lease goes.
 */
export function clusterFrontend(config: Config, log: Logger): Service[] {
  routeGrpcLogs(log);
  const node = clusterNode(config, log, {
    role: 'frontend',
    smtp: `${config.smtp.host}:${config.smtp.port}`,
    queue: `${config.grpc.advertise.replace(/:\d+$/, '') || config.grpc.host}:${config.queue.grpcPort}`,
  });
  const parts = frontendParts(config, log, node.directory, new MemberHostingGroups(node.membership));
  node.settings.on('change', (c: Config) => parts.apply(c));
  // Queue depth and age travel with the membership entry, for operators and balancing.
  const publish = setInterval(() => {
    const store = parts.queue.store;
    void node.membership.update({ queueDepth: store.messageCount, queueOldestAt: store.oldest() }).catch(() => undefined);
  }, 10_000);
  publish.unref();
  const services: Service[] = [node.etcd, closer('publish', () => clearInterval(publish)), node.directory, node.membership, node.settings, ...parts.services];
  const health = new HealthServer({ ...config.http, log, services: () => services });
  return [health, ...services];
}
