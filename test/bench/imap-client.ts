/**
 * A lean IMAP client for the IMAP benchmarks: raw TLS (or TCP) sockets, tagged commands that
 * may be pipelined, and no parsing beyond what finds a response's end: the tag or `*`/`+` of
 * its first line, and literal lengths (`{n}` at a line's end), whose bytes are skipped
 * uncopied. So the client's CPU per operation stays far below the server's.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export interface Reply {
  status: 'OK' | 'NO' | 'BAD' | 'BYE';
  /** The tagged line (its first `lineLimit` characters). */
  text: string;
  /** Literal bytes in the untagged responses that came before it (FETCH bodies). */
  literalBytes: number;
}

export interface OpenOptions {
  port: number;
  host?: string;
  tls: boolean;
  /** A local source address (127.0.0.x) when one address runs out of ephemeral ports. */
  localAddress?: string;
  timeoutMs?: number;
}

export class ImapError extends Error {}

export class ImapClient {
  /** Every untagged response's first line (its first `lineLimit` characters). */
  onUntagged: ((line: string) => void) | undefined;
  /** How much of a response's first line is kept: the bench reads only the start. */
  lineLimit = 200;
  readonly closed: Promise<void>;
  private n = 0;
  private readonly pending = new Map<string, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private readonly continuations: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private greeted: ((line: string) => void) | undefined;
  private partial: Buffer | undefined;
  private skip = 0;
  private first: string | undefined;
  private untaggedLiterals = 0;
  private dead: Error | undefined;
  /** LOGOUT was sent: its `* BYE` is expected. */
  private leaving = false;

  private constructor(private readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.data(chunk));
    this.closed = new Promise((resolve) => socket.once('close', () => {
      this.fail(new ImapError('connection closed'));
      resolve();
    }));
    socket.on('error', (err) => this.fail(err));
  }

  /** Connects and reads the greeting (resolved once `* OK` has come; `* BYE` or a close rejects). */
  static async open(o: OpenOptions): Promise<ImapClient> {
    const host = o.host ?? '127.0.0.1';
    const plain = () => netConnect({ port: o.port, host, localAddress: o.localAddress });
    const socket = !o.tls ? plain() : o.localAddress ? tlsConnect({ socket: plain(), rejectUnauthorized: false }) : tlsConnect({ port: o.port, host, rejectUnauthorized: false });
    const c = new ImapClient(socket);
    const timer = setTimeout(() => socket.destroy(new ImapError(`no greeting in ${o.timeoutMs ?? 30_000} ms`)), o.timeoutMs ?? 30_000);
    try {
      const line = await new Promise<string>((resolve, reject) => {
        c.greeted = resolve;
        c.closed.then(() => reject(c.dead ?? new ImapError('closed before the greeting')));
      });
      if (!line.startsWith('* OK')) throw new ImapError(`greeting: ${line}`);
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return c;
  }

  /** Sends `tag text` (with a LITERAL+ literal when given) and resolves with the tagged answer. */
  command(text: string, literal?: Buffer): Promise<Reply> {
    const tag = `a${++this.n}`;
    if (this.dead) return Promise.reject(this.dead);
    if (text === 'LOGOUT') this.leaving = true;
    const done = new Promise<Reply>((resolve, reject) => this.pending.set(tag, { resolve, reject }));
    if (literal) {
      this.socket.cork();
      this.socket.write(`${tag} ${text} {${literal.length}+}\r\n`);
      this.socket.write(literal);
      this.socket.write('\r\n');
      this.socket.uncork();
    } else this.socket.write(`${tag} ${text}\r\n`);
    return done;
  }

  /** A command that must answer OK. */
  async ok(text: string, literal?: Buffer): Promise<Reply> {
    const r = await this.command(text, literal);
    if (r.status !== 'OK') throw new ImapError(`${text.slice(0, 40)}: ${r.text}`);
    return r;
  }

  /** IDLE: resolves at the server's `+`; `done()` ends it and resolves with the tagged answer. */
  async idle(): Promise<{ done(): Promise<Reply> }> {
    const go = new Promise<void>((resolve, reject) => this.continuations.push({ resolve, reject }));
    const answer = this.command('IDLE');
    answer.catch(() => undefined);
    await Promise.race([go, answer.then((r) => Promise.reject(new ImapError(`IDLE: ${r.text}`)))]);
    return {
      done: () => {
        this.socket.write('DONE\r\n');
        return answer;
      },
    };
  }

  /** LOGOUT, then the connection's end (at most a second later). */
  async logout(): Promise<void> {
    await this.command('LOGOUT').catch(() => undefined);
    this.close();
  }

  close(): void {
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1_000).unref();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private fail(err: Error): void {
    if (this.dead) return;
    this.dead = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const c of this.continuations.splice(0)) c.reject(err);
  }

  // ---- responses: lines, literals skipped by length -------------------------------------

  private data(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - at);
        this.skip -= n;
        at += n;
        continue;
      }
      const nl = chunk.indexOf(10, at);
      if (nl < 0) {
        const rest = chunk.subarray(at);
        this.partial = this.partial ? Buffer.concat([this.partial, rest]) : Buffer.from(rest);
        return;
      }
      let line = chunk.subarray(at, nl + 1);
      at = nl + 1;
      if (this.partial) {
        line = Buffer.concat([this.partial, line]);
        this.partial = undefined;
      }
      this.line(line);
    }
  }

  private line(buf: Buffer): void {
    const end = buf.length - (buf.length > 1 && buf[buf.length - 2] === 13 ? 2 : 1);
    if (this.first === undefined) this.first = buf.toString('latin1', 0, Math.min(end, this.lineLimit));
    // `{123}` or `{123+}` ends the line: that many bytes of literal follow, then the line goes on.
    if (buf[end - 1] === 0x7d) {
      let i = end - 2;
      if (buf[i] === 0x2b) i--;
      let n = 0;
      let scale = 1;
      while (i >= 0 && buf[i] >= 0x30 && buf[i] <= 0x39) {
        n += (buf[i] - 0x30) * scale;
        scale *= 10;
        i--;
      }
      if (i >= 0 && buf[i] === 0x7b && scale > 1) {
        this.skip = n;
        if (this.first[0] === '*') this.untaggedLiterals += n;
        return;
      }
    }
    const first = this.first;
    this.first = undefined;
    this.response(first);
  }

  private response(first: string): void {
    if (this.greeted) {
      const g = this.greeted;
      this.greeted = undefined;
      return g(first);
    }
    if (first[0] === '*') {
      if (first.startsWith('* BYE') && !this.leaving) this.fail(new ImapError(first));
      return this.onUntagged?.(first);
    }
    if (first[0] === '+') return this.continuations.shift()?.resolve();
    const sp = first.indexOf(' ');
    const p = this.pending.get(first.slice(0, sp));
    if (!p) return;
    this.pending.delete(first.slice(0, sp));
    const word = first.slice(sp + 1, sp + 4);
    const status = word === 'OK ' || word === 'OK' ? 'OK' : word === 'NO ' ? 'NO' : word === 'BAD' ? 'BAD' : 'BYE';
    const literalBytes = this.untaggedLiterals;
    this.untaggedLiterals = 0;
    p.resolve({ status, text: first, literalBytes });
  }
}
