import { closer, HealthServer, type Config, type Logger, type Service } from '@mailgrid/core';
import { routeGrpcLogs } from '@mailgrid/protocol';
import { clusterNode } from '@mailgrid/cluster';
import { LmdbMailStore } from '@mailgrid/store';
import { join, resolve } from 'node:path';
import { Backend } from './backend.js';

/**
 * A backend of a cluster: serves one hosting group from its LMDB store and registers as
 * that group's primary. Stop runs in reverse: the lease goes first (frontends stop routing
 * here), then in-flight deliveries finish, then the store closes.
 */
export function clusterBackend(config: Config, log: Logger): Service[] {
  routeGrpcLogs(log);
  const node = clusterNode(config, log, {
    role: 'backend',
    group: config.backend.group,
    grpc: config.grpc.advertise || `${config.grpc.host}:${config.grpc.port}`,
  });
  const store = new LmdbMailStore(join(resolve(config.dataDir), 'store'));
  const backend = new Backend({ config, log, directory: node.directory, store });
  const services: Service[] = [node.etcd, node.directory, node.settings, closer('store', () => store.close()), backend, node.membership];
  const health = new HealthServer({ ...config.http, log, services: () => services });
  return [health, ...services];
}
