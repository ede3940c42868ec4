import { clusterBackend } from '@mailgrid/backend';
import { runRole } from '@mailgrid/core';
import { clusterFrontend } from '@mailgrid/frontend';
import { config, program } from '../context.js';
import { singleNode } from '../single-node.js';

program
  .command('start')
  .description('run a single node: SMTP frontend and backend with the embedded directory')
  .option('--print-config', 'print the effective configuration and exit')
  .action((opts) => runRole(singleNode, config(), opts.printConfig));

program
  .command('frontend')
  .description('run a cluster frontend (SMTP; needs --etcd)')
  .option('--print-config', 'print the effective configuration and exit')
  .action((opts) => runRole(clusterFrontend, config(), opts.printConfig));

program
  .command('backend')
  .description('run a cluster backend serving one hosting group (--backend-group; needs --etcd)')
  .option('--print-config', 'print the effective configuration and exit')
  .action((opts) => runRole(clusterBackend, config(), opts.printConfig));
