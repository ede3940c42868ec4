/**
 * Response formatting (RFC 9051 §9's grammar from the server's side): strings, lists, flags,
 * mailbox names, sequence sets, ENVELOPE, BODYSTRUCTURE and INTERNALDATE. Text comes out as
 * JavaScript strings the session writes as UTF-8 (a literal's count is of those bytes);
 * message data as Buffers, through `literal`.
 */
import libmime from 'libmime';
import { encodeMailboxName } from './mailbox-name.js';
import type { BodyStructure, Envelope, EnvelopeAddress, Flag, MailboxName, SequenceSet } from './types.js';

/** Longer strings go as literals: clients read quoted strings into line buffers. */
const MAX_QUOTED_BYTES = 1000;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** ASTRING-CHAR (printable ASCII but `(){ %*"\`). */
const ATOM_TEXT = /^[\x21\x23\x24\x26\x27\x2b-\x5b\x5d-\x7a\x7c\x7e]+$/;
const NEEDS_LITERAL = /[\r\n]/;
const NON_ASCII = /[^\x00-\x7f]/;

/**
 * A string: quoted, or a literal when it holds CR or LF, is long, or holds 8-bit text the
 * client has not enabled (UTF8=ACCEPT lets UTF-8 be quoted). NUL, which neither may
 * carry, is dropped.
 */
export function quoted(text: string, utf8 = false): string {
  if (text.includes('\0')) text = text.replaceAll('\0', '');
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_QUOTED_BYTES || NEEDS_LITERAL.test(text) || (!utf8 && NON_ASCII.test(text))) {
    return `{${bytes}}\r\n${text}`;
  }
  return `"${text.replace(/[\\"]/g, '\\$&')}"`;
}

/** An atom when the text is one (and not NIL, which would read as nothing), else a string. */
export function astring(text: string, utf8 = false): string {
  return ATOM_TEXT.test(text) && text.toUpperCase() !== 'NIL' ? text : quoted(text, utf8);
}

/** NIL for null (or undefined), else a string. */
export function nstring(text: string | null | undefined, utf8 = false): string {
  return text === null || text === undefined ? 'NIL' : quoted(text, utf8);
}

/** Data as a literal: `{n}` CRLF and the bytes; `~{n}` (RFC 3516's literal8) for BINARY[]. */
export function literal(data: Buffer, binary = false): Buffer {
  return Buffer.concat([Buffer.from(`${binary ? '~' : ''}{${data.length}}\r\n`, 'latin1'), data]);
}

/** A parenthesised list of items already formatted. */
export function list(items: readonly string[]): string {
  return `(${items.join(' ')})`;
}

/** `(\Seen $Forwarded)`: flags are atoms as the parser took them. */
export function flagList(flags: readonly Flag[]): string {
  return list(flags);
}

/** A mailbox name as an astring: modified UTF-7 unless the client enabled UTF8=ACCEPT. */
export function mailboxName(name: MailboxName, utf8 = false): string {
  return astring(encodeMailboxName(name, utf8), utf8);
}

/**
 * A sequence set from numbers in ascending order, runs folded: `1:3,5`. Order is kept (so
 * COPYUID's two sets still pair up), repeats dropped; '' for none.
 */
export function sequenceSet(numbers: Iterable<number>): string {
  const parts: string[] = [];
  let from = -1;
  let to = -1;
  for (const n of numbers) {
    if (n === to) continue;
    if (n === to + 1 && from >= 0) {
      to = n;
      continue;
    }
    if (from >= 0) parts.push(from === to ? `${from}` : `${from}:${to}`);
    from = to = n;
  }
  if (from >= 0) parts.push(from === to ? `${from}` : `${from}:${to}`);
  return parts.join(',');
}

/** A parsed SequenceSet written back: `$`, or ranges with Infinity as `*`. */
export function sequenceSetText(set: SequenceSet): string {
  if (set.saved) return '$';
  const n = (x: number) => (x === Infinity ? '*' : `${x}`);
  return set.ranges.map(([a, b]) => (a === b ? n(a) : `${n(a)}:${n(b)}`)).join(',');
}

// ---- ENVELOPE and BODYSTRUCTURE ---------------------------------------------------------

/** Decoded header text for a client without UTF8=ACCEPT: non-ASCII goes back into encoded-words (RFC 2047), as the header had it. */
function headerText(text: string | null, utf8: boolean): string | null {
  return text === null || utf8 || !NON_ASCII.test(text) ? text : libmime.encodeWords(text, 'B');
}

function addresses(list: EnvelopeAddress[] | null, utf8: boolean): string {
  if (!list || list.length === 0) return 'NIL';
  // No space between addresses: `"(" 1*address ")"`.
  return `(${list.map((a) => `(${nstring(headerText(a.name, utf8), utf8)} ${nstring(a.adl, utf8)} ${nstring(a.mailbox, utf8)} ${nstring(a.host, utf8)})`).join('')})`;
}

/** ENVELOPE's value (RFC 9051 §7.5.2): date, subject, from, sender, reply-to, to, cc, bcc, in-reply-to, message-id. */
export function formatEnvelope(env: Envelope, utf8 = false): string {
  const fields = [
    nstring(env.date, utf8),
    nstring(headerText(env.subject, utf8), utf8),
    addresses(env.from, utf8),
    addresses(env.sender, utf8),
    addresses(env.replyTo, utf8),
    addresses(env.to, utf8),
    addresses(env.cc, utf8),
    addresses(env.bcc, utf8),
    nstring(env.inReplyTo, utf8),
    nstring(env.messageId, utf8),
  ];
  return `(${fields.join(' ')})`;
}

function params(p: Record<string, string>, utf8: boolean): string {
  const entries = Object.entries(p);
  if (entries.length === 0) return 'NIL';
  return list(entries.map(([name, value]) => `${quoted(name.toUpperCase(), utf8)} ${quoted(value, utf8)}`));
}

function disposition(d: BodyStructure['disposition'], utf8: boolean): string {
  return d ? `(${quoted(d.type.toUpperCase(), utf8)} ${params(d.params, utf8)})` : 'NIL';
}

function language(l: string[] | null, utf8: boolean): string {
  if (!l || l.length === 0) return 'NIL';
  return l.length === 1 ? quoted(l[0], utf8) : list(l.map((x) => quoted(x, utf8)));
}

/** A multipart without parts has no form in the grammar (`1*body`): it shows one empty text part. */
const NO_PART = '("TEXT" "PLAIN" NIL NIL NIL "7BIT" 0 0)';

function body(b: BodyStructure, extensible: boolean, utf8: boolean): string {
  const type = b.type.toLowerCase();
  if (type === 'multipart') {
    const parts = b.parts?.length ? b.parts.map((p) => body(p, extensible, utf8)).join('') : NO_PART;
    let out = `(${parts} ${quoted(b.subtype.toUpperCase(), utf8)}`;
    if (extensible) out += ` ${params(b.params, utf8)} ${disposition(b.disposition, utf8)} ${language(b.language, utf8)} ${nstring(b.location, utf8)}`;
    return out + ')';
  }
  const subtype = b.subtype.toLowerCase();
  let out =
    `(${quoted(type.toUpperCase(), utf8)} ${quoted(b.subtype.toUpperCase(), utf8)} ${params(b.params, utf8)}` +
    ` ${nstring(b.id, utf8)} ${nstring(b.description, utf8)} ${quoted((b.encoding || '7bit').toUpperCase(), utf8)} ${b.size}`;
  if (type === 'message' && (subtype === 'rfc822' || subtype === 'global') && b.envelope && b.body) {
    out += ` ${formatEnvelope(b.envelope, utf8)} ${body(b.body, extensible, utf8)} ${b.lines ?? 0}`;
  } else if (type === 'text') out += ` ${b.lines ?? 0}`;
  if (extensible) out += ` ${nstring(b.md5, utf8)} ${disposition(b.disposition, utf8)} ${language(b.language, utf8)} ${nstring(b.location, utf8)}`;
  return out + ')';
}

/**
 * BODYSTRUCTURE's value (`extensible`), or BODY's (without extension data), per RFC 9051
 * §7.5.2. Types, subtypes, encodings and parameter names are written upper-case, as the
 * RFC's examples have them.
 */
export function formatBodyStructure(structure: BodyStructure, extensible: boolean, utf8 = false): string {
  return body(structure, extensible, utf8);
}

// ---- dates ------------------------------------------------------------------------------

const two = (n: number) => String(n).padStart(2, '0');

/** INTERNALDATE's date-time, quoted: `"17-Jul-1996 02:44:25 -0700"`, in the zone `offsetMinutes` east of UTC. */
export function dateTime(date: Date, offsetMinutes = 0): string {
  const t = new Date(date.getTime() + offsetMinutes * 60_000);
  const zone = Math.abs(offsetMinutes);
  const day = String(t.getUTCDate()).padStart(2, ' ');
  const year = String(t.getUTCFullYear()).padStart(4, '0');
  return (
    `"${day}-${MONTHS[t.getUTCMonth()]}-${year} ${two(t.getUTCHours())}:${two(t.getUTCMinutes())}:${two(t.getUTCSeconds())} ` +
    `${offsetMinutes < 0 ? '-' : '+'}${two(Math.floor(zone / 60))}${two(zone % 60)}"`
  );
}
