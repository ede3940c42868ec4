import { Writable } from 'node:stream';
import { constants as zlib, createDeflateRaw, createInflateRaw } from 'node:zlib';
import { Transcript, type TranscriptOptions } from './smtp-transcript.js';

/** The answer to one IMAP command: its untagged responses (literals inline), and the tagged line. */
export interface ImapReply {
  /** Each untagged response, `* ...` without the `* `, with any literal's bytes inline after its `{n}` and CRLF (latin1). */
  untagged: string[];
  /** The tagged line: `OK ...`, `NO ...` or `BAD ...` (without the tag). */
  tagged: string;
}

/**
 * IMAP: a command gets a tag (`T1`, `T2`, ...), its answer is read to the line with that
 * tag; a server response with a literal (`{n}` at a line's end) is read whole, its bytes
 * inline. A step checks the start of the tagged answer, e.g.
 * `await imap.run('SELECT nosuch', 'NO [NONEXISTENT]')`. Server bytes are read as latin1:
 * `utf8(text)` turns a UTF-8 name back.
 */
export class ImapTranscript extends Transcript {
  /** The server's greeting (`* OK [CAPABILITY ...] ...`). */
  greeting = '';
  private tags = 0;

  static async open(port: number, options: TranscriptOptions = {}): Promise<ImapTranscript> {
    const t = new ImapTranscript(await Transcript.connect(port, options));
    t.greeting = await t.response();
    return t;
  }

  /** The next response: an untagged or tagged line, or a continuation (`+ ...`), a literal read whole. */
  async response(timeoutMs = 10_000): Promise<string> {
    let text = await this.line(timeoutMs);
    for (let m = /\{(\d+)\+?\}$/.exec(text); m; m = /\{(\d+)\+?\}$/.exec(text)) {
      const n = Number(m[1]);
      let data = '';
      let first = true;
      while (data.length < n) {
        data += (first ? '' : '\r\n') + (await this.line(timeoutMs));
        first = false;
      }
      // The literal ends inside a line: the rest of that line continues the response.
      text += '\r\n' + data;
    }
    return text;
  }

  /** The tag the next command gets. */
  peekTag(): string {
    return `T${this.tags + 1}`;
  }

  /** A new tag. */
  tag(): string {
    return `T${++this.tags}`;
  }

  /** Reads to the tagged answer of `tag`. */
  async until(tag: string, timeoutMs = 10_000): Promise<ImapReply> {
    const untagged: string[] = [];
    for (;;) {
      const r = await this.response(timeoutMs);
      if (r.startsWith('* ')) untagged.push(r.slice(2));
      else if (r.startsWith(tag + ' ')) return { untagged, tagged: r.slice(tag.length + 1) };
      else throw new Error(`unexpected response while waiting for ${tag}: ${r.slice(0, 200)}`);
    }
  }

  /**
   * Sends `command` with a new tag and reads its answer; the tagged line must start with
   * `expected` (`OK`, `NO [NONEXISTENT]`, `BAD`), or anything if `expected` is null.
   */
  async run(command: string | Buffer, expected: string | null = 'OK'): Promise<ImapReply> {
    const tag = this.tag();
    this.write(Buffer.concat([Buffer.from(`${tag} `), typeof command === 'string' ? Buffer.from(command) : command, Buffer.from('\r\n')]));
    const reply = await this.until(tag);
    if (expected !== null && !reply.tagged.startsWith(expected)) throw new Error(`${command.toString().slice(0, 200)}: expected "${expected}", got "${reply.tagged}" after ${JSON.stringify(reply.untagged).slice(0, 500)}`);
    return reply;
  }

  /** The untagged responses of a reply that start with `prefix` (`FETCH`, `3 EXPUNGE` is `/^\d+ EXPUNGE/`). */
  static pick(reply: ImapReply, prefix: string | RegExp): string[] {
    return reply.untagged.filter((u) => (typeof prefix === 'string' ? u.startsWith(prefix) : prefix.test(u)));
  }

  /** STARTTLS, then TLS. */
  async starttls(): Promise<void> {
    await this.run('STARTTLS');
    await this.startTls();
  }

  /** LOGIN with quoted strings. */
  login(user: string, password: string, expected = 'OK'): Promise<ImapReply> {
    return this.run(`LOGIN ${JSON.stringify(user)} ${JSON.stringify(password)}`, expected);
  }

  /** COMPRESS DEFLATE (RFC 4978), then both ways through raw DEFLATE, each write flushed whole. */
  async compress(): Promise<void> {
    await this.run('COMPRESS DEFLATE');
    const inflate = createInflateRaw();
    const deflate = createDeflateRaw();
    // Each command goes out at once: a sync flush after every write (zlib's own flush writes to the deflater, so not inside its write).
    const output = new Writable({
      write(chunk: Buffer, _encoding, done) {
        deflate.write(chunk);
        deflate.flush(zlib.Z_SYNC_FLUSH, () => done());
      },
    });
    this.switchStreams(inflate, output);
    // The socket gives latin1 strings (the transcript set that): back to bytes for the inflater.
    const socket = this.raw;
    socket.on('data', (d: string) => inflate.write(Buffer.from(d, 'latin1')));
    deflate.on('data', (d: Buffer) => socket.write(d));
  }
}

/** A UTF-8 string that came through a latin1 transcript. */
export function utf8(latin1: string): string {
  return Buffer.from(latin1, 'latin1').toString('utf8');
}
