import { connect, type Socket } from 'node:net';

/**
 * An SMTP client for transcript tests: each step sends a line and checks the reply's
 * start, e.g. `await s.send('RCPT TO:<nobody@example.test>', '550 5.1.1')`.
 */
export class SmtpTranscript {
  private buffer = '';
  private waiting: ((line: string) => void) | undefined;
  private readonly lines: string[] = [];

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buffer += d;
      let nl: number;
      while ((nl = this.buffer.indexOf('\r\n')) >= 0) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 2);
        this.lines.push(line);
      }
      this.flush();
    });
    socket.on('error', () => undefined);
  }

  /** `localAddress`: the client's own address (127.0.0.2 is another host on loopback). */
  static async open(port: number, host = '127.0.0.1', localAddress?: string): Promise<SmtpTranscript> {
    const socket = connect({ port, host, localAddress });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new SmtpTranscript(socket);
  }

  /** The next complete (possibly multi-line) reply. */
  reply(timeoutMs = 10_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const parts: string[] = [];
      const timer = setTimeout(() => reject(new Error(`no reply in ${timeoutMs} ms; got ${JSON.stringify(parts)}`)), timeoutMs);
      const take = (line: string) => {
        parts.push(line);
        if (line[3] === '-') return (this.waiting = take);
        clearTimeout(timer);
        this.waiting = undefined;
        resolve(parts.join('\n'));
      };
      this.waiting = take;
      this.flush();
    });
  }

  /** Expects a reply starting with `expected` (e.g. '220', '550 5.1.1'); returns it. */
  async expect(expected: string): Promise<string> {
    const r = await this.reply();
    const last = r.split('\n').pop()!;
    if (!last.startsWith(expected)) throw new Error(`expected "${expected}", got "${r}"`);
    return r;
  }

  async send(line: string, expected: string): Promise<string> {
    this.write(line + '\r\n');
    return this.expect(expected);
  }

  /** Raw bytes, exactly as given (for DATA bodies with odd line endings). */
  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  close(): void {
    this.socket.destroy();
  }

  private flush() {
    while (this.waiting && this.lines.length) this.waiting(this.lines.shift()!);
  }
}
