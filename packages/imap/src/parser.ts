/**
 * The IMAP command parser (RFC 9051, RFC 3501 and the extensions in types.ts): one command
 * at a time, pulled from the session line by line, so a literal is read only once it has
 * been announced, checked against its limit and (when synchronizing) agreed to.
 *
 * What the session does with a failure (the doc of ImapParseError says it in full):
 * - ImapParseError without `unread`: send `err.response()`; the input is at the next command.
 * - ImapParseError with `unread`: send `err.response()`, then `* BYE` and close: the client
 *   is sending a non-synchronizing literal of `err.pending` bytes that was not read.
 * - any other error: it came from `input` (or a callback) and passes through as it is: the
 *   connection is gone or going; there is nothing to answer.
 */
import { decodeMailboxName, decodeMailboxPattern, MailboxNameError } from './mailbox-name.js';
import type {
  Command,
  FetchItem,
  Flag,
  MailboxName,
  Partial,
  QresyncParams,
  SearchKey,
  SearchReturn,
  Section,
  SequenceSet,
  SortKey,
  StatusItems,
  TaggedCommand,
} from './types.js';

/** Where the parser reads a command from: the session's input, one read at a time. */
export interface CommandInput {
  /** The next line, without CRLF. */
  line(): Promise<Buffer>;
  /** The next n bytes (a literal). */
  bytes(n: number): Promise<Buffer>;
}

/** What a synchronizing literal is for, so the session can decide before the client sends it. */
export interface LiteralContext {
  /** The command's name, upper-cased (`APPEND`, `LOGIN`, ...; `UID` left off). */
  command: string;
  /** APPEND's message data, not an argument. */
  message: boolean;
  /** APPEND's mailbox, once read. */
  mailbox?: MailboxName;
}

export interface ParseOptions {
  /**
   * A synchronizing literal {n} is announced: the session sends "+ ..." and returns true (or
   * refuses: return false and the parser fails the command with TOOBIG, without reading the
   * literal; the client, waiting for "+", sends nothing more of it).
   */
  continuation(size: number, literal: LiteralContext): Promise<boolean> | boolean;
  /**
   * Largest literal taken (APPENDLIMIT for APPEND's messages, a few KB elsewhere); LITERAL+
   * {n+} over it, and LITERAL- {n+} over 4096, is an error. An argument's literal is never
   * taken over 64 KiB, whatever this says.
   */
  maxLiteral(command: string): number;
  /** UTF8=ACCEPT enabled: mailbox names are UTF-8, not modified UTF-7. */
  utf8: boolean;
  /** The server announces LITERAL+ (non-synchronizing literals up to maxLiteral); without, LITERAL- (up to 4096 bytes). */
  literalPlus?: boolean;
  /** Most bytes one command may take, its lines and literals, APPEND's messages aside (default 1 MiB). */
  maxCommandBytes?: number;
  /** Most bytes of all of one APPEND's messages together (MULTIAPPEND; default 10 × maxLiteral('APPEND')). */
  maxAppendBytes?: number;
}

/**
 * `PARSE`: not IMAP (a plain BAD). `TOOBIG`: a literal or the command over a limit.
 * `CLIENTBUG`: well-formed but a combination the RFC forbids. `BADCHARSET`: SEARCH's charset
 * unknown (a NO). `LIMIT`: nested too deeply. `CANNOT`: a mailbox name that does not decode
 * (a NO).
 */
export type ParseErrorCode = 'PARSE' | 'TOOBIG' | 'CLIENTBUG' | 'BADCHARSET' | 'LIMIT' | 'CANNOT';

// A brand, not instanceof: it survives duplicate installs of this package.
const PARSE_ERROR = Symbol.for('mailgrid.ImapParseError');

/**
 * A command the parser could not take. What the session must do:
 * - `unread` unset: answer `response()` (`tag BAD ...`, `* BAD ...` when no tag was read, or
 *   `tag NO [TOOBIG]`/`[BADCHARSET]` when `status` is NO) and read the next command: the
 *   parser has consumed the rest of the command (the rest of the line, and any
 *   non-synchronizing literal it announced, up to maxLiteral; a synchronizing one is refused
 *   by sending no "+", so the client sends nothing more).
 * - `unread` set: the client is sending a non-synchronizing literal of `pending` bytes the
 *   parser would not read (over the limit); answer `response()`, then `* BYE` and close
 *   the connection (RFC 7888 allows it): what follows on the wire is not a command.
 */
export class ImapParseError extends Error {
  readonly [PARSE_ERROR] = true;
  override readonly name = 'ImapParseError';
  /** The command's tag, when one was read. */
  readonly tag?: string;
  readonly code: ParseErrorCode;
  /** BAD, or NO for a well-formed command refused (an APPEND over APPENDLIMIT, an unknown charset). */
  readonly status: 'BAD' | 'NO';
  /** The literal was not read: the connection must be closed. */
  readonly unread?: boolean;
  /** With `unread`: the bytes the client is still sending. */
  readonly pending?: number;

  constructor(
    message: string,
    init: { code?: ParseErrorCode; status?: 'BAD' | 'NO'; tag?: string; unread?: boolean; pending?: number; cause?: unknown } = {},
  ) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code ?? 'PARSE';
    this.status = init.status ?? 'BAD';
    if (init.tag !== undefined) this.tag = init.tag;
    if (init.unread) {
      this.unread = true;
      this.pending = init.pending;
    }
  }

  /** The response line, without CRLF: `A1 BAD [TOOBIG] Literal too big`. */
  response(): string {
    const code = this.code === 'PARSE' ? '' : `[${this.code}] `;
    return `${this.tag ?? '*'} ${this.status} ${code}${this.message}`;
  }

  static is(err: unknown): err is ImapParseError {
    return typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[PARSE_ERROR] === true;
  }
}

// ---- limits -----------------------------------------------------------------------------

/** LITERAL- (RFC 7888 §4): the most a non-synchronizing literal may carry without LITERAL+. */
const NON_SYNC_LIMIT = 4096;
/** An argument (a name, a password, a search string) is never a large thing. */
const ARGUMENT_LITERAL_LIMIT = 64 * 1024;
const DEFAULT_MAX_COMMAND_BYTES = 1024 * 1024;
/** Parenthesised search keys. */
const MAX_PAREN_DEPTH = 32;
/** Search keys within keys, by parentheses, NOT and OR (OR chains run deeper than parentheses do). */
const MAX_SEARCH_DEPTH = 128;
/** A literal being discarded is read in pieces this big, never whole. */
const DISCARD_CHUNK = 64 * 1024;

// ---- characters -------------------------------------------------------------------------

const SP = 0x20;
const DQUOTE = 0x22;
const DOLLAR = 0x24;
const LPAREN = 0x28;
const RPAREN = 0x29;
const STAR = 0x2a;
const DOT = 0x2e;
const LT = 0x3c;
const GT = 0x3e;
const LBRACKET = 0x5b;
const BACKSLASH = 0x5c;
const RBRACKET = 0x5d;
const LBRACE = 0x7b;
const TILDE = 0x7e;

function charClass(test: (c: number) => boolean): Uint8Array {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) t[c] = test(c) ? 1 : 0;
  return t;
}
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isAlpha = (c: number) => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
/** ATOM-CHAR: printable ASCII but atom-specials. */
const ATOM = charClass((c) => c > 0x20 && c < 0x7f && !'(){%*"\\]'.includes(String.fromCharCode(c)));
const ASTRING = charClass((c) => ATOM[c] === 1 || c === RBRACKET);
const TAG = charClass((c) => ASTRING[c] === 1 && c !== 0x2b);
const LIST_CHAR = charClass((c) => ATOM[c] === 1 || c === 0x25 || c === STAR || c === RBRACKET);
const SEQ_CHAR = charClass((c) => isDigit(c) || c === STAR || c === 0x3a || c === 0x2c || c === DOLLAR);
const DIGIT = charClass(isDigit);
const FETCH_NAME = charClass((c) => isAlpha(c) || isDigit(c) || c === DOT);
const SECTION_TEXT = charClass((c) => isAlpha(c) || c === DOT);
const STORE_NAME = charClass((c) => isAlpha(c) || c === DOT || c === 0x2b || c === 0x2d);

const LITERAL = /^(~?)\{(\d{1,20})(\+?)\}$/;
const TRAILING_LITERAL = /(~?)\{(\d+)(\+?)\}$/;
const EMPTY = Buffer.alloc(0);
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

const SYSTEM_FLAGS = new Map(['\\Answered', '\\Flagged', '\\Deleted', '\\Seen', '\\Draft', '\\Recent'].map((f) => [f.toLowerCase(), f]));
const canonicalFlag = (flag: string): Flag => SYSTEM_FLAGS.get(flag.toLowerCase()) ?? flag;

// ---- the reader -------------------------------------------------------------------------

/** A malformed command, before recovery. */
class Fail extends Error {
  constructor(
    message: string,
    readonly code: ParseErrorCode = 'PARSE',
    readonly status: 'BAD' | 'NO' = 'BAD',
  ) {
    super(message);
  }
}

/** An error of the session's own (its input or a callback): passed through, never answered. */
class SessionFailed {
  constructor(readonly cause: unknown) {}
}

/** Text for an error message: printable ASCII only, short. */
const printable = (s: string) => (s.length > 40 ? s.slice(0, 40) + '...' : s).replace(/[^\x20-\x7e]/g, '?');

class Reader {
  line: Buffer = EMPTY;
  pos = 0;
  tag: string | undefined;
  /** The command's name, for maxLiteral. */
  name = '';
  /** A synchronizing literal was refused: the client sends nothing more of this command. */
  ended = false;
  /** Decodes SEARCH's strings: its CHARSET, else UTF-8 (a superset of US-ASCII). */
  decoder: { decode(data: Uint8Array): string } = utf8Strict;
  parens = 0;
  private used = 0;
  private appended = 0;
  private readonly maxCommandBytes: number;

  constructor(
    private readonly input: CommandInput,
    readonly options: ParseOptions,
  ) {
    this.maxCommandBytes = options.maxCommandBytes ?? DEFAULT_MAX_COMMAND_BYTES;
  }

  fail(message: string, code?: ParseErrorCode, status?: 'BAD' | 'NO'): never {
    throw new Fail(message, code, status);
  }

  /** A read or callback of the session's: its errors are told apart from the parser's. */
  async session<T>(call: () => Promise<T> | T): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw new SessionFailed(err);
    }
  }

  maxLiteral(command: string): number {
    let limit: number;
    try {
      limit = this.options.maxLiteral(command);
    } catch (err) {
      throw new SessionFailed(err);
    }
    // NaN would let every size through.
    return limit >= 0 ? limit : 0;
  }

  async nextLine(): Promise<void> {
    this.line = await this.session(() => this.input.line());
    this.pos = 0;
    this.used += this.line.length + 2;
    if (this.used > this.maxCommandBytes) this.fail('Command too long', 'TOOBIG');
  }

  peek(): number {
    return this.pos < this.line.length ? this.line[this.pos] : -1;
  }

  has(c: number): boolean {
    return this.pos < this.line.length && this.line[this.pos] === c;
  }

  eol(): boolean {
    return this.pos >= this.line.length;
  }

  expect(c: number, what: string): void {
    if (!this.has(c)) this.fail(`Expected ${what}`);
    this.pos++;
  }

  sp(after?: string): void {
    if (!this.has(SP)) this.fail(after ? `Expected SP after ${after}` : 'Expected SP');
    this.pos++;
  }

  /** An optional SP: taken when there. */
  optionalSp(): boolean {
    if (!this.has(SP)) return false;
    this.pos++;
    return true;
  }

  end(): void {
    if (!this.eol()) this.fail(this.has(SP) ? 'Too many arguments' : 'Unexpected characters');
  }

  /** The run of characters of a class (possibly empty), as ASCII. */
  run(cls: Uint8Array): string {
    const start = this.pos;
    const line = this.line;
    while (this.pos < line.length && cls[line[this.pos]] === 1) this.pos++;
    return line.toString('latin1', start, this.pos);
  }

  atom(what: string): string {
    const a = this.run(ATOM);
    if (!a) this.fail(`Expected ${what}`);
    return a;
  }

  /** An atom upper-cased: keywords are case-insensitive. */
  word(what: string): string {
    return this.atom(what).toUpperCase();
  }

  /** Takes `word` (case-insensitively) if it is next, as a whole atom. */
  takeWord(word: string): boolean {
    const start = this.pos;
    if (this.run(ATOM).toUpperCase() === word) return true;
    this.pos = start;
    return false;
  }

  // ---- strings --------------------------------------------------------------------------

  quoted(): Buffer {
    this.pos++;
    const line = this.line;
    const parts: Buffer[] = [];
    let start = this.pos;
    for (;;) {
      if (this.pos >= line.length) this.fail('Unterminated quoted string');
      const c = line[this.pos];
      if (c === DQUOTE) {
        parts.push(line.subarray(start, this.pos));
        this.pos++;
        return parts.length === 1 ? parts[0] : Buffer.concat(parts);
      }
      if (c === BACKSLASH) {
        const next = line[this.pos + 1];
        if (next !== DQUOTE && next !== BACKSLASH) this.fail('Invalid escape in quoted string');
        parts.push(line.subarray(start, this.pos));
        start = this.pos + 1;
        this.pos += 2;
        continue;
      }
      if (c === 0 || c === 0x0d || c === 0x0a) this.fail('Invalid character in quoted string');
      this.pos++;
    }
  }

  /**
   * A literal `{n}`, `{n+}` or (APPEND's message only) `~{n}`, which must end the line: its
   * limits checked, the continuation asked for, the bytes read, and the line after it (the
   * rest of the command) made the current one.
   */
  async literal(message: boolean, mailbox?: MailboxName): Promise<{ data: Buffer; binary: boolean }> {
    const m = LITERAL.exec(this.line.toString('latin1', this.pos));
    if (!m) this.fail('Invalid literal (a literal ends its line)');
    const binary = m[1] === '~';
    const nonSync = m[3] === '+';
    const size = Number(m[2]);
    if (binary && !message) this.fail('A binary literal is only taken for a message');
    const limit = message ? this.maxLiteral('APPEND') : Math.min(this.maxLiteral(this.name), ARGUMENT_LITERAL_LIMIT);
    let refusal: [string, 'BAD' | 'NO'] | undefined;
    if (nonSync && !this.options.literalPlus && size > NON_SYNC_LIMIT) refusal = ['Non-synchronizing literal over 4096 bytes', 'BAD'];
    else if (size > limit) refusal = message ? [`Message over the limit of ${limit} bytes`, 'NO'] : ['Literal too big', 'BAD'];
    else if (message && this.appended + size > (this.options.maxAppendBytes ?? 10 * limit)) refusal = ['Messages over the limit of one APPEND', 'NO'];
    else if (!message && this.used + size > this.maxCommandBytes) refusal = ['Command too long', 'BAD'];
    if (refusal) {
      // No "+" is sent: the client sends nothing more of this command. A non-synchronizing
      // literal comes anyway: recovery reads or refuses it.
      if (!nonSync) this.ended = true;
      this.fail(refusal[0], 'TOOBIG', refusal[1]);
    }
    if (!nonSync) {
      const context: LiteralContext = { command: this.name, message };
      if (mailbox !== undefined) context.mailbox = mailbox;
      if (!(await this.session(() => this.options.continuation(size, context)))) {
        this.ended = true;
        this.fail('Literal refused', 'TOOBIG', message ? 'NO' : 'BAD');
      }
    }
    this.line = EMPTY;
    this.pos = 0;
    const data = size === 0 ? EMPTY : await this.session(() => this.input.bytes(size));
    if (message) this.appended += size;
    else this.used += size;
    await this.nextLine();
    // Checked once the line after it is read: the input then stands where recovery expects.
    if (!binary && data.includes(0)) this.fail('NUL in a literal (only a binary literal may hold one)');
    return { data, binary };
  }

  async string(what: string): Promise<Buffer> {
    const c = this.peek();
    if (c === DQUOTE) return this.quoted();
    if (c === LBRACE) return (await this.literal(false)).data;
    this.fail(`Expected ${what}`);
  }

  async astring(what: string): Promise<Buffer> {
    const c = this.peek();
    if (c === DQUOTE || c === LBRACE) return this.string(what);
    const start = this.pos;
    this.run(ASTRING);
    if (this.pos === start) this.fail(`Expected ${what}`);
    return this.line.subarray(start, this.pos);
  }

  /** NIL, or a string. */
  async nstring(what: string): Promise<Buffer | null> {
    const c = this.peek();
    if (c === DQUOTE || c === LBRACE) return this.string(what);
    if (this.takeWord('NIL')) return null;
    this.fail(`Expected ${what} or NIL`);
  }

  text(data: Buffer, what: string): string {
    try {
      return utf8Strict.decode(data);
    } catch {
      this.fail(`${what} is not UTF-8`);
    }
  }

  async astringText(what: string): Promise<string> {
    return this.text(await this.astring(what), what);
  }

  /** A search string, in SEARCH's charset. */
  async searchText(what: string): Promise<string> {
    const data = await this.astring(what);
    try {
      return this.decoder.decode(data);
    } catch {
      this.fail(`${what} is not in the charset given`);
    }
  }

  async mailbox(what = 'mailbox name'): Promise<MailboxName> {
    return this.decodeName(await this.astring(what), decodeMailboxName);
  }

  /** LIST's reference and patterns: list-mailbox takes `%` and `*` unquoted. */
  async listMailbox(): Promise<MailboxName> {
    const c = this.peek();
    if (c === DQUOTE || c === LBRACE) return this.decodeName(await this.string('mailbox pattern'), decodeMailboxPattern);
    const start = this.pos;
    this.run(LIST_CHAR);
    if (this.pos === start) this.fail('Expected a mailbox pattern');
    return this.decodeName(this.line.subarray(start, this.pos), decodeMailboxPattern);
  }

  decodeName(raw: Buffer, decode: (raw: Buffer, utf8: boolean) => string): MailboxName {
    try {
      return decode(raw, this.options.utf8);
    } catch (err) {
      // A well-formed string that names no mailbox: NO, not BAD (RFC 9051 §6.3.4; mbsync drops the whole account on a BAD, one folder on a NO).
      if (err instanceof MailboxNameError) this.fail(err.message, 'CANNOT', 'NO');
      throw err;
    }
  }

  // ---- numbers and sets -----------------------------------------------------------------

  private digits(what: string, max: number): string {
    const s = this.run(DIGIT);
    if (!s) this.fail(`Expected ${what}`);
    if (s.length > max) this.fail(`${what} out of range`);
    return s;
  }

  /** number: 32 bits unsigned. */
  number(what: string): number {
    const n = Number(this.digits(what, 10));
    if (n > 0xffffffff) this.fail(`${what} out of range`);
    return n;
  }

  /** nz-number: no leading zero, not 0. */
  nzNumber(what: string): number {
    const start = this.pos;
    const n = this.number(what);
    if (this.line[start] === 0x30) this.fail(`${what} must be a non-zero number`);
    return n;
  }

  /** number64, where JavaScript's numbers hold it exactly. */
  safeNumber(what: string): number {
    const n = Number(this.digits(what, 16));
    if (n > Number.MAX_SAFE_INTEGER) this.fail(`${what} out of range`);
    return n;
  }

  /** mod-sequence-value(zer): 63 bits. */
  modseq(what = 'mod-sequence'): bigint {
    const n = BigInt(this.digits(what, 19));
    if (n > 0x7fffffffffffffffn) this.fail(`${what} out of range`);
    return n;
  }

  seqSet(what = 'sequence set'): SequenceSet {
    const text = this.run(SEQ_CHAR);
    if (!text) this.fail(`Expected a ${what}`);
    return sequenceSetOf(text, (message) => this.fail(message));
  }

  // ---- flags ----------------------------------------------------------------------------

  flag(): Flag {
    const system = this.has(BACKSLASH);
    if (system) this.pos++;
    const name = this.run(ATOM);
    if (!name) this.fail('Expected a flag');
    return system ? canonicalFlag('\\' + name) : name;
  }

  /** `(flag ...)`, possibly empty. */
  flagList(): Flag[] {
    this.expect(LPAREN, "'(' for a flag list");
    const flags: Flag[] = [];
    if (this.has(RPAREN)) {
      this.pos++;
      return flags;
    }
    for (;;) {
      flags.push(this.flag());
      if (this.has(RPAREN)) break;
      this.sp();
    }
    this.pos++;
    return flags;
  }

  /** Recovery: consume what is left of a failed command (see ImapParseError). */
  async recover(): Promise<{ unread: boolean; pending?: number }> {
    if (this.ended) return { unread: false };
    const perLiteral = this.maxLiteral(this.name);
    const budget = this.maxCommandBytes + perLiteral;
    let discarded = 0;
    for (;;) {
      const tail = this.line.toString('latin1', Math.max(0, this.line.length - 64));
      const m = TRAILING_LITERAL.exec(tail);
      // A synchronizing literal is refused by sending no "+": nothing more comes.
      if (!m || m[3] !== '+') return { unread: false };
      const size = Number(m[2]);
      if (size > perLiteral || discarded + size > budget) return { unread: true, pending: size };
      for (let left = size; left > 0; ) {
        const n = Math.min(left, DISCARD_CHUNK);
        await this.session(() => this.input.bytes(n));
        left -= n;
      }
      this.line = await this.session(() => this.input.line());
      this.pos = 0;
      discarded += size + this.line.length + 2;
    }
  }
}

// ---- sequence sets ----------------------------------------------------------------------

const SEQ_NUMBER = /^[1-9]\d{0,9}$/;

function sequenceSetOf(text: string, fail: (message: string) => never): SequenceSet {
  if (text === '$') return { saved: true };
  const number = (s: string): number => {
    if (s === '*') return Infinity;
    const n = Number(s);
    if (!SEQ_NUMBER.test(s) || n > 0xffffffff) fail(`Invalid sequence set: ${printable(text)}`);
    return n;
  };
  const ranges: [number, number][] = [];
  for (const part of text.split(',')) {
    const colon = part.indexOf(':');
    if (colon < 0) {
      const n = number(part);
      ranges.push([n, n]);
    } else {
      const a = number(part.slice(0, colon));
      const b = number(part.slice(colon + 1));
      ranges.push(a <= b ? [a, b] : [b, a]);
    }
  }
  return { ranges };
}

/**
 * A sequence set from its text (`1:3,5,7:*`, `$`). Each range comes low to high, `*` as
 * Infinity: once `*` is resolved to the largest number in use, a range may need swapping
 * again (`5:*` with 3 messages is `3:5`).
 */
export function parseSequenceSet(text: string): SequenceSet {
  return sequenceSetOf(text, (message) => {
    throw new ImapParseError(message);
  });
}

// ---- dates ------------------------------------------------------------------------------

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const monthIndex = (m: string) => MONTHS.findIndex((x) => x.toLowerCase() === m.toLowerCase());
const daysIn = (month: number, year: number) => new Date(Date.UTC(year, month + 1, 0)).getUTCDate();

const SEARCH_DATE = /^(\d{1,2})-([A-Za-z]{3})-(\d{4})$/;
const DATE_TIME = /^( \d|\d{2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$/;

/** A search date `1-Feb-2026`, the month's case made canonical; undefined when not a date. */
function searchDate(text: string): string | undefined {
  const m = SEARCH_DATE.exec(text);
  if (!m) return undefined;
  const month = monthIndex(m[2]);
  const day = Number(m[1]);
  const year = Number(m[3]);
  if (month < 0 || day < 1 || day > daysIn(month, year)) return undefined;
  return `${m[1]}-${MONTHS[month]}-${m[3]}`;
}

/** APPEND's date-time (`"17-Jul-1996 02:44:25 -0700"`, without the quotes) as a time; undefined when not one. */
export function parseDateTime(text: string): Date | undefined {
  const m = DATE_TIME.exec(text);
  if (!m) return undefined;
  const [day, month, year, hh, mm, ss, zh, zm] = [Number(m[1]), monthIndex(m[2]), Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]), Number(m[8]), Number(m[9])];
  if (month < 0 || day < 1 || day > daysIn(month, year) || hh > 23 || mm > 59 || ss > 60 || zm > 59) return undefined;
  const offset = (m[7] === '-' ? -1 : 1) * (zh * 60 + zm);
  return new Date(Date.UTC(year, month, day, hh, mm, Math.min(ss, 59)) - offset * 60_000);
}

// ---- commands ---------------------------------------------------------------------------

type Handler = (r: Reader, uid: boolean) => Promise<Command> | Command;

const UID_COMMANDS = new Set(['COPY', 'MOVE', 'FETCH', 'SEARCH', 'STORE', 'EXPUNGE', 'SORT', 'THREAD']);
const STATUS_ITEMS = new Set<StatusItems['items'][number]>(['MESSAGES', 'UIDNEXT', 'UIDVALIDITY', 'UNSEEN', 'DELETED', 'SIZE', 'HIGHESTMODSEQ', 'RECENT', 'MAILBOXID', 'APPENDLIMIT']);
const LIST_SELECT = new Set(['SUBSCRIBED', 'REMOTE', 'RECURSIVEMATCH', 'SPECIAL-USE']);
const LIST_RETURN = new Set(['SUBSCRIBED', 'CHILDREN', 'SPECIAL-USE']);
const SEARCH_RETURN = new Set<SearchReturn>(['MIN', 'MAX', 'ALL', 'COUNT', 'SAVE']);
const SORT_KEYS = new Set<SortKey['key']>(['ARRIVAL', 'CC', 'DATE', 'FROM', 'SIZE', 'SUBJECT', 'TO', 'DISPLAYFROM', 'DISPLAYTO']);
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const OBJECT_ID = /^[A-Za-z0-9_-]{1,255}$/;
const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]+$/;

function noArguments(name: 'CAPABILITY' | 'NOOP' | 'LOGOUT' | 'STARTTLS' | 'NAMESPACE' | 'CHECK' | 'CLOSE' | 'UNSELECT' | 'IDLE'): Handler {
  return () => ({ name });
}

function statusItems(r: Reader): StatusItems {
  r.expect(LPAREN, "'(' for status items");
  const items: StatusItems['items'] = [];
  for (;;) {
    const item = r.word('a status item');
    if (!STATUS_ITEMS.has(item as StatusItems['items'][number])) r.fail(`Unknown status item ${printable(item)}`);
    if (!items.includes(item as StatusItems['items'][number])) items.push(item as StatusItems['items'][number]);
    if (r.has(RPAREN)) break;
    r.sp();
  }
  r.pos++;
  return { items };
}

async function selectCommand(r: Reader, name: 'SELECT' | 'EXAMINE'): Promise<Command> {
  r.sp(name);
  const mailbox = await r.mailbox();
  let condstore = false;
  let qresync: QresyncParams | undefined;
  if (r.optionalSp()) {
    r.expect(LPAREN, "'(' for SELECT parameters");
    for (;;) {
      const param = r.word('a SELECT parameter');
      if (param === 'CONDSTORE') condstore = true;
      else if (param === 'QRESYNC') {
        r.sp('QRESYNC');
        qresync = qresyncParams(r);
      } else r.fail(`Unknown SELECT parameter ${printable(param)}`);
      if (r.has(RPAREN)) break;
      r.sp();
    }
    r.pos++;
  }
  return qresync ? { name, mailbox, condstore, qresync } : { name, mailbox, condstore };
}

/** `(uidvalidity modseq [known-uids] [(seqs uids)])` (RFC 7162 §3.2.5): UIDs and numbers the client has, so no `*` or `$`. */
function qresyncParams(r: Reader): QresyncParams {
  const known = (what: string): SequenceSet => {
    const set = r.seqSet(what);
    if (set.saved || set.ranges.some(([, b]) => b === Infinity)) r.fail(`${what} may not hold * or $`);
    return set;
  };
  r.expect(LPAREN, "'(' for QRESYNC parameters");
  const params: QresyncParams = { uidValidity: r.nzNumber('UIDVALIDITY'), modseq: 0n };
  r.sp();
  params.modseq = r.modseq();
  if (r.optionalSp()) {
    if (!r.has(LPAREN)) {
      params.knownUids = known('known UIDs');
      if (r.optionalSp() && !r.has(LPAREN)) r.fail("Expected '(' for sequence match data");
    }
    if (r.has(LPAREN)) {
      r.pos++;
      const seqs = known('known sequence set');
      r.sp();
      const uids = known('known UID set');
      r.expect(RPAREN, "')'");
      params.seqMatch = { seqs, uids };
    }
  }
  r.expect(RPAREN, "')' after QRESYNC parameters");
  return params;
}

async function listCommand(r: Reader): Promise<Command> {
  r.sp('LIST');
  const select: string[] = [];
  if (r.has(LPAREN)) {
    r.pos++;
    while (!r.has(RPAREN)) {
      if (select.length) r.sp();
      const option = r.word('a LIST selection option');
      if (!LIST_SELECT.has(option)) r.fail(`Unknown LIST selection option ${printable(option)}`);
      if (!select.includes(option)) select.push(option);
    }
    r.pos++;
    // RFC 5258 §3: it only says how another option matches.
    if (select.length === 1 && select[0] === 'RECURSIVEMATCH') r.fail('RECURSIVEMATCH needs another selection option', 'CLIENTBUG');
    r.sp();
  }
  const reference = await r.listMailbox();
  r.sp();
  const patterns: MailboxName[] = [];
  if (r.has(LPAREN)) {
    r.pos++;
    for (;;) {
      patterns.push(await r.listMailbox());
      if (r.has(RPAREN)) break;
      r.sp();
    }
    r.pos++;
  } else patterns.push(await r.listMailbox());
  const ret: { options: string[]; status?: StatusItems } = { options: [] };
  if (r.optionalSp()) {
    if (!r.takeWord('RETURN')) r.fail('Expected RETURN');
    r.sp('RETURN');
    r.expect(LPAREN, "'(' for RETURN options");
    while (!r.has(RPAREN)) {
      if (ret.options.length || ret.status) r.sp();
      const option = r.word('a RETURN option');
      if (option === 'STATUS') {
        r.sp('STATUS');
        ret.status = statusItems(r);
      } else if (!LIST_RETURN.has(option)) r.fail(`Unknown LIST RETURN option ${printable(option)}`);
      else if (!ret.options.includes(option)) ret.options.push(option);
    }
    r.pos++;
  }
  return { name: 'LIST', select, reference, patterns, return: ret };
}

async function appendCommand(r: Reader): Promise<Command> {
  r.sp('APPEND');
  const mailbox = await r.mailbox();
  const messages: { flags: Flag[]; date?: string; message: Buffer; binary: boolean }[] = [];
  do {
    r.sp();
    let flags: Flag[] = [];
    let date: string | undefined;
    if (r.has(LPAREN)) {
      flags = r.flagList();
      r.sp();
    }
    if (r.has(DQUOTE)) {
      date = r.quoted().toString('latin1');
      if (!parseDateTime(date)) r.fail('Invalid date-time');
      r.sp();
    }
    // RFC 6855 §4: a message with UTF-8 headers comes as `UTF8 (` literal8 `)`, once UTF8=ACCEPT is on.
    const utf8 = r.takeWord('UTF8');
    if (utf8) {
      if (!r.options.utf8) r.fail('UTF8 needs ENABLE UTF8=ACCEPT');
      r.sp('UTF8');
      r.expect(LPAREN, '(');
      if (!r.has(TILDE)) r.fail('Expected a literal8 (~{n}) in UTF8');
    } else if (!r.has(LBRACE) && !r.has(TILDE)) r.fail('Expected a literal for the message');
    const literal = await r.literal(true, mailbox);
    if (utf8) r.expect(RPAREN, ')');
    // UTF8's literal8 holds a message as text (its line ends checked), not BINARY content.
    const binary = literal.binary && !utf8;
    messages.push(date === undefined ? { flags, message: literal.data, binary } : { flags, date, message: literal.data, binary });
    // MULTIAPPEND: another message follows when the line after the literal goes on.
  } while (!r.eol());
  return { name: 'APPEND', mailbox, messages };
}

// ---- search -----------------------------------------------------------------------------

const FLAG_KEYS: Record<string, [Flag, boolean]> = {
  ANSWERED: ['\\Answered', true],
  UNANSWERED: ['\\Answered', false],
  DELETED: ['\\Deleted', true],
  UNDELETED: ['\\Deleted', false],
  DRAFT: ['\\Draft', true],
  UNDRAFT: ['\\Draft', false],
  FLAGGED: ['\\Flagged', true],
  UNFLAGGED: ['\\Flagged', false],
  SEEN: ['\\Seen', true],
  UNSEEN: ['\\Seen', false],
  RECENT: ['\\Recent', true],
};
const DATE_KEYS: Record<string, ['internal' | 'sent', 'before' | 'on' | 'since']> = {
  BEFORE: ['internal', 'before'],
  ON: ['internal', 'on'],
  SINCE: ['internal', 'since'],
  SENTBEFORE: ['sent', 'before'],
  SENTON: ['sent', 'on'],
  SENTSINCE: ['sent', 'since'],
};
const ADDRESS_KEYS = new Set(['BCC', 'CC', 'FROM', 'SUBJECT', 'TO']);

function searchReturn(r: Reader): SearchReturn[] {
  r.sp('RETURN');
  r.expect(LPAREN, "'(' for RETURN options");
  const options: SearchReturn[] = [];
  while (!r.has(RPAREN)) {
    if (options.length) r.sp();
    const option = r.word('a RETURN option') as SearchReturn;
    if (!SEARCH_RETURN.has(option)) r.fail(`Unknown SEARCH RETURN option ${printable(option)}`);
    if (!options.includes(option)) options.push(option);
  }
  r.pos++;
  // RFC 4731: RETURN () asks for ALL, in an ESEARCH response.
  return options.length ? options : ['ALL'];
}

function setCharset(r: Reader, charset: string): void {
  try {
    r.decoder = new TextDecoder(charset, { fatal: true });
  } catch {
    r.fail(`Unknown charset ${printable(charset)}`, 'BADCHARSET', 'NO');
  }
}

/** One or more search keys to the end of the line: more than one is their AND. */
async function searchProgram(r: Reader): Promise<SearchKey> {
  const keys = [await searchKey(r, 0)];
  while (r.optionalSp()) keys.push(await searchKey(r, 0));
  return keys.length === 1 ? keys[0] : { kind: 'AND', keys };
}

function searchDateArg(r: Reader): string {
  const text = r.has(DQUOTE) ? r.quoted().toString('latin1') : r.run(ATOM);
  const date = searchDate(text);
  if (!date) r.fail(`Invalid date ${printable(text)}`);
  return date;
}

async function searchKey(r: Reader, depth: number): Promise<SearchKey> {
  if (depth >= MAX_SEARCH_DEPTH) r.fail('Search keys nested too deeply', 'LIMIT');
  const c = r.peek();
  if (c === LPAREN) {
    if (r.parens >= MAX_PAREN_DEPTH) r.fail(`Parentheses nested deeper than ${MAX_PAREN_DEPTH}`, 'LIMIT');
    r.pos++;
    r.parens++;
    const keys = [await searchKey(r, depth + 1)];
    while (r.optionalSp()) keys.push(await searchKey(r, depth + 1));
    r.expect(RPAREN, "')'");
    r.parens--;
    return keys.length === 1 ? keys[0] : { kind: 'AND', keys };
  }
  if (isDigit(c) || c === STAR || c === DOLLAR) return { kind: 'SEQ', set: r.seqSet() };
  const word = r.word('a search key');
  const flag = FLAG_KEYS[word];
  if (flag) return { kind: 'FLAG', flag: flag[0], set: flag[1] };
  const date = DATE_KEYS[word];
  if (date) {
    r.sp(word);
    return { kind: 'DATE', field: date[0], op: date[1], date: searchDateArg(r) };
  }
  if (ADDRESS_KEYS.has(word)) {
    r.sp(word);
    return { kind: 'HEADER', name: word, value: await r.searchText(word) };
  }
  switch (word) {
    case 'ALL':
      return { kind: 'ALL' };
    case 'NEW':
      return { kind: 'AND', keys: [{ kind: 'FLAG', flag: '\\Seen', set: false }, { kind: 'FLAG', flag: '\\Recent', set: true }] };
    case 'OLD':
      return { kind: 'NOT', key: { kind: 'FLAG', flag: '\\Recent', set: true } };
    case 'KEYWORD':
    case 'UNKEYWORD':
      r.sp(word);
      return { kind: 'FLAG', flag: r.atom('a keyword'), set: word === 'KEYWORD' };
    case 'HEADER': {
      r.sp(word);
      const name = (await r.astringText('header field name')).toUpperCase();
      if (!FIELD_NAME.test(name)) r.fail('Invalid header field name');
      r.sp();
      return { kind: 'HEADER', name, value: await r.searchText('header value') };
    }
    case 'BODY':
    case 'TEXT':
      r.sp(word);
      return { kind: word, value: await r.searchText(word) };
    case 'LARGER':
    case 'SMALLER':
      r.sp(word);
      return { kind: 'SIZE', op: word === 'LARGER' ? 'larger' : 'smaller', size: r.safeNumber('size') };
    case 'NOT':
      r.sp(word);
      return { kind: 'NOT', key: await searchKey(r, depth + 1) };
    case 'OR': {
      r.sp(word);
      const a = await searchKey(r, depth + 1);
      r.sp();
      return { kind: 'OR', a, b: await searchKey(r, depth + 1) };
    }
    case 'UID':
      r.sp(word);
      return { kind: 'UID', set: r.seqSet('UID set') };
    case 'MODSEQ': {
      r.sp(word);
      let entry: { flag: Flag; type: 'priv' | 'shared' | 'all' } | undefined;
      if (r.has(DQUOTE)) {
        const name = r.quoted().toString('latin1');
        if (!/^\/flags\/\\?[\x21-\x7e]+$/i.test(name)) r.fail('Invalid MODSEQ entry name');
        r.sp();
        const type = r.word('an entry type').toLowerCase();
        if (type !== 'priv' && type !== 'shared' && type !== 'all') r.fail('Invalid MODSEQ entry type');
        const flag = name.slice(7);
        entry = { flag: flag.startsWith('\\') ? canonicalFlag(flag) : flag, type };
        r.sp();
      }
      const modseq = r.modseq();
      return entry ? { kind: 'MODSEQ', modseq, entry } : { kind: 'MODSEQ', modseq };
    }
    case 'OLDER':
    case 'YOUNGER':
      r.sp(word);
      return { kind: 'WITHIN', op: word === 'OLDER' ? 'older' : 'younger', seconds: r.nzNumber('interval') };
    case 'EMAILID':
    case 'THREADID': {
      r.sp(word);
      const id = r.atom('an object id');
      if (!OBJECT_ID.test(id)) r.fail('Invalid object id');
      return { kind: word, id };
    }
  }
  return r.fail(`Unknown search key ${printable(word)}`);
}

async function searchCommand(r: Reader, uid: boolean): Promise<Command> {
  r.sp('SEARCH');
  let ret: SearchReturn[] | undefined;
  if (r.takeWord('RETURN')) {
    ret = searchReturn(r);
    r.sp();
  }
  let charset: string | undefined;
  if (r.takeWord('CHARSET')) {
    r.sp('CHARSET');
    charset = await r.astringText('charset');
    setCharset(r, charset);
    r.sp();
  }
  const key = await searchProgram(r);
  return charset === undefined ? { name: 'SEARCH', uid, return: ret, key } : { name: 'SEARCH', uid, return: ret, charset, key };
}

async function sortCommand(r: Reader, uid: boolean): Promise<Command> {
  r.sp('SORT');
  let ret: SearchReturn[] | undefined;
  if (r.takeWord('RETURN')) {
    ret = searchReturn(r);
    r.sp();
  }
  r.expect(LPAREN, "'(' for sort criteria");
  const sort: SortKey[] = [];
  for (;;) {
    let key = r.word('a sort key');
    const reverse = key === 'REVERSE';
    if (reverse) {
      r.sp('REVERSE');
      key = r.word('a sort key');
    }
    if (!SORT_KEYS.has(key as SortKey['key'])) r.fail(`Unknown sort key ${printable(key)}`);
    sort.push({ key: key as SortKey['key'], reverse });
    if (r.has(RPAREN)) break;
    r.sp();
  }
  r.pos++;
  r.sp();
  const charset = await r.astringText('charset');
  setCharset(r, charset);
  r.sp();
  return { name: 'SORT', uid, return: ret, sort, charset, key: await searchProgram(r) };
}

async function threadCommand(r: Reader, uid: boolean): Promise<Command> {
  r.sp('THREAD');
  const algorithm = r.word('a thread algorithm');
  if (algorithm !== 'REFERENCES' && algorithm !== 'ORDEREDSUBJECT') r.fail(`Unknown thread algorithm ${printable(algorithm)}`);
  r.sp();
  const charset = await r.astringText('charset');
  setCharset(r, charset);
  r.sp();
  return { name: 'THREAD', uid, algorithm, charset, key: await searchProgram(r) };
}

// ---- fetch ------------------------------------------------------------------------------

const SIMPLE_FETCH = new Set(['UID', 'FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE', 'BODYSTRUCTURE', 'MODSEQ', 'EMAILID', 'THREADID', 'RFC822', 'RFC822.HEADER', 'RFC822.TEXT']);
const MACROS: Record<string, FetchItem[]> = {
  ALL: [{ kind: 'FLAGS' }, { kind: 'INTERNALDATE' }, { kind: 'RFC822.SIZE' }, { kind: 'ENVELOPE' }],
  FAST: [{ kind: 'FLAGS' }, { kind: 'INTERNALDATE' }, { kind: 'RFC822.SIZE' }],
  FULL: [{ kind: 'FLAGS' }, { kind: 'INTERNALDATE' }, { kind: 'RFC822.SIZE' }, { kind: 'ENVELOPE' }, { kind: 'BODY' }],
};

/** `[part.part.SPEC (fields)]`; BINARY's sections are part numbers only. */
async function section(r: Reader, binary: boolean): Promise<Section> {
  r.expect(LBRACKET, "'['");
  const result: Section = { part: [] };
  if (!r.has(RBRACKET)) {
    let text = !isDigit(r.peek());
    if (!text) {
      for (;;) {
        result.part.push(r.nzNumber('part number'));
        if (!r.has(DOT)) break;
        r.pos++;
        if (!isDigit(r.peek())) {
          text = true;
          break;
        }
      }
    }
    if (text) {
      if (binary) r.fail('A BINARY section is part numbers only');
      const spec = r.run(SECTION_TEXT).toUpperCase();
      if (spec === 'HEADER' || spec === 'TEXT' || (spec === 'MIME' && result.part.length)) result.specifier = spec;
      else if (spec === 'HEADER.FIELDS' || spec === 'HEADER.FIELDS.NOT') {
        result.specifier = spec;
        r.sp(spec);
        r.expect(LPAREN, "'(' for header field names");
        const fields: string[] = [];
        for (;;) {
          const name = (await r.astringText('header field name')).toUpperCase();
          if (!FIELD_NAME.test(name)) r.fail('Invalid header field name');
          fields.push(name);
          if (r.has(RPAREN)) break;
          r.sp();
        }
        r.pos++;
        result.fields = fields;
      } else r.fail(`Invalid section ${printable(spec)}`);
    }
  }
  r.expect(RBRACKET, "']' to end the section");
  return result;
}

function partial(r: Reader): Partial | undefined {
  if (!r.has(LT)) return undefined;
  r.pos++;
  const start = r.safeNumber('partial start');
  r.expect(DOT, "'.' in a partial");
  const startLength = r.pos;
  const length = r.safeNumber('partial length');
  if (length === 0 || r.line[startLength] === 0x30) r.fail('A partial length must be a non-zero number');
  r.expect(GT, "'>' to end a partial");
  return { start, length };
}

async function fetchAtt(r: Reader): Promise<FetchItem> {
  const name = r.run(FETCH_NAME).toUpperCase();
  if (!name) r.fail('Expected a fetch item');
  if (SIMPLE_FETCH.has(name)) return { kind: name } as FetchItem;
  switch (name) {
    case 'BODY':
    case 'BODY.PEEK': {
      if (!r.has(LBRACKET)) {
        if (name === 'BODY') return { kind: 'BODY' };
        r.fail('Expected a section after BODY.PEEK');
      }
      const s = await section(r, false);
      const p = partial(r);
      return p ? { kind: 'BODY[]', section: s, partial: p, peek: name === 'BODY.PEEK' } : { kind: 'BODY[]', section: s, peek: name === 'BODY.PEEK' };
    }
    case 'BINARY':
    case 'BINARY.PEEK': {
      const s = await section(r, true);
      const p = partial(r);
      return p ? { kind: 'BINARY[]', section: s, partial: p, peek: name === 'BINARY.PEEK' } : { kind: 'BINARY[]', section: s, peek: name === 'BINARY.PEEK' };
    }
    case 'BINARY.SIZE':
      return { kind: 'BINARY.SIZE', section: await section(r, true) };
  }
  return r.fail(`Unknown fetch item ${printable(name)}`);
}

async function fetchCommand(r: Reader, uid: boolean): Promise<Command> {
  r.sp('FETCH');
  const set = r.seqSet();
  r.sp();
  let items: FetchItem[];
  if (r.has(LPAREN)) {
    r.pos++;
    items = [];
    for (;;) {
      items.push(await fetchAtt(r));
      if (r.has(RPAREN)) break;
      r.sp();
    }
    r.pos++;
  } else {
    const start = r.pos;
    const macro = MACROS[r.run(FETCH_NAME).toUpperCase()];
    if (macro) items = macro.map((item) => ({ ...item }));
    else {
      r.pos = start;
      items = [await fetchAtt(r)];
    }
  }
  let changedSince: bigint | undefined;
  let vanished = false;
  if (r.optionalSp()) {
    r.expect(LPAREN, "'(' for FETCH modifiers");
    for (;;) {
      const modifier = r.word('a FETCH modifier');
      if (modifier === 'CHANGEDSINCE') {
        r.sp(modifier);
        changedSince = r.modseq();
      } else if (modifier === 'VANISHED') vanished = true;
      else r.fail(`Unknown FETCH modifier ${printable(modifier)}`);
      if (r.has(RPAREN)) break;
      r.sp();
    }
    r.pos++;
  }
  // RFC 7162 §3.2.6.
  if (vanished && (!uid || changedSince === undefined)) r.fail('VANISHED needs UID FETCH and CHANGEDSINCE', 'CLIENTBUG');
  return changedSince === undefined ? { name: 'FETCH', uid, set, items, vanished } : { name: 'FETCH', uid, set, items, changedSince, vanished };
}

function storeCommand(r: Reader, uid: boolean): Command {
  r.sp('STORE');
  const set = r.seqSet();
  r.sp();
  let unchangedSince: bigint | undefined;
  if (r.has(LPAREN)) {
    r.pos++;
    if (!r.takeWord('UNCHANGEDSINCE')) r.fail('Unknown STORE modifier');
    r.sp('UNCHANGEDSINCE');
    unchangedSince = r.modseq();
    r.expect(RPAREN, "')' after STORE modifiers");
    r.sp();
  }
  const item = /^([+-]?)FLAGS(\.SILENT)?$/.exec(r.run(STORE_NAME).toUpperCase());
  if (!item) r.fail('Expected FLAGS, +FLAGS or -FLAGS');
  r.sp();
  let flags: Flag[];
  if (r.has(LPAREN)) flags = r.flagList();
  else {
    flags = [r.flag()];
    while (r.optionalSp()) flags.push(r.flag());
  }
  const op = item[1] === '+' ? 'add' : item[1] === '-' ? 'remove' : 'replace';
  const silent = item[2] !== undefined;
  return unchangedSince === undefined ? { name: 'STORE', uid, set, op, silent, flags } : { name: 'STORE', uid, set, op, silent, flags, unchangedSince };
}

const COMMANDS: Record<string, Handler> = {
  CAPABILITY: noArguments('CAPABILITY'),
  NOOP: noArguments('NOOP'),
  LOGOUT: noArguments('LOGOUT'),
  STARTTLS: noArguments('STARTTLS'),
  NAMESPACE: noArguments('NAMESPACE'),
  CHECK: noArguments('CHECK'),
  CLOSE: noArguments('CLOSE'),
  UNSELECT: noArguments('UNSELECT'),
  IDLE: noArguments('IDLE'),
  async LOGIN(r) {
    r.sp('LOGIN');
    const user = await r.astringText('user name');
    r.sp();
    return { name: 'LOGIN', user, password: await r.astringText('password') };
  },
  AUTHENTICATE(r) {
    r.sp('AUTHENTICATE');
    const mechanism = r.word('a SASL mechanism');
    if (!r.optionalSp()) return { name: 'AUTHENTICATE', mechanism };
    // SASL-IR (RFC 4959): base64, or `=` for an empty response.
    const initial = r.atom('an initial response');
    if (initial !== '=' && !BASE64.test(initial)) r.fail('Initial response is not base64');
    return { name: 'AUTHENTICATE', mechanism, initial: initial === '=' ? '' : initial };
  },
  ENABLE(r) {
    const capabilities: string[] = [];
    do {
      r.sp('ENABLE');
      capabilities.push(r.word('a capability'));
    } while (!r.eol());
    return { name: 'ENABLE', capabilities };
  },
  async ID(r) {
    r.sp('ID');
    if (r.takeWord('NIL')) return { name: 'ID', params: null };
    r.expect(LPAREN, "'(' or NIL");
    const entries: [string, string | null][] = [];
    while (!r.has(RPAREN)) {
      if (entries.length) r.sp();
      // RFC 2971 §3.3: 30 pairs, 30-octet names, 1024-octet values at most.
      if (entries.length === 30) r.fail('More than 30 ID fields');
      const key = await r.string('an ID field name');
      r.sp();
      const value = await r.nstring('an ID value');
      if (key.length > 30 || (value && value.length > 1024)) r.fail('ID field name or value too long');
      entries.push([r.text(key, 'ID field name'), value && r.text(value, 'ID value')]);
    }
    r.pos++;
    return { name: 'ID', params: Object.fromEntries(entries) };
  },
  SELECT: (r) => selectCommand(r, 'SELECT'),
  EXAMINE: (r) => selectCommand(r, 'EXAMINE'),
  async CREATE(r) {
    r.sp('CREATE');
    const mailbox = await r.mailbox();
    const specialUse: Flag[] = [];
    if (r.optionalSp()) {
      // RFC 4466 create-params; USE is RFC 6154's, the one known.
      r.expect(LPAREN, "'(' for CREATE parameters");
      for (;;) {
        if (!r.takeWord('USE')) r.fail('Unknown CREATE parameter');
        r.sp('USE');
        for (const flag of r.flagList()) {
          if (!flag.startsWith('\\')) r.fail('A special-use attribute starts with \\');
          if (!specialUse.includes(flag)) specialUse.push(flag);
        }
        if (r.has(RPAREN)) break;
        r.sp();
      }
      r.pos++;
    }
    return { name: 'CREATE', mailbox, specialUse };
  },
  async DELETE(r) {
    r.sp('DELETE');
    return { name: 'DELETE', mailbox: await r.mailbox() };
  },
  async SUBSCRIBE(r) {
    r.sp('SUBSCRIBE');
    return { name: 'SUBSCRIBE', mailbox: await r.mailbox() };
  },
  async UNSUBSCRIBE(r) {
    r.sp('UNSUBSCRIBE');
    return { name: 'UNSUBSCRIBE', mailbox: await r.mailbox() };
  },
  async GETQUOTAROOT(r) {
    r.sp('GETQUOTAROOT');
    return { name: 'GETQUOTAROOT', mailbox: await r.mailbox() };
  },
  async RENAME(r) {
    r.sp('RENAME');
    const from = await r.mailbox();
    r.sp();
    return { name: 'RENAME', from, to: await r.mailbox() };
  },
  LIST: listCommand,
  async LSUB(r) {
    r.sp('LSUB');
    const reference = await r.listMailbox();
    r.sp();
    return { name: 'LSUB', reference, pattern: await r.listMailbox() };
  },
  async STATUS(r) {
    r.sp('STATUS');
    const mailbox = await r.mailbox();
    r.sp();
    return { name: 'STATUS', mailbox, status: statusItems(r) };
  },
  APPEND: appendCommand,
  EXPUNGE(r, uid) {
    if (!uid) return { name: 'EXPUNGE', uid };
    r.sp('UID EXPUNGE');
    return { name: 'EXPUNGE', uid, set: r.seqSet('UID set') };
  },
  SEARCH: searchCommand,
  SORT: sortCommand,
  THREAD: threadCommand,
  FETCH: fetchCommand,
  STORE: storeCommand,
  async COPY(r, uid) {
    r.sp('COPY');
    const set = r.seqSet();
    r.sp();
    return { name: 'COPY', uid, set, mailbox: await r.mailbox() };
  },
  async MOVE(r, uid) {
    r.sp('MOVE');
    const set = r.seqSet();
    r.sp();
    return { name: 'MOVE', uid, set, mailbox: await r.mailbox() };
  },
  async GETQUOTA(r) {
    r.sp('GETQUOTA');
    return { name: 'GETQUOTA', root: await r.astringText('quota root') };
  },
  async SETQUOTA(r) {
    r.sp('SETQUOTA');
    const root = await r.astringText('quota root');
    r.sp();
    r.expect(LPAREN, "'(' for quota limits");
    const limits: { resource: string; limit: number }[] = [];
    while (!r.has(RPAREN)) {
      if (limits.length) r.sp();
      const resource = r.word('a quota resource');
      r.sp(resource);
      limits.push({ resource, limit: r.safeNumber('quota limit') });
    }
    r.pos++;
    return { name: 'SETQUOTA', root, limits };
  },
  COMPRESS(r) {
    r.sp('COMPRESS');
    return { name: 'COMPRESS', mechanism: r.word('a compression mechanism') };
  },
};

/**
 * Reads one command: its first line, and every literal and line after it that the command
 * announces. Resolves the command, or throws an ImapParseError with the input left at the
 * next command (or `unread`); errors of `input` and the callbacks pass through unchanged.
 */
export async function readCommand(input: CommandInput, options: ParseOptions): Promise<TaggedCommand> {
  const r: Reader = new Reader(input, options);
  try {
    await r.nextLine();
    const tag = r.run(TAG);
    if (!tag || !(r.eol() || r.has(SP))) r.fail(r.line.length ? 'Invalid tag' : 'Empty command line');
    r.tag = tag;
    if (r.eol()) r.fail('Missing command');
    r.sp();
    let name = (r.name = r.word('a command name'));
    let uid = false;
    if (name === 'UID') {
      uid = true;
      r.sp('UID');
      name = r.name = r.word('a command name after UID');
      if (!UID_COMMANDS.has(name)) r.fail(`Unknown command UID ${printable(name)}`);
    }
    const handler = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (!handler) r.fail(`Unknown command ${printable(name)}`);
    const command = await handler(r, uid);
    r.end();
    return { tag, command };
  } catch (err) {
    if (err instanceof SessionFailed) throw err.cause;
    // A fault of the parser's own is still answered as a parse error, and keeps its cause.
    const fail = err instanceof Fail ? err : new Fail('Internal error reading the command');
    let recovered: { unread: boolean; pending?: number };
    try {
      recovered = await r.recover();
    } catch (inner) {
      if (inner instanceof SessionFailed) throw inner.cause;
      // Where the input stands is not known: the connection must go.
      throw new ImapParseError(fail.message, { code: fail.code, status: fail.status, tag: r.tag, unread: true, pending: 0, cause: inner });
    }
    throw new ImapParseError(fail.message, {
      code: fail.code,
      status: fail.status,
      tag: r.tag,
      unread: recovered.unread,
      pending: recovered.pending,
      cause: err instanceof Fail ? undefined : err,
    });
  }
}
