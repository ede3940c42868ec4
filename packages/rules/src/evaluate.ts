import type { MessageView } from './message.js';
import type { AddressPart, Command, Match, Script, Test, Vacation } from './sieve.js';

export const INBOX = 'INBOX';

/** What the rules see of one delivery. */
export interface RuleInput {
  message: MessageView;
  size: number;
  /** The envelope sender ('' for <>) and the recipient this copy is for. */
  envelope: { from: string; to: string };
}

/** What the rules decided for one delivery (RFC 5228 §2.10: implicit keep unless cancelled). */
export interface RuleResult {
  /** Folders to store into (keep is INBOX), in order, each once; empty: nothing stored. */
  folders: string[];
  redirects: string[];
  /** RFC 5429: refused, with this reason, in a DSN to the sender. */
  reject?: string;
  vacation?: Vacation;
  /** For the log: what ran, in order (`fileinto:Lists`, `redirect:a@b`, `vacation`, …). */
  actions: string[];
  /** Actions that could not be taken together, and what was done instead. */
  problems: string[];
}

/** Copies one message may be redirected to (Pigeonhole's default too): a script cannot multiply mail. */
export const MAX_REDIRECTS = 4;

/** Runs a script against a delivery. Pure: makes no messages and writes nothing. */
export function evaluate(script: Script, input: RuleInput): RuleResult {
  const r: RuleResult = { folders: [], redirects: [], actions: [], problems: [] };
  let cancelled = false;
  const run = (commands: Command[]): boolean => {
    for (const c of commands) {
      switch (c.kind) {
        case 'if': {
          const branch = c.branches.find((b) => test(b.test, input));
          const block = branch ? branch.block : c.otherwise;
          if (block && !run(block)) return false;
          break;
        }
        case 'stop':
          r.actions.push('stop');
          return false;
        case 'keep':
        case 'fileinto': {
          const folder = c.kind === 'fileinto' && c.folder.toUpperCase() !== INBOX ? c.folder : INBOX;
          cancelled = true;
          if (!r.folders.includes(folder)) r.folders.push(folder);
          r.actions.push(c.kind === 'keep' ? 'keep' : `fileinto:${folder}`);
          break;
        }
        case 'discard':
          cancelled = true;
          r.actions.push('discard');
          break;
        case 'redirect':
          cancelled = true;
          if (r.redirects.length >= MAX_REDIRECTS) r.problems.push(`more than ${MAX_REDIRECTS} redirects: ${c.address} not redirected to`);
          else if (!r.redirects.includes(c.address)) r.redirects.push(c.address);
          r.actions.push(`redirect:${c.address}`);
          break;
        case 'reject':
          cancelled = true;
          if (r.reject !== undefined) r.problems.push('a second reject ignored');
          r.reject ??= c.reason;
          r.actions.push('reject');
          break;
        case 'vacation':
          // Does not cancel the implicit keep (RFC 5230 §4.7); one reply at most.
          r.vacation ??= c;
          r.actions.push('vacation');
          break;
      }
    }
    return true;
  };
  run(script.commands);
  if (r.reject !== undefined && (r.folders.length || r.redirects.length || r.vacation)) {
    // RFC 5429 §2.2: reject cannot go with keep, fileinto, redirect or vacation; a sender
    // must not be told "rejected" of a message that was delivered. The error keeps it.
    r.problems.push('reject together with keep, fileinto, redirect or vacation: not rejected, kept');
    r.reject = undefined;
    if (!r.folders.length) r.folders.push(INBOX);
    return r;
  }
  if (!cancelled) r.folders.push(INBOX);
  return r;
}

function test(t: Test, input: RuleInput): boolean {
  switch (t.kind) {
    case 'true':
      return true;
    case 'false':
      return false;
    case 'not':
      return !test(t.test, input);
    case 'anyof':
      return t.tests.some((x) => test(x, input));
    case 'allof':
      return t.tests.every((x) => test(x, input));
    case 'exists':
      return t.headers.every((h) => input.message.has(h));
    case 'size':
      return t.over ? input.size > t.limit : input.size < t.limit;
    case 'header':
      return matches(t, t.headers.flatMap((h) => input.message.header(h)));
    case 'address':
      return matches(t, t.headers.flatMap((h) => input.message.addresses(h)).map((a) => part(a, t.part)));
    case 'envelope':
      return matches(
        t,
        t.parts.flatMap((p) => {
          const a = p === 'from' ? input.envelope.from : input.envelope.to;
          // The null sender is the empty string, whatever part is asked (RFC 5228 §5.4).
          return a === '' ? [''] : [part(a, t.part)];
        }),
      );
  }
}

function part(address: string, which: AddressPart): string {
  const at = address.lastIndexOf('@');
  if (which === 'all') return address;
  if (at < 0) return which === 'localpart' ? address : '';
  return which === 'localpart' ? address.slice(0, at) : address.slice(at + 1);
}

function matches(m: Match, values: string[]): boolean {
  const fold = m.comparator === 'i;ascii-casemap' ? (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase()) : (s: string) => s;
  return values.some((raw) => {
    const value = fold(raw);
    return m.keys.some((rawKey) => {
      const key = fold(rawKey);
      if (m.match === 'is') return value === key;
      if (m.match === 'contains') return value.includes(key);
      return glob(key).test(value);
    });
  });
}

const globs = new Map<string, RegExp>();

/** `:matches`: `*` any run, `?` one character, `\` quotes the next (RFC 5228 §2.7.1). */
function glob(pattern: string): RegExp {
  let re = globs.get(pattern);
  if (re) return re;
  let src = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\' && i + 1 < pattern.length) src += escape(pattern[++i]);
    else if (c === '*') src += '.*';
    else if (c === '?') src += '.';
    else src += escape(c);
  }
  re = new RegExp(`^${src}$`, 'su');
  if (globs.size > 1000) globs.clear();
  globs.set(pattern, re);
  return re;
}

const escape = (c: string) => c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
