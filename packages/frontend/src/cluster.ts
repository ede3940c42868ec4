import type { Config, Logger, Service } from '@mailgrid/core';
import { clusterRole } from '@mailgrid/cluster';
import { buildFrontend } from './build.js';

/** A frontend of a cluster: the frontend role over the directory cached from etcd and the groups' live primaries. */
export function clusterFrontend(config: Config, log: Logger): Service[] {
  return clusterRole(config, log, { role: 'frontend', smtp: `${config.smtp.host}:${config.smtp.port}` }, (node) =>
    buildFrontend({ config, log, directory: node.directory, groups: node.groups, takers: node.takers, protection: node.queue }),
  );
}
