import { runRole } from '@mailgrid/core';
import { composeNode, type NodeRole } from '@mailgrid/node';
import { config, program } from '../context.js';

const roles: [NodeRole, string, string][] = [
  ['single', 'start', 'run a single node: SMTP, submission and POP3 frontend and backend with the embedded directory'],
  ['frontend', 'frontend', 'run a cluster frontend (SMTP, submission, POP3; needs --etcd)'],
  ['backend', 'backend', 'run a cluster backend serving one hosting group (--backend-group; needs --etcd)'],
];

for (const [role, command, description] of roles)
  program
    .command(command)
    .description(description)
    .option('--print-config', 'print the effective configuration and exit')
    .action((opts) => runRole((c, log) => composeNode(role, c, log), config(), opts.printConfig));
