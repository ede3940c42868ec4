import type { Config, Logger, Service } from '@mailgrid/core';
import { clusterRole } from '@mailgrid/cluster';
import { buildBackend } from './build.js';

/**
 * A backend of a cluster: the backend role for its hosting group, fenced by its own
 * membership epoch. Stop runs in reverse: the lease goes first (frontends stop routing
 * here), then deliveries under way finish, then the store closes.
 */
export function clusterBackend(config: Config, log: Logger): Service[] {
  return clusterRole(config, log, { role: 'backend', group: config.backend.group }, (node) =>
    buildBackend({ config, log, directory: node.directory, epoch: () => node.membership.epoch }),
  );
}
