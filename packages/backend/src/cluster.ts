import type { Config, Logger, Service } from '@mailgrid/core';
import { clusterRole } from '@mailgrid/cluster';
import { createMailFlow } from '@mailgrid/mailflow';
import { buildBackend } from './build.js';

/**
 * A backend of a cluster: the backend role for its hosting group, fenced by its own
 * membership epoch, with the node's mail flow for what its accounts' rules make (submit
 * mode `auto` is remote here: to a queue taker, else its own queue). Stop runs in reverse:
 * the lease goes first (frontends stop routing here), then deliveries under way finish,
 * then the queue runner stops and the stores close.
 */
export function clusterBackend(config: Config, log: Logger): Service[] {
  return clusterRole(config, log, { role: 'backend', group: config.backend.group }, (node) => {
    let current = config;
    const flow = createMailFlow({ config, current: () => current, log, directory: node.directory, groups: node.groups, place: 'backend', takers: node.takers });
    const backend = buildBackend({ config, log, directory: node.directory, epoch: () => node.membership.epoch, submit: (s) => flow.submit.submit(s) });
    return {
      services: [...backend.services, ...flow.services],
      grpc: [...backend.grpc, ...flow.grpc],
      apply(next: Config) {
        current = next;
        backend.apply(next);
      },
      describe: () => flow.describe(),
    };
  });
}
