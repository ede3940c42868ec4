import { closer, HealthServer, setLogLevel, type Config, type Logger, type Service } from '@mailgrid/core';
import { connectEtcd, EtcdDirectory, Keys, Membership, NodeSettings } from '@mailgrid/cluster';
import { LmdbMailStore } from '@mailgrid/store';
import { join, resolve } from 'node:path';
import { Backend } from './backend.js';

/**
 * A backend of a cluster: serves one hosting group from its LMDB store and registers as
 * that group's primary. Stop runs in reverse: the lease goes first (frontends stop routing
 * here), then in-flight deliveries finish, then the store closes.
 */
export function clusterBackend(config: Config, log: Logger): Service[] {
  if (!config.etcd) throw new Error('a backend needs etcd endpoints (--etcd or MAILGRID_ETCD)');
  const client = connectEtcd(config.etcd);
  const keys = new Keys(config.cluster.prefix);
  const directory = new EtcdDirectory(client, keys, log.child({ component: 'directory' }));
  const store = new LmdbMailStore(join(resolve(config.dataDir), 'store'));
  const backend = new Backend({ config, log, directory, store });
  const settings = new NodeSettings(client, keys, config, log.child({ component: 'settings' }));
  settings.on('change', (c: Config) => setLogLevel(log, c.log.level));
  const membership = new Membership(
    client,
    keys,
    {
      id: config.nodeId,
      role: 'backend',
      site: config.site,
      group: config.backend.group,
      grpc: config.grpc.advertise || `${config.grpc.host}:${config.grpc.port}`,
      http: `${config.http.host}:${config.http.port}`,
      state: 'up',
      pid: process.pid,
      startedAt: new Date().toISOString(),
    },
    config.cluster.leaseTtlSec,
    log.child({ component: 'membership' }),
  );
  const services: Service[] = [closer('etcd', () => client.close()), directory, settings, closer('store', () => store.close()), backend, membership];
  const health = new HealthServer({ ...config.http, log, services: () => services });
  return [health, ...services];
}
