/**
 * The Sieve subset an account's rules are written in, parsed and checked when they are
 * saved (RFC 5228 §8 grammar): `keep`, `fileinto`, `discard`, `redirect`, `stop`,
 * `if/elsif/else`, `reject` (RFC 5429), `vacation` (RFC 5230); the tests `true`, `false`,
 * `not`, `anyof`, `allof`, `header`, `address`, `envelope`, `size`, `exists` with
 * `:is :contains :matches`, `:localpart :domain :all` and the comparators `i;ascii-casemap`
 * and `i;octet`. Anything else is refused with its line and column. No npm library parses
 * Sieve; the grammar is small.
 */

import { parseAddress } from '@mailgrid/core';

/** Extensions a script may `require`: exactly what is implemented. */
export const EXTENSIONS = ['fileinto', 'reject', 'envelope', 'vacation'] as const;
export type Extension = (typeof EXTENSIONS)[number];

export class SieveError extends Error {
  override readonly name = 'SieveError';
  constructor(
    readonly reason: string,
    readonly line: number,
    readonly column: number,
  ) {
    super(`line ${line}, column ${column}: ${reason}`);
  }
}

export type MatchType = 'is' | 'contains' | 'matches';
export type AddressPart = 'all' | 'localpart' | 'domain';
export type Comparator = 'i;ascii-casemap' | 'i;octet';

export interface Match {
  match: MatchType;
  comparator: Comparator;
  keys: string[];
}

export type Test =
  | { kind: 'true' | 'false' }
  | { kind: 'not'; test: Test }
  | { kind: 'anyof' | 'allof'; tests: Test[] }
  | ({ kind: 'header'; headers: string[] } & Match)
  | ({ kind: 'address'; headers: string[]; part: AddressPart } & Match)
  | ({ kind: 'envelope'; parts: ('from' | 'to')[]; part: AddressPart } & Match)
  | { kind: 'size'; over: boolean; limit: number }
  | { kind: 'exists'; headers: string[] };

export interface Vacation {
  reason: string;
  days: number;
  subject?: string;
  from?: string;
  addresses: string[];
}

export type Command =
  | { kind: 'if'; branches: { test: Test; block: Command[] }[]; otherwise?: Command[] }
  | { kind: 'keep' | 'discard' | 'stop' }
  | { kind: 'fileinto'; folder: string }
  | { kind: 'redirect'; address: string }
  | { kind: 'reject'; reason: string }
  | ({ kind: 'vacation' } & Vacation);

export interface Script {
  commands: Command[];
}

// ---- lexer ----

type Token =
  | { t: 'id'; v: string; line: number; col: number }
  | { t: 'tag'; v: string; line: number; col: number }
  | { t: 'str'; v: string; line: number; col: number }
  | { t: 'num'; v: number; line: number; col: number }
  | { t: 'sym'; v: string; line: number; col: number }
  | { t: 'end'; v: ''; line: number; col: number };

function lex(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const at = () => ({ line, col: i - lineStart + 1 });
  const fail = (reason: string, pos = at()): never => {
    throw new SieveError(reason, pos.line, pos.col);
  };
  const newline = () => {
    line++;
    lineStart = i;
  };
  while (i < src.length) {
    const c = src[i];
    if (c === '\n') {
      i++;
      newline();
    } else if (c === ' ' || c === '\t' || c === '\r') i++;
    else if (c === '#') {
      while (i < src.length && src[i] !== '\n') i++;
    } else if (c === '/' && src[i + 1] === '*') {
      const pos = at();
      i += 2;
      while (i < src.length && !(src[i] === '*' && src[i + 1] === '/')) if (src[i++] === '\n') newline();
      if (i >= src.length) fail('unterminated comment', pos);
      i += 2;
    } else if (c === '"') {
      const pos = at();
      let v = '';
      i++;
      for (;;) {
        if (i >= src.length) fail('unterminated string', pos);
        const ch = src[i++];
        if (ch === '"') break;
        if (ch === '\\' && i < src.length) v += src[i++];
        else {
          if (ch === '\n') newline();
          v += ch;
        }
      }
      out.push({ t: 'str', v, ...colOf(pos) });
    } else if (src.startsWith('text:', i)) {
      // Multi-line string: to the end of the line (a comment may follow), then lines up to a lone ".".
      const pos = at();
      i += 5;
      while (src[i] === ' ' || src[i] === '\t') i++;
      if (src[i] === '#') while (i < src.length && src[i] !== '\n') i++;
      if (src[i] === '\r') i++;
      if (src[i] !== '\n') fail('text: must end its line', at());
      i++;
      newline();
      const lines: string[] = [];
      for (;;) {
        if (i >= src.length) fail('multi-line string without its closing "."', pos);
        let nl = src.indexOf('\n', i);
        if (nl < 0) nl = src.length;
        const text = src.slice(i, nl).replace(/\r$/, '');
        i = Math.min(nl + 1, src.length);
        newline();
        if (text === '.') break;
        lines.push(text.startsWith('..') ? text.slice(1) : text);
      }
      out.push({ t: 'str', v: lines.map((l) => l + '\r\n').join(''), ...colOf(pos) });
    } else if (/[0-9]/.test(c)) {
      const pos = at();
      let j = i;
      while (/[0-9]/.test(src[j] ?? '')) j++;
      let v = Number(src.slice(i, j));
      const q = (src[j] ?? '').toUpperCase();
      if (q === 'K' || q === 'M' || q === 'G') {
        v *= q === 'K' ? 1024 : q === 'M' ? 1024 ** 2 : 1024 ** 3;
        j++;
      }
      i = j;
      out.push({ t: 'num', v, ...colOf(pos) });
    } else if (c === ':' && /[A-Za-z_]/.test(src[i + 1] ?? '')) {
      const pos = at();
      let j = i + 1;
      while (/[A-Za-z0-9_]/.test(src[j] ?? '')) j++;
      out.push({ t: 'tag', v: src.slice(i + 1, j).toLowerCase(), ...colOf(pos) });
      i = j;
    } else if (/[A-Za-z_]/.test(c)) {
      const pos = at();
      let j = i;
      while (/[A-Za-z0-9_]/.test(src[j] ?? '')) j++;
      out.push({ t: 'id', v: src.slice(i, j).toLowerCase(), ...colOf(pos) });
      i = j;
    } else if ('[](){},;'.includes(c)) {
      out.push({ t: 'sym', v: c, ...colOf(at()) });
      i++;
    } else fail(`unexpected character ${JSON.stringify(c)}`);
  }
  out.push({ t: 'end', v: '', ...colOf(at()) });
  return out;
}

const colOf = (p: { line: number; col: number }) => ({ line: p.line, col: p.col });

// ---- parser: the generic grammar first, then each command's and test's arguments ----

type Arg = { kind: 'strings'; v: string[]; tok: Token } | { kind: 'num'; v: number; tok: Token } | { kind: 'tag'; v: string; tok: Token };
interface RawTest {
  name: string;
  tok: Token;
  args: Arg[];
  tests: RawTest[];
}

class Parser {
  private pos = 0;
  readonly required = new Set<string>();
  private seenOther = false;

  constructor(private readonly toks: Token[]) {}

  private get tok(): Token {
    return this.toks[this.pos];
  }
  private fail(reason: string, tok: Token = this.tok): never {
    throw new SieveError(reason, tok.line, tok.col);
  }
  private sym(v: string): boolean {
    if (this.tok.t === 'sym' && this.tok.v === v) {
      this.pos++;
      return true;
    }
    return false;
  }
  private expect(v: string, what: string): void {
    if (!this.sym(v)) this.fail(`expected ${what}, found ${describe(this.tok)}`);
  }

  script(): Script {
    const commands = this.commands(true);
    if (this.tok.t !== 'end') this.fail(`unexpected ${describe(this.tok)}`);
    return { commands };
  }

  private commands(top: boolean): Command[] {
    const out: Command[] = [];
    while (this.tok.t === 'id') {
      const c = this.command(top, out);
      if (c) out.push(c);
    }
    return out;
  }

  private command(top: boolean, siblings: Command[]): Command | undefined {
    const tok = this.tok;
    const name = tok.v as string;
    this.pos++;
    if (name === 'if' || name === 'elsif' || name === 'else') return this.conditional(name, tok, siblings);
    const args = this.arguments();
    if (args.tests.length) this.fail(`${name} takes no test`, args.tests[0].tok);
    this.expect(';', `";" after ${name}`);
    if (name === 'require') {
      if (!top || this.seenOther) this.fail('require must come before any other command', tok);
      const list = only(args.args, 'strings', 'require', tok);
      for (const ext of list) {
        if (!(EXTENSIONS as readonly string[]).includes(ext)) this.fail(`unsupported extension "${ext}" (supported: ${EXTENSIONS.join(', ')})`, args.args[0].tok);
        this.required.add(ext);
      }
      return undefined;
    }
    this.seenOther = true;
    return this.action(name, tok, args.args);
  }

  private conditional(name: string, tok: Token, siblings: Command[]): Command | undefined {
    this.seenOther = true;
    if (name === 'if') {
      const test = this.test();
      return { kind: 'if', branches: [{ test, block: this.block() }] };
    }
    const prev = siblings[siblings.length - 1];
    if (!prev || prev.kind !== 'if' || prev.otherwise) this.fail(`${name} without a preceding if`, tok);
    if (name === 'elsif') prev.branches.push({ test: this.test(), block: this.block() });
    else prev.otherwise = this.block();
    return undefined;
  }

  private block(): Command[] {
    this.expect('{', '"{"');
    const commands = this.commands(false);
    this.expect('}', '"}"');
    return commands;
  }

  private arguments(): { args: Arg[]; tests: RawTest[] } {
    const args: Arg[] = [];
    for (;;) {
      const tok = this.tok;
      if (tok.t === 'str') {
        this.pos++;
        args.push({ kind: 'strings', v: [tok.v], tok });
      } else if (tok.t === 'num') {
        this.pos++;
        args.push({ kind: 'num', v: tok.v, tok });
      } else if (tok.t === 'tag') {
        this.pos++;
        args.push({ kind: 'tag', v: tok.v, tok });
      } else if (tok.t === 'sym' && tok.v === '[') {
        this.pos++;
        const v: string[] = [];
        do {
          const s = this.tok;
          if (s.t !== 'str') this.fail(`expected a string in the list, found ${describe(s)}`);
          v.push(s.v);
          this.pos++;
        } while (this.sym(','));
        this.expect(']', '"]"');
        args.push({ kind: 'strings', v, tok });
      } else break;
    }
    const tests: RawTest[] = [];
    if (this.tok.t === 'id') tests.push(this.rawTest());
    else if (this.sym('(')) {
      do tests.push(this.rawTest());
      while (this.sym(','));
      this.expect(')', '")"');
    }
    return { args, tests };
  }

  private rawTest(): RawTest {
    const tok = this.tok;
    if (tok.t !== 'id') this.fail(`expected a test, found ${describe(tok)}`);
    this.pos++;
    const { args, tests } = this.arguments();
    return { name: tok.v, tok, args, tests };
  }

  private test(): Test {
    return this.checkTest(this.rawTest());
  }

  private checkTest(raw: RawTest): Test {
    const { name, tok, args, tests } = raw;
    const noTests = () => tests.length && this.fail(`${name} takes no nested test`, tests[0].tok);
    switch (name) {
      case 'true':
      case 'false':
        noTests();
        if (args.length) this.fail(`${name} takes no arguments`, args[0].tok);
        return { kind: name };
      case 'not':
        if (args.length || tests.length !== 1) this.fail('not takes one test', tok);
        return { kind: 'not', test: this.checkTest(tests[0]) };
      case 'anyof':
      case 'allof':
        if (args.length || !tests.length) this.fail(`${name} takes a list of tests in parentheses`, tok);
        return { kind: name, tests: tests.map((t) => this.checkTest(t)) };
      case 'exists': {
        noTests();
        const [headers] = this.positional(args, 1, name, tok);
        return { kind: 'exists', headers };
      }
      case 'size': {
        noTests();
        const over = args.find((a) => a.kind === 'tag');
        const limit = args.find((a) => a.kind === 'num');
        if (args.length !== 2 || !over || !limit || (over.v !== 'over' && over.v !== 'under')) this.fail('size takes :over or :under and a number', tok);
        return { kind: 'size', over: over.v === 'over', limit: limit.v as number };
      }
      case 'header':
      case 'address':
      case 'envelope': {
        noTests();
        if (name === 'envelope' && !this.required.has('envelope')) this.fail('envelope needs require "envelope"', tok);
        const { match, comparator, part, rest } = this.matchTags(args, name !== 'header', name);
        const [first, keys] = this.positional(rest, 2, name, tok);
        if (name === 'header') return { kind: 'header', headers: first, match, comparator, keys };
        if (name === 'address') return { kind: 'address', headers: first, part, match, comparator, keys };
        const parts = first.map((p) => p.toLowerCase());
        for (const p of parts) if (p !== 'from' && p !== 'to') this.fail(`envelope part "${p}" is not supported (from, to)`, rest[0].tok);
        return { kind: 'envelope', parts: parts as ('from' | 'to')[], part, match, comparator, keys };
      }
      default:
        return this.fail(`unknown test "${name}"`, tok);
    }
  }

  private matchTags(args: Arg[], addressParts: boolean, name: string) {
    let match: MatchType = 'is';
    let comparator: Comparator = 'i;ascii-casemap';
    let part: AddressPart = 'all';
    const rest: Arg[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (a.kind !== 'tag') {
        rest.push(a);
        continue;
      }
      const group = ['is', 'contains', 'matches'].includes(a.v) ? 'match' : ['all', 'localpart', 'domain'].includes(a.v) && addressParts ? 'part' : a.v === 'comparator' ? 'comparator' : undefined;
      if (!group) this.fail(`${name} does not take :${a.v}`, a.tok);
      if (seen.has(group)) this.fail(`more than one ${group === 'match' ? 'match type' : group === 'part' ? 'address part' : 'comparator'}`, a.tok);
      seen.add(group);
      if (group === 'match') match = a.v as MatchType;
      else if (group === 'part') part = a.v as AddressPart;
      else {
        const c = args[++i];
        if (!c || c.kind !== 'strings' || c.v.length !== 1) this.fail(':comparator takes a string', a.tok);
        if (c.v[0] !== 'i;ascii-casemap' && c.v[0] !== 'i;octet') this.fail(`comparator "${c.v[0]}" is not supported (i;ascii-casemap, i;octet)`, c.tok);
        comparator = c.v[0] as Comparator;
      }
    }
    return { match, comparator, part, rest };
  }

  /** Exactly `n` string-list arguments and nothing else. */
  private positional(args: Arg[], n: number, name: string, tok: Token): string[][] {
    for (const a of args) if (a.kind !== 'strings') this.fail(`${name} does not take ${a.kind === 'tag' ? ':' + a.v : 'a number'} here`, a.tok);
    if (args.length !== n) this.fail(`${name} takes ${n} string argument${n > 1 ? 's' : ''}`, args[n]?.tok ?? tok);
    return args.map((a) => a.v as string[]);
  }

  private need(ext: Extension, tok: Token): void {
    if (!this.required.has(ext)) this.fail(`${tok.v} needs require "${ext}"`, tok);
  }

  private action(name: string, tok: Token, args: Arg[]): Command {
    const one = (what: string) => {
      const [list] = this.positional(args, 1, name, tok);
      if (list.length !== 1) this.fail(`${name} takes one ${what}`, args[0].tok);
      return list[0];
    };
    switch (name) {
      case 'keep':
      case 'discard':
      case 'stop':
        if (args.length) this.fail(`${name} takes no arguments`, args[0].tok);
        return { kind: name };
      case 'fileinto': {
        this.need('fileinto', tok);
        const folder = one('folder');
        if (!validFolder(folder)) this.fail(`invalid folder name "${folder}"`, args[0].tok);
        return { kind: 'fileinto', folder };
      }
      case 'redirect': {
        const address = one('address');
        if (address.trim() !== address || !parseAddress(address)) this.fail(`invalid address "${address}"`, args[0].tok);
        return { kind: 'redirect', address };
      }
      case 'reject':
        this.need('reject', tok);
        return { kind: 'reject', reason: one('reason') };
      case 'vacation':
        this.need('vacation', tok);
        return this.vacation(tok, args);
      default:
        return this.fail(`unknown command "${name}"`, tok);
    }
  }

  private vacation(tok: Token, args: Arg[]): Command {
    const v: Vacation = { reason: '', days: 7, addresses: [] };
    let reason: string | undefined;
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (a.kind !== 'tag') {
        if (reason !== undefined || a.kind !== 'strings' || a.v.length !== 1 || i !== args.length - 1) this.fail('vacation takes one reason string, last', a.tok);
        reason = a.v[0];
        continue;
      }
      const value = args[++i];
      if (!value) this.fail(`:${a.v} needs a value`, a.tok);
      if (a.v === 'days') {
        if (value.kind !== 'num' || value.v < 1) this.fail(':days takes a number of days, at least 1', value.tok);
        v.days = Math.min(value.v as number, 365);
      } else if (a.v === 'subject' || a.v === 'from') {
        if (value.kind !== 'strings' || value.v.length !== 1) this.fail(`:${a.v} takes a string`, value.tok);
        v[a.v] = value.v[0];
      } else if (a.v === 'addresses') {
        if (value.kind !== 'strings') this.fail(':addresses takes a string list', value.tok);
        v.addresses = value.v;
      } else this.fail(`vacation does not support :${a.v} (supported: :days, :subject, :from, :addresses)`, a.tok);
    }
    if (reason === undefined) this.fail('vacation needs a reason', tok);
    v.reason = reason;
    return { kind: 'vacation', ...v };
  }
}

function describe(t: Token): string {
  if (t.t === 'end') return 'the end of the script';
  if (t.t === 'str') return 'a string';
  if (t.t === 'num') return 'a number';
  if (t.t === 'tag') return `:${t.v}`;
  return `"${t.v}"`;
}

function only(args: Arg[], kind: 'strings', name: string, tok: Token): string[] {
  if (args.length !== 1 || args[0].kind !== kind) throw new SieveError(`${name} takes a string or a string list`, tok.line, tok.col);
  return args[0].v as string[];
}

/** Folder names: printable, no leading or trailing space, `/` as the hierarchy separator. */
export function validFolder(name: string): boolean {
  return name.length > 0 && name.length <= 200 && !/[\x00-\x1f\x7f]/.test(name) && name.trim() === name && !name.split('/').some((p) => p === '' || p === '.' || p === '..');
}

/** Parses and checks a script; throws a SieveError with the line and column of the first problem. */
export function parseSieve(source: string): Script {
  if (Buffer.byteLength(source) > 64 * 1024) throw new SieveError('script larger than 64 KiB', 1, 1);
  return new Parser(lex(source)).script();
}
