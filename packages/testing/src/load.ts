import { sendMail, sleep } from './wait.js';

/**
 * A message of about `size` bytes for load tests: the given headers, then 78-byte lines of
 * filler, CRLF throughout and ending in CRLF (the DATA terminator is the sender's).
 */
export function fillerMessage(size: number, headers: string): string {
  const line = 'x'.repeat(76) + '\r\n';
  let m = `${headers}\r\n\r\n`;
  while (m.length + line.length <= size) m += line;
  return m + 'y'.repeat(Math.max(0, size - m.length - 2)) + '\r\n';
}

/**
 * Senders in a loop (SMTP, through HAProxy in the cluster tests), each message with its own
 * `X-Test-Id` and to the next of `accounts` in turn; what got a 250 is acknowledged, and
 * `acked` maps its id to the account it went to.
 */
export class SmtpLoad {
  readonly acked = new Map<string, string>();
  refused = 0;
  private n = 0;
  private running = true;
  private readonly loops: Promise<void>[];

  constructor(smtp: string, tag: string, accounts: string[], concurrency = 3) {
    this.loops = Array.from({ length: concurrency }, async () => {
      while (this.running) {
        const id = `${tag}-${++this.n}`;
        const to = accounts[this.n % accounts.length];
        const reply = await sendMail(smtp, { to: [to], data: `Subject: ${id}\r\nX-Test-Id: ${id}\r\n\r\nload\r\n` }).catch((err: Error) => err.message);
        if (reply.startsWith('250')) this.acked.set(id, to);
        else {
          this.refused++;
          await sleep(50);
        }
      }
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}
