/**
 * For the tests: a CommandInput over bytes, read as the session reads its socket (a line
 * ends at LF, a CR before it dropped), and ParseOptions that record what was asked.
 */
import type { CommandInput, LiteralContext, ParseOptions } from './parser.js';

/** Reading past the end of the bytes: in a test, the client has nothing more to send. */
export class EndOfInput extends Error {
  override readonly name = 'EndOfInput';
}

export class BufferInput implements CommandInput {
  private pos = 0;
  /** Reads made, to bound a parser's work. */
  reads = 0;
  private readonly data: Buffer;

  constructor(data: Buffer | string) {
    this.data = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  }

  async line(): Promise<Buffer> {
    this.reads++;
    const at = this.data.indexOf(0x0a, this.pos);
    if (at < 0) throw new EndOfInput('no line left');
    const end = at > this.pos && this.data[at - 1] === 0x0d ? at - 1 : at;
    const line = this.data.subarray(this.pos, end);
    this.pos = at + 1;
    return line;
  }

  async bytes(n: number): Promise<Buffer> {
    this.reads++;
    if (this.pos + n > this.data.length) throw new EndOfInput(`${n} bytes asked for, ${this.data.length - this.pos} left`);
    const bytes = this.data.subarray(this.pos, this.pos + n);
    this.pos += n;
    return bytes;
  }

  /** What has not been read. */
  rest(): string {
    return this.data.subarray(this.pos).toString('utf8');
  }

  get done(): boolean {
    return this.pos >= this.data.length;
  }
}

export interface RecordingOptions extends ParseOptions {
  /** The sizes the parser asked a continuation for, in order. */
  continuations: { size: number; literal: LiteralContext }[];
}

/** Options as a session would give them: 8 KiB literals, APPEND up to 1 MiB; `over` to change any. */
export function testOptions(over: Partial<ParseOptions> & { refuse?: boolean } = {}): RecordingOptions {
  const { refuse, ...rest } = over;
  const continuations: RecordingOptions['continuations'] = [];
  return {
    maxLiteral: (command) => (command === 'APPEND' ? 1024 * 1024 : 8192),
    utf8: false,
    ...rest,
    continuations,
    continuation(size, literal) {
      continuations.push({ size, literal });
      return rest.continuation ? rest.continuation(size, literal) : !refuse;
    },
  };
}
