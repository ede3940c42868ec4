import { Replies, toCodedError, type CodedError, type Logger } from '@mailgrid/core';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { constants as zlib, createDeflateRaw, createInflateRaw, type DeflateRaw } from 'node:zlib';
import type { AccessConnection, AccessSession } from './connection.js';
import { serverTls, type TlsSource } from './tls-source.js';

/** Input a session may have waiting beyond what it is reading (a command line is short; a pipelining client waits for answers). */
const MAX_PENDING_INPUT = 64 * 1024;

/** A read the session is waiting for: the next line, or the next `n` bytes (a literal). */
type Want = { kind: 'line'; resolve: (line: Buffer) => void; reject: (err: Error) => void } | { kind: 'bytes'; n: number; resolve: (bytes: Buffer) => void; reject: (err: Error) => void };

class SessionClosed extends Error {}

/**
 * What every text protocol session we write (POP3, and IMAP and ManageSieve after it)
 * stands on: its connection, id and logger from the access layer; input read as lines and
 * literals of a known length, only while the session asks for them (a client that sends on
 * without reading its answers is stopped by TCP, and cut off past 64 KB waiting); one
 * command at a time, its answer written out before the next is read; an idle timeout while
 * it waits for the client; STARTTLS; and the drain (between two commands).
 *
 * A protocol implements `greet`, `command` (which may read literals and further lines),
 * `reply` (its words for an error) and `ended` (what it lets go of).
 */
export abstract class LineSession implements AccessSession {
  readonly done: Promise<void>;
  readonly id: string;
  /** The client's address (the PROXY header's when a balancer sent one). */
  readonly client: string;
  protected readonly log: Logger;
  protected socket: Socket;
  protected secure: boolean;
  /** What is read and written: the socket, or the (de)compressors over it after COMPRESS. */
  private input: Readable;
  private output: Writable;
  private deflate: DeflateRaw | undefined;
  private flushQueued = false;
  /** The output holding this turn's writes, if it is. */
  private corked: Writable | undefined;
  private finish!: () => void;
  private chunks: Buffer[] = [];
  private size = 0;
  private want: Want | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private busy = false;
  private draining = false;
  private closed = false;
  private ended_ = false;

  constructor(
    conn: AccessConnection,
    private readonly options: { tls: TlsSource; idleTimeoutMs: () => number },
  ) {
    this.id = conn.id;
    this.client = conn.client;
    this.log = conn.log;
    this.secure = conn.secure;
    this.socket = conn.socket;
    this.input = this.output = conn.socket;
    this.done = new Promise((r) => (this.finish = r));
    this.attach(conn.socket);
    conn.socket.once('close', () => this.end());
  }

  /** The greeting, then commands until the session ends. Called once, by the protocol's handler. */
  run(): this {
    this.log.debug({ event: 'session.connect', secure: this.secure }, 'connection');
    this.greet();
    void this.loop();
    return this;
  }

  protected abstract greet(): void;
  /** One command line (without its CRLF, as bytes: names and passwords are UTF-8). */
  protected abstract command(line: Buffer): Promise<void>;
  /** The protocol's line for an error (a fault in a command, the idle timeout, the drain): keyed by its code. */
  protected abstract reply(error: CodedError): string;
  /** The session has ended: let go of what it holds. */
  protected ended(): void {}

  private async loop(): Promise<void> {
    while (!this.closed) {
      let line: Buffer;
      try {
        line = await this.line();
      } catch {
        return; // closed
      }
      this.busy = true;
      try {
        await this.command(line);
      } catch (err) {
        if (err instanceof SessionClosed) return;
        this.log.warn({ event: 'session.command-failed', err: (err as Error).message }, 'command failed');
        this.send(this.reply(toCodedError(err)));
      }
      await this.flushed();
      this.busy = false;
      if (this.draining) return this.hangUp(this.reply(Replies.shuttingDown()));
    }
  }

  // ---- input --------------------------------------------------------------------------

  /** The next line, without its line end. */
  protected line(): Promise<Buffer> {
    return new Promise((resolve, reject) => this.ask({ kind: 'line', resolve, reject }));
  }

  /** The next `n` bytes (a literal announced by the command line). */
  protected bytes(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => this.ask({ kind: 'bytes', n, resolve, reject }));
  }

  private ask(want: Want): void {
    if (this.closed) return want.reject(new SessionClosed('session closed'));
    this.want = want;
    if (this.satisfy()) return;
    // Only now is more read; the client's idle time starts.
    this.input.resume();
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.hangUp(this.reply(Replies.idleTimeout())), this.options.idleTimeoutMs());
    this.idleTimer.unref();
  }

  private attach(input: Readable): void {
    this.input = input;
    input.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.size += chunk.length;
      if (this.satisfy()) return;
      const limit = MAX_PENDING_INPUT + (this.want?.kind === 'bytes' ? this.want.n : 0);
      if (this.size > limit) this.hangUp(this.reply(Replies.tooMuchInput()));
    });
    input.pause();
  }

  /** Hands the waiting read what it asked for, if it is here; nothing more is read until the next ask. */
  private satisfy(): boolean {
    const want = this.want;
    if (!want) return false;
    let n: number;
    if (want.kind === 'bytes') {
      if (this.size < want.n) return false;
      n = want.n;
    } else {
      const at = this.indexOfNewline();
      if (at < 0) return false;
      n = at + 1;
    }
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.size);
    const taken = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.size = rest.length;
    this.want = undefined;
    clearTimeout(this.idleTimer);
    this.input.pause();
    if (want.kind === 'bytes') want.resolve(taken);
    else want.resolve(taken.subarray(0, taken.length - (taken.length > 1 && taken[taken.length - 2] === 0x0d ? 2 : 1)));
    return true;
  }

  private indexOfNewline(): number {
    let offset = 0;
    for (const c of this.chunks) {
      const at = c.indexOf(0x0a);
      if (at >= 0) return offset + at;
      offset += c.length;
    }
    return -1;
  }

  // ---- output -------------------------------------------------------------------------

  protected send(line: string): void {
    this.write(Buffer.from(line + '\r\n'));
  }

  protected write(data: Buffer): void {
    if (this.closed) return;
    this.batch();
    this.output.write(data);
    // Compressed output goes out at the end of what this turn writes (a sync flush each turn, not each line).
    if (this.deflate && !this.flushQueued) {
      this.flushQueued = true;
      setImmediate(() => {
        this.flushQueued = false;
        if (!this.closed) this.deflate?.flush(zlib.Z_SYNC_FLUSH);
      });
    }
  }

  /**
   * What one turn writes (an answer's lines) is held and goes out together at its end: one
   * TLS record and one TCP segment, not one per line (the sockets have no Nagle delay).
   */
  private batch(): void {
    if (this.corked) return;
    const out = (this.corked = this.output);
    out.cork();
    process.nextTick(() => this.unbatch(out));
  }

  /** Sends what the turn holds now (before STARTTLS or COMPRESS changes the stream under it). */
  private unbatch(out = this.corked): void {
    if (!out || this.corked !== out) return;
    this.corked = undefined;
    out.uncork();
  }

  /** Resolves once what was written has gone out (or the connection is gone): a long answer waits on a slow reader. */
  protected flushed(): Promise<void> {
    const out = this.output;
    if (this.closed || !out.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        out.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      out.once('drain', done);
      this.socket.once('close', done);
    });
  }

  /**
   * COMPRESS=DEFLATE (RFC 4978): after the protocol's OK, both directions are raw DEFLATE.
   * Input still waiting here came after the command, so it is compressed already.
   */
  protected compress(): void {
    this.unbatch();
    const waiting = this.chunks.length ? Buffer.concat(this.chunks, this.size) : undefined;
    this.chunks = [];
    this.size = 0;
    this.input.removeAllListeners('data');
    this.input.pause();
    const inflate = createInflateRaw();
    const deflate = createDeflateRaw();
    const broken = (err: Error) => {
      this.log.debug({ event: 'session.compress-error', err: err.message }, 'compressed stream broken');
      this.closed = true;
      this.socket.destroy();
    };
    inflate.on('error', broken);
    deflate.on('error', broken);
    this.input.pipe(inflate);
    deflate.pipe(this.socket);
    if (waiting) inflate.write(waiting);
    this.output = this.deflate = deflate;
    this.attach(inflate);
  }

  /** Whether COMPRESS is on. */
  protected get compressed(): boolean {
    return !!this.deflate;
  }

  // ---- TLS ----------------------------------------------------------------------------

  /**
   * STARTTLS (STLS): after the protocol's go-ahead, the rest of the session is TLS. What
   * the client sent after the command is dropped: nothing plain may ride into it.
   */
  protected startTls(): void {
    this.unbatch();
    this.chunks = [];
    this.size = 0;
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.pause();
    this.secure = true;
    this.socket = serverTls(plain, this.options.tls.context, (err) => this.log.debug({ event: 'session.tls-error', err: err.message }, 'TLS error'));
    this.output = this.socket;
    this.attach(this.socket);
    // The plain socket's handle is the TLS socket's now: its close is the one that comes.
    this.socket.once('close', () => this.end());
  }

  // ---- the end ------------------------------------------------------------------------

  /** Ends the session now if it is between commands, else once the command under way is answered. */
  drain(): void {
    this.draining = true;
    if (!this.busy) this.hangUp(this.reply(Replies.shuttingDown()));
  }

  /** The drain's deadline: ends now, whatever is under way. */
  close(): void {
    this.hangUp(this.reply(Replies.shuttingDown()));
  }

  /** Ends the connection after `last` (the protocol's last words, if any). */
  protected hangUp(last?: string): void {
    if (this.closed) return;
    if (last) this.send(last);
    this.closed = true;
    // Nothing more is read: what a client sends on (a flood past the input limit) stays in its socket until the destroy, not in memory here.
    this.input.pause();
    this.chunks = [];
    this.size = 0;
    // The compressor ends the socket after its last bytes.
    this.output.end();
    setTimeout(() => this.socket.destroy(), 1_000).unref();
    this.end();
  }

  private end(): void {
    if (this.ended_) return;
    this.ended_ = true;
    this.closed = true;
    clearTimeout(this.idleTimer);
    this.want?.reject(new SessionClosed('session closed'));
    this.want = undefined;
    this.ended();
    this.finish();
  }

  /** Whether the session is over (its connection closed, or closing). */
  protected get isClosed(): boolean {
    return this.closed;
  }
}
