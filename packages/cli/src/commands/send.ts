import { MailError, rfc5322Date } from '@mailgrid/core';
import { checkedAddress } from '@mailgrid/directory';
import { GrpcSubmitter, newMessageId } from '@mailgrid/mailflow';
import { MessageView } from '@mailgrid/rules';
import { readFileSync } from 'node:fs';
import { done, program, withTarget } from '../context.js';
import { CliError, explain } from '../errors.js';

/**
 * The message as a submission server fixes it up (RFC 6409 §8): CRLF line ends, a From,
 * Date and Message-ID when missing, and no Bcc field left in it.
 */
function prepare(raw: Buffer, from: string, id: string): Buffer {
  if (raw.includes(0)) throw new CliError('the message contains a NUL byte');
  const text = raw.toString('latin1').replace(/\r\n|\r|\n/g, '\r\n');
  const split = text.indexOf('\r\n\r\n');
  const head = split < 0 ? text : text.slice(0, split + 2);
  const body = split < 0 ? '' : text.slice(split + 4);
  // Bcc and its continuation lines go.
  const fields = head.split(/\r\n(?![ \t])/).filter((f) => f && !/^bcc\s*:/i.test(f));
  const has = (name: string) => fields.some((f) => f.toLowerCase().startsWith(name + ':'));
  if (!has('from')) fields.unshift(`From: ${from}`);
  if (!has('date')) fields.push(`Date: ${rfc5322Date(new Date())}`);
  if (!has('message-id')) fields.push(`Message-ID: <${id}@${from.split('@')[1]}>`);
  const out = fields.join('\r\n') + '\r\n\r\n' + body;
  return Buffer.from(out.endsWith('\r\n') ? out : out + '\r\n', 'latin1');
}

program
  .command('send <file>')
  .description('send a message (a file, - for standard input) as an account, through the node\'s submit mode; recipients from To, Cc and Bcc')
  .requiredOption('--as <address>', 'the sending account (must be hosted here)')
  .option('--node <id>', 'the cluster member that takes it (default: a frontend)')
  .action((file: string, opts: { as: string; node?: string }) =>
    withTarget(async (t, c) => {
      const from = checkedAddress(opts.as).key;
      let raw: Buffer;
      try {
        raw = readFileSync(file === '-' ? 0 : file);
      } catch (err) {
        throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
      }
      const id = newMessageId();
      const view = new MessageView(Buffer.from(raw.toString('latin1').replace(/\r\n|\r|\n/g, '\r\n'), 'latin1'));
      const recipients = [...new Set(['to', 'cc', 'bcc'].flatMap((h) => view.addresses(h)).map((a) => a.toLowerCase()))];
      if (!recipients.length) throw new CliError('no recipients: the message has no To, Cc or Bcc addresses');
      const body = prepare(raw, from, id);
      const target = await t.submitter(opts.node);
      const submitter = new GrpcSubmitter({ timeoutMs: 60_000, chunkBytes: c.delivery.chunkBytes, node: 'cli' });
      try {
        const res = await submitter.submit(target.address, { id, mailFrom: from, recipients, body, mayRelay: true }, { origin: '', log: [], asAccount: true });
        for (const r of res.recipients) if (r.state === 'failed') process.stderr.write(`${r.address}: ${r.reply.code} ${r.reply.enhanced} ${r.reply.text}\n`);
        if (!res.accepted) throw new CliError(`${target.node} refused the message: ${res.reply.code} ${res.reply.enhanced} ${res.reply.text}`);
        done(`${res.reply.text} (by ${target.node})`);
      } catch (err) {
        throw MailError.is(err) ? explain(err, `the mailgrid node ${target.node} at ${target.address}`) : err;
      } finally {
        submitter.close();
      }
    }),
  );
