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
  private readonly perAccount = new Map<string, number>();
  /** Checks of pending `acknowledged` calls, run after every acknowledgement and at stop. */
  private readonly waiting = new Set<() => void>();

  constructor(
    smtp: string,
    private readonly tag: string,
    accounts: string[],
    concurrency = 3,
  ) {
    this.loops = Array.from({ length: concurrency }, async () => {
      while (this.running) {
        const id = `${tag}-${++this.n}`;
        const to = accounts[this.n % accounts.length];
        const reply = await sendMail(smtp, { to: [to], data: `Subject: ${id}\r\nX-Test-Id: ${id}\r\n\r\nload\r\n` }).catch((err: Error) => err.message);
        if (reply.startsWith('250')) {
          this.acked.set(id, to);
          this.perAccount.set(to, (this.perAccount.get(to) ?? 0) + 1);
          for (const check of this.waiting) check();
        } else {
          this.refused++;
          // Back off: a refusing cluster is not hammered.
          await sleep(50);
        }
      }
    });
  }

  /** Messages acknowledged so far, in all or to one account. */
  count(to?: string): number {
    return to === undefined ? this.acked.size : (this.perAccount.get(to) ?? 0);
  }

  /**
   * Resolves once `n` messages (to `to`, when given) have been acknowledged since the load
   * began; throws, saying how far it got, after `timeoutMs` or when the load stops first.
   */
  acknowledged(n: number, to?: string, timeoutMs = 30_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const what = () => `${this.tag}: ${n} acknowledged${to ? ` to ${to}` : ''} awaited, ${this.count(to)} so far (${this.refused} refused)`;
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.waiting.delete(check);
        if (err) reject(err);
        else resolve();
      };
      const check = () => {
        if (this.count(to) >= n) done();
        else if (!this.running) done(new Error(`load stopped: ${what()}`));
      };
      const timer = setTimeout(() => done(new Error(`timed out after ${timeoutMs} ms: ${what()}`)), timeoutMs);
      this.waiting.add(check);
      check();
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    for (const check of this.waiting) check();
    await Promise.all(this.loops);
  }
}
