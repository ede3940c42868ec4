import { closer, HealthServer, setLogLevel, type Config, type Logger, type Service } from '@mailgrid/core';
import { connectEtcd, EtcdDirectory, Keys, MemberHostingGroups, Membership, NodeSettings } from '@mailgrid/cluster';
import { frontendParts } from './frontend.js';

/**
 * A frontend of a cluster: SMTP in, the directory cached from etcd, deliveries routed to
 * each hosting group's live primary. Start order; stop runs in reverse, so SMTP drains
 * first (and /readyz turns 503 at once), then the lease is revoked.
 */
export function clusterFrontend(config: Config, log: Logger): Service[] {
  if (!config.etcd) throw new Error('a frontend needs etcd endpoints (--etcd or MAILGRID_ETCD)');
  const client = connectEtcd(config.etcd);
  const keys = new Keys(config.cluster.prefix);
  const directory = new EtcdDirectory(client, keys, log.child({ component: 'directory' }));
  const membership = new Membership(
    client,
    keys,
    {
      id: config.nodeId,
      role: 'frontend',
      site: config.site,
      smtp: `${config.smtp.host}:${config.smtp.port}`,
      queue: `${config.grpc.advertise.replace(/:\d+$/, '') || config.grpc.host}:${config.queue.grpcPort}`,
      http: `${config.http.host}:${config.http.port}`,
      state: 'up',
      pid: process.pid,
      startedAt: new Date().toISOString(),
    },
    config.cluster.leaseTtlSec,
    log.child({ component: 'membership' }),
  );
  const settings = new NodeSettings(client, keys, config, log.child({ component: 'settings' }));
  const parts = frontendParts(config, log, directory, new MemberHostingGroups(membership));
  settings.on('change', (c: Config) => {
    setLogLevel(log, c.log.level);
    parts.apply(c);
  });
  // Queue depth and age travel with the membership entry, for operators and balancing.
  const publish = setInterval(() => {
    const oldest = parts.queue.store.oldest();
    void membership.update({ queueDepth: parts.queue.store.messageCount, queueOldestAt: oldest }).catch(() => undefined);
  }, 10_000);
  publish.unref();
  const services: Service[] = [
    closer('etcd', () => {
      clearInterval(publish);
      client.close();
    }),
    directory,
    membership,
    settings,
    ...parts.services,
  ];
  const health = new HealthServer({ ...config.http, log, services: () => services });
  return [health, ...services];
}
