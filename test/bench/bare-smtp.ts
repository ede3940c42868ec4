/**
 * The ceiling of one Node process for `npm run bench:compare`: the bare smtp-server library,
 * nothing of mailgrid, appending each message to one spool file and fdatasync-ing it before
 * the 250 (as durable as mailgrid's acknowledgement). Its hard-coded 100 ms greeting pause is
 * removed and reverse DNS is off, as in mailgrid's default configuration.
 *
 *   node test/dist/bench/bare-smtp.js PORT SPOOLFILE
 */
import { appendFile, fdatasync, openSync } from 'node:fs';
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

const [port, spool] = [Number(process.argv[2]), process.argv[3]];
const proto = SMTPConnection.prototype as unknown as { init(): void; _setListeners(cb: () => void): void; connectionReady(): void };
proto.init = function init(this: typeof proto) {
  this._setListeners(() => this.connectionReady());
};
const fd = openSync(spool, 'a', 0o600);
let stored = 0;
const server = new SMTPServer({
  logger: false,
  authOptional: true,
  disabledCommands: ['AUTH', 'STARTTLS'],
  disableReverseLookup: true,
  size: 64 * 1024 * 1024,
  maxClients: 10_000,
  onData(stream, session, callback) {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const head = Buffer.from(`From bench ${new Date().toUTCString()}\nX-Rcpt: ${session.envelope.rcptTo.map((r) => r.address).join(',')}\n`);
      appendFile(fd, Buffer.concat([head, ...chunks]), (err) => {
        if (err) return callback(err);
        fdatasync(fd, (err2) => {
          if (err2) return callback(err2);
          stored++;
          callback(null, 'OK stored');
        });
      });
    });
  },
});
server.listen(port, '127.0.0.1', () => console.log(`bare smtp-server on 127.0.0.1:${port}, pid ${process.pid}`));
process.on('SIGUSR2', () => console.log(`stored ${stored}`));
process.on('SIGTERM', () => process.exit(0));
