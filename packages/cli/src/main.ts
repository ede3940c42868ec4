// The `mailgrid` command: one file per command group under commands/, each registering on
// the shared program (context.ts); errors end as one line and a non-zero exit.
import { program } from './context.js';
import { message } from './errors.js';
import './commands/roles.js';
import './commands/domain.js';
import './commands/account.js';
import './commands/alias.js';
import './commands/mailbox.js';
import './commands/queue.js';
import './commands/cluster.js';
import './commands/member.js';
import './commands/group.js';
import './commands/node.js';
import './commands/rules.js';
import './commands/send.js';
import './commands/dashboard.js';

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`mailgrid: ${message(err)}\n`);
  process.exitCode = 1;
});
