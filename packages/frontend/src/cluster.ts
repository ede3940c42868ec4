import type { Config, Logger, Service } from '@mailgrid/core';
import { AuthFailures, clusterRole } from '@mailgrid/cluster';
import { buildFrontend } from './build.js';

/** A frontend of a cluster: the frontend role over the directory cached from etcd and the groups' live primaries. */
export function clusterFrontend(config: Config, log: Logger): Service[] {
  return clusterRole(config, log, { role: 'frontend', smtp: `${config.smtp.host}:${config.smtp.port}` }, (node) => {
    // Failed logins count on every frontend: an attacker gains nothing by spreading over them.
    const ledger = new AuthFailures(node.client, node.keys, config.nodeId, log.child({ component: 'auth' }));
    const parts = buildFrontend({ config, log, directory: node.directory, groups: node.groups, takers: node.takers, protection: node.queue, ledger });
    return { ...parts, services: [ledger, ...parts.services] };
  });
}
