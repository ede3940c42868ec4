import { connect as tcp, type Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { connect as tls, type TLSSocket } from 'node:tls';

export interface TranscriptOptions {
  host?: string;
  /** The client's own address (127.0.0.2 is another host on loopback). */
  localAddress?: string;
  /** Implicit TLS (SMTPS, POP3S): the handshake first, any certificate taken. */
  tls?: boolean;
  /** Sent before anything else, as a balancer does (`PROXY TCP4 ...\r\n`). */
  proxy?: string;
}

/**
 * A line protocol client for transcript tests: the server's lines are read as they come,
 * and each protocol says what one complete reply is (`SmtpTranscript`, `Pop3Transcript`).
 * A step sends a line and checks the start of the reply, e.g.
 * `await smtp.send('RCPT TO:<nobody@example.test>', '550 5.1.1')`.
 */
export abstract class Transcript {
  private buffer = '';
  private waiting: ((line: string) => void) | undefined;
  private readonly lines: string[] = [];
  private socket: Socket;
  /** What is written to: the socket, or a compressor over it (IMAP's COMPRESS). */
  private output: Writable;

  protected constructor(socket: Socket) {
    this.socket = this.output = socket;
    this.listen(socket);
  }

  protected static async connect(port: number, options: TranscriptOptions = {}): Promise<Socket> {
    const host = options.host ?? '127.0.0.1';
    const plain = tcp({ port, host, localAddress: options.localAddress });
    await new Promise<void>((resolve, reject) => plain.once('connect', resolve).once('error', reject));
    if (options.proxy) plain.write(options.proxy);
    if (!options.tls) return plain;
    return secure(plain);
  }

  private listen(socket: Readable): void {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buffer += d;
      let nl: number;
      while ((nl = this.buffer.indexOf('\r\n')) >= 0) {
        this.lines.push(this.buffer.slice(0, nl));
        this.buffer = this.buffer.slice(nl + 2);
      }
      this.flush();
    });
    socket.on('error', () => undefined);
  }

  /** The next line from the server. */
  line(timeoutMs = 10_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        reject(new Error(`no line in ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting = (line) => {
        clearTimeout(timer);
        this.waiting = undefined;
        resolve(line);
      };
      this.flush();
    });
  }

  /** Resolves when the server has closed the connection (what it said before is still read). */
  closed(timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.socket.destroyed || this.socket.readableEnded) return resolve();
      const timer = setTimeout(() => reject(new Error(`still open after ${timeoutMs} ms`)), timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Raw bytes, exactly as given (for bodies with odd line endings, pipelined commands). */
  write(data: string | Buffer): void {
    this.output.write(data);
  }

  /** STARTTLS/STLS after the server's go-ahead: the rest is TLS (lines read but not taken are dropped). */
  async startTls(): Promise<void> {
    this.socket.removeAllListeners('data');
    this.buffer = '';
    this.lines.length = 0;
    this.socket = await secure(this.socket);
    this.output = this.socket;
    this.listen(this.socket);
  }

  /** From now on the server's bytes come through `input` and ours go out through `output` (both over the socket). */
  protected switchStreams(input: Readable, output: Writable): void {
    this.socket.removeAllListeners('data');
    this.buffer = '';
    this.lines.length = 0;
    this.output = output;
    this.listen(input);
  }

  /** The connection itself (TLS once secure). */
  protected get raw(): Socket {
    return this.socket;
  }

  /** The TLS protocol version of the connection (`TLSv1.3`), once secure. */
  get tlsVersion(): string | null {
    return (this.socket as TLSSocket).getProtocol?.() ?? null;
  }

  close(): void {
    this.socket.destroy();
  }

  private flush() {
    while (this.waiting && this.lines.length) this.waiting(this.lines.shift()!);
  }
}

function secure(plain: Socket): Promise<TLSSocket> {
  const s = tls({ socket: plain, rejectUnauthorized: false });
  return new Promise((resolve, reject) => s.once('secureConnect', () => resolve(s)).once('error', reject));
}

/** SMTP: a reply is one line, or several with `-` after the code. */
export class SmtpTranscript extends Transcript {
  static async open(port: number, host = '127.0.0.1', localAddress?: string, options: Omit<TranscriptOptions, 'host' | 'localAddress'> = {}): Promise<SmtpTranscript> {
    return new SmtpTranscript(await Transcript.connect(port, { ...options, host, localAddress }));
  }

  /** The next complete (possibly multi-line) reply. */
  async reply(timeoutMs = 10_000): Promise<string> {
    const parts: string[] = [];
    for (;;) {
      const line = await this.line(timeoutMs);
      parts.push(line);
      if (line[3] !== '-') return parts.join('\n');
    }
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
}

/**
 * POP3: a status line (`+OK`, `-ERR`); a command with a multi-line answer (CAPA, LIST,
 * UIDL, RETR, TOP) is read to its lone `.` with `multi`.
 */
export class Pop3Transcript extends Transcript {
  static async open(port: number, options: TranscriptOptions = {}): Promise<Pop3Transcript> {
    return new Pop3Transcript(await Transcript.connect(port, options));
  }

  /** Expects the next status line to start with `expected`; returns it. */
  async expect(expected: string): Promise<string> {
    const line = await this.line();
    if (!line.startsWith(expected)) throw new Error(`expected "${expected}", got "${line}"`);
    return line;
  }

  async send(command: string, expected: string): Promise<string> {
    this.write(command + '\r\n');
    return this.expect(expected);
  }

  /** A command with a multi-line answer: its status line must start `+OK`; the lines to the `.`, dot-unstuffed. */
  async multi(command: string): Promise<string[]> {
    await this.send(command, '+OK');
    const lines: string[] = [];
    for (;;) {
      const line = await this.line();
      if (line === '.') return lines;
      lines.push(line.startsWith('..') ? line.slice(1) : line);
    }
  }

  /** STLS, then TLS. */
  async stls(): Promise<void> {
    await this.send('STLS', '+OK');
    await this.startTls();
  }

  /** USER and PASS over a secure session: the status line of PASS. */
  async login(user: string, password: string, expected = '+OK'): Promise<string> {
    await this.send(`USER ${user}`, '+OK');
    return this.send(`PASS ${password}`, expected);
  }
}
