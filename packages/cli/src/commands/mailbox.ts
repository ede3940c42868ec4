import { print, program, withBackendOf } from '../context.js';
import { CliError } from '../errors.js';
import { MailboxReader } from '../clients/node-admin.js';

/** Runs `work` against the Mailbox service of the node that serves the account. */
const withMailbox = <T>(address: string, work: (mb: MailboxReader, account: string) => Promise<T>) => withBackendOf(address, (a) => new MailboxReader(a), work);

const mailbox = program.command('mailbox').description('stored mail');
mailbox
  .command('list <address>')
  .description("list an account's messages")
  .option('--folder <name>', 'a folder other than INBOX')
  .action((address: string, opts: { folder?: string }) =>
    withMailbox(address, async (mb, account) => {
      const { messages } = await mb.list(account, opts.folder);
      print(
        messages.map((m) => ({ uid: m.uid, size: m.size, received: new Date(Number(m.receivedAtMs)).toISOString(), folder: m.folder })),
        ['uid', 'size', 'received', 'folder'],
      );
    }),
  );
mailbox
  .command('get <address> <uid>')
  .description('write one message, raw, to stdout')
  .option('--folder <name>', 'a folder other than INBOX')
  .action((address: string, uid: string, opts: { folder?: string }) => {
    if (!/^[1-9]\d*$/.test(uid)) throw new CliError(`invalid uid: ${uid}`);
    return withMailbox(address, async (mb, account) => {
      process.stdout.write(await mb.fetch(account, Number(uid), opts.folder));
    });
  });
