/**
 * A message's MIME structure for FETCH, SEARCH, SORT and THREAD: ENVELOPE and the header
 * fields search and sort read (from the header block alone), and the MIME tree (mailsplit
 * splits it) for BODYSTRUCTURE, BODY[section] and BINARY[part].
 *
 * A tree holds offsets into the message and its parts' header blocks, never the message's
 * bytes, so it can be cached apart from them (MimeCache). Offsets are byte positions; messages
 * are CRLF, so they are IMAP's sizes as they are.
 */
import { isUtf8 } from 'node:buffer';
import type { Transform } from 'node:stream';
import libmime from 'libmime';
import charset from 'libmime/lib/charset.js';
import libqp from 'libqp';
import { Headers, Splitter, type HeaderLine, type MessageChunk, type MimeNode } from '@zone-eu/mailsplit';
import addressparser from 'nodemailer/lib/addressparser/index.js';
import { baseSubject } from './subject.js';
import type { BodyStructure, Envelope, EnvelopeAddress, FetchItem, MessageHeaders, Section } from './types.js';

const LF = 0x0a;
const CR = 0x0d;
const DASH = 0x2d;
const CRLF = Buffer.from('\r\n');

/** Parts beyond this many make the rest of a message one body (Dovecot caps parts likewise). */
const MAX_PARTS = 10_000;
/** message/rfc822 parts nested deeper than this keep their header but are not split further. */
const MAX_DEPTH = 32;
/** How ENVELOPE names a missing local part or domain (Dovecot's words; a NIL host would mean a group). */
const MISSING_MAILBOX = 'MISSING_MAILBOX';
const MISSING_DOMAIN = 'MISSING_DOMAIN';

// ---- header fields ----------------------------------------------------------------------

/** 8-bit header text: UTF-8 where it is valid UTF-8 (RFC 6532), else read as Latin-1. */
function headerText(latin1: string): string {
  if (/^[\x00-\x7f]*$/.test(latin1)) return latin1;
  const bytes = Buffer.from(latin1, 'latin1');
  return isUtf8(bytes) ? bytes.toString('utf8') : latin1;
}

function decodeWords(value: string): string {
  if (!value.includes('=?')) return value;
  try {
    return libmime.decodeWords(value);
  } catch {
    return value;
  }
}

/** A header block (blank line included when it has one), its fields read on first use. */
export class HeaderFields {
  #fields: { name: string; line: string; value: string }[] | undefined;
  #parsed: MessageHeaders | undefined;

  constructor(
    /** The header block as stored. */
    readonly raw: Buffer,
  ) {}

  /** Every field in order: `name` lower-cased, `line` as written (latin1), `value` unfolded and trimmed. */
  fields(): readonly { name: string; line: string; value: string }[] {
    if (this.#fields) return this.#fields;
    const list: HeaderLine[] = new Headers(this.raw).getList();
    this.#fields = [];
    for (const { key, line } of list) {
      const colon = line.indexOf(':');
      if (colon < 0) continue;
      this.#fields.push({ name: key, line, value: headerText(line.slice(colon + 1).replace(/\r?\n(?=[ \t])/g, '')).trim() });
    }
    return this.#fields;
  }

  /** The values of a field, unfolded and trimmed, not decoded. */
  values(name: string): string[] {
    const lower = name.toLowerCase();
    return this.fields()
      .filter((f) => f.name === lower)
      .map((f) => f.value);
  }

  first(name: string): string | undefined {
    const lower = name.toLowerCase();
    return this.fields().find((f) => f.name === lower)?.value;
  }

  /** The values of a field with their encoded-words decoded (what SEARCH HEADER compares). */
  decoded(name: string): string[] {
    return this.values(name).map(decodeWords);
  }

  /** Every field as `Name: decoded value`, one a line (SEARCH TEXT's view of the header). */
  text(): string {
    return this.fields()
      .map((f) => `${f.name}: ${decodeWords(f.value)}`)
      .join('\n');
  }

  /** Whether the block ends with its blank line (a message without a body may have none). */
  get hasBlankLine(): boolean {
    const r = this.raw;
    const n = r.length;
    return (n >= 1 && r[0] === LF) || (n === 2 && r[0] === CR && r[1] === LF) || (n >= 2 && r[n - 1] === LF && (r[n - 2] === LF || (r[n - 2] === CR && n >= 3 && r[n - 3] === LF)));
  }

  /** HEADER.FIELDS / HEADER.FIELDS.NOT: the matching fields as written, then the blank line. */
  select(names: readonly string[], not: boolean): Buffer {
    const wanted = new Set(names.map((n) => n.toLowerCase()));
    const out: Buffer[] = [];
    for (const f of this.fields()) {
      if (wanted.has(f.name) === not) continue;
      out.push(Buffer.from(f.line, 'latin1'), CRLF);
    }
    if (this.hasBlankLine) out.push(CRLF);
    return Buffer.concat(out);
  }

  /** What search, sort and thread read (computed once). */
  get parsed(): MessageHeaders {
    return (this.#parsed ??= messageHeaders(this));
  }
}

/** Length of the header block at `start` (its blank line included), as mailsplit ends it: at the first empty line. */
function headerLength(buf: Buffer, start: number, end: number): number {
  if (start < end && buf[start] === LF) return 1;
  if (start + 1 < end && buf[start] === CR && buf[start + 1] === LF) return 2;
  for (let i = start; ; ) {
    const lf = buf.indexOf(LF, i);
    if (lf < 0 || lf >= end) return end - start;
    const next = lf + 1;
    if (next < end && buf[next] === LF) return next + 1 - start;
    if (next + 1 < end && buf[next] === CR && buf[next + 1] === LF) return next + 2 - start;
    i = next;
  }
}

/** The message's header block only: what ENVELOPE and search, sort and thread need, without the body. */
export function headerFields(message: Buffer): HeaderFields {
  return new HeaderFields(message.subarray(0, headerLength(message, 0, message.length)));
}

const asFields = (m: Buffer | HeaderFields) => (m instanceof HeaderFields ? m : headerFields(m));

// ---- ENVELOPE ---------------------------------------------------------------------------

/** One address as ENVELOPE gives it; missing parts named as Dovecot names them. */
function envelopeAddress(name: string, address: string): EnvelopeAddress {
  let display: string | null = decodeWords(name).trim() || null;
  // A source route (`@a,@b:user@host`) is dropped: adl is always NIL here.
  const addr = address.replace(/^@[^:]*:/, '');
  const at = addr.lastIndexOf('@');
  let mailbox = at < 0 ? addr : addr.slice(0, at);
  const host = at < 0 ? '' : addr.slice(at + 1);
  // A lone word is a local part without a domain (`To: root`), as Dovecot reads it.
  if (!addr && display && !/\s/.test(name.trim()) && !name.includes('=?')) {
    mailbox = display;
    display = null;
  }
  return { name: display, adl: null, mailbox: mailbox || MISSING_MAILBOX, host: host || MISSING_DOMAIN };
}

/** An address list as ENVELOPE gives it, groups as start and end markers; NIL when empty. */
function envelopeAddresses(value: string | undefined): EnvelopeAddress[] | null {
  if (!value) return null;
  const out: EnvelopeAddress[] = [];
  for (const entry of addressparser(value)) {
    if ('group' in entry) {
      out.push({ name: null, adl: null, mailbox: decodeWords(entry.name), host: null });
      for (const member of entry.group) out.push(envelopeAddress(member.name, member.address));
      out.push({ name: null, adl: null, mailbox: null, host: null });
    } else out.push(envelopeAddress(entry.name, entry.address));
  }
  return out.length ? out : null;
}

/**
 * ENVELOPE (RFC 9051 §7.5.2) from the header block. The subject and display names are decoded
 * to UTF-8 (a session without UTF8=ACCEPT encodes them again); date, message-id and in-reply-to
 * are as written. Sender and Reply-To fall back to From when absent or empty.
 */
export function envelope(message: Buffer | HeaderFields): Envelope {
  const h = asFields(message);
  const subject = h.first('subject');
  const from = envelopeAddresses(h.first('from'));
  return {
    date: h.first('date') ?? null,
    subject: subject === undefined ? null : decodeWords(subject),
    from,
    sender: envelopeAddresses(h.first('sender')) ?? from,
    replyTo: envelopeAddresses(h.first('reply-to')) ?? from,
    to: envelopeAddresses(h.first('to')),
    cc: envelopeAddresses(h.first('cc')),
    bcc: envelopeAddresses(h.first('bcc')),
    inReplyTo: h.first('in-reply-to') ?? null,
    messageId: h.first('message-id') ?? null,
  };
}

// ---- what search, sort and thread read --------------------------------------------------

/** Obsolete zones of RFC 5322 §4.3, in minutes east of UTC. */
const ZONES: Record<string, number> = { UT: 0, GMT: 0, Z: 0, EST: -300, EDT: -240, CST: -360, CDT: -300, MST: -420, MDT: -360, PST: -480, PDT: -420 };

/** The zone a Date: value was written in, minutes east of UTC (0 when it names none). */
function dateZone(value: string): number {
  const bare = value.replace(/\([^)]*\)/g, ' ').trim();
  const numeric = /([+-])(\d\d)(\d\d)$/.exec(bare);
  if (numeric) return (numeric[1] === '-' ? -1 : 1) * (Number(numeric[2]) * 60 + Number(numeric[3]));
  return ZONES[/([A-Za-z]+)$/.exec(bare)?.[1].toUpperCase() ?? ''] ?? 0;
}

const msgIds = (value: string) => Array.from(value.matchAll(/<([^<>]+)>/g), (m) => `<${m[1].replace(/\s+/g, '')}>`);

function addressList(h: HeaderFields, name: string): { name: string; address: string }[] {
  const out: { name: string; address: string }[] = [];
  for (const a of envelopeAddresses(h.first(name)) ?? []) {
    if (a.host === null) continue; // group markers
    const mailbox = a.mailbox === MISSING_MAILBOX ? '' : (a.mailbox ?? '');
    const host = a.host === MISSING_DOMAIN ? '' : a.host;
    out.push({ name: a.name ?? '', address: host ? `${mailbox}@${host}` : mailbox });
  }
  return out;
}

function messageHeaders(h: HeaderFields): MessageHeaders {
  const subject = decodeWords(h.first('subject') ?? '');
  const { base, isReplyOrForward } = baseSubject(subject);
  const date = h.first('date');
  const sent = date === undefined ? NaN : Date.parse(date.replace(/\([^)]*\)/g, ' '));
  const out: MessageHeaders = {
    subject,
    baseSubject: base,
    isReplyOrForward,
    from: addressList(h, 'from'),
    to: addressList(h, 'to'),
    cc: addressList(h, 'cc'),
    ...threadIds(h),
  };
  if (Number.isFinite(sent)) {
    out.sent = sent;
    out.sentZone = dateZone(date!);
  }
  return out;
}

/**
 * The ids that place a message in its thread (Message-ID, In-Reply-To, References), and
 * nothing else of its header: what every delivery asks, so no subject or address is decoded.
 */
export function threadIds(message: Buffer | HeaderFields): Pick<MessageHeaders, 'messageId' | 'inReplyTo' | 'references'> {
  const h = asFields(message);
  const out: Pick<MessageHeaders, 'messageId' | 'inReplyTo' | 'references'> = { references: msgIds(h.values('references').join(' ')) };
  const messageId = msgIds(h.first('message-id') ?? '')[0];
  if (messageId) out.messageId = messageId;
  const inReplyTo = msgIds(h.first('in-reply-to') ?? '')[0];
  if (inReplyTo) out.inReplyTo = inReplyTo;
  return out;
}

/** What search, sort and thread read of a message, from its header block alone. */
export function headers(message: Buffer | HeaderFields): MessageHeaders {
  return asFields(message).parsed;
}

// ---- the MIME tree ----------------------------------------------------------------------

/** One MIME entity: where its header and body lie in the message, and what its header says. */
export interface MimePart {
  readonly header: HeaderFields;
  readonly headerStart: number;
  readonly bodyStart: number;
  /** End of the body (a multipart's includes its epilogue; the CRLF before a boundary belongs to the boundary). */
  readonly end: number;
  /** Lower-cased. */
  readonly type: string;
  readonly subtype: string;
  /** Names lower-cased, values decoded; text parts get Dovecot's default `charset=us-ascii`. */
  readonly params: Record<string, string>;
  /** Lower-cased; `7bit` when absent or not a token. */
  readonly encoding: string;
  /** A multipart's parts (empty when it has none). */
  readonly parts?: readonly MimePart[];
  /** message/rfc822 or message/global: the enclosed message's top entity. */
  readonly message?: MimePart;
  /** text/*, message/rfc822 and message/global: lines of the body. */
  readonly lines?: number;
}

/** A message's MIME tree. No reference to the message's bytes: give them again to `section`/`binary`. */
export interface MimeTree {
  readonly root: MimePart;
  /** Octets of the message. */
  readonly size: number;
  /** What the tree holds in memory, roughly (its header blocks and part records), for MimeCache. */
  readonly cost: number;
}

const isMessageType = (type: string, subtype: string) => type === 'message' && (subtype === 'rfc822' || subtype === 'global');
const TOKEN = /^[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+$/;

/** Content-Type and Content-Transfer-Encoding as BODYSTRUCTURE reads them, with Dovecot's defaults. */
function describe(h: HeaderFields, inDigest: boolean): Pick<MimePart, 'type' | 'subtype' | 'params' | 'encoding'> {
  const parsed = parseValue(h.first('content-type'));
  let type = inDigest ? 'message' : 'text';
  let subtype = inDigest ? 'rfc822' : 'plain';
  let params: Record<string, string> = {};
  if (parsed) {
    const [t, s] = parsed.value.toLowerCase().split('/', 2).map((x) => x.trim());
    if (t && TOKEN.test(t)) {
      type = t;
      subtype = s && TOKEN.test(s) ? s : type === 'text' ? 'plain' : type === 'multipart' ? 'x-unknown' : 'unknown';
      params = parsed.params;
    }
  }
  if (type === 'text' && params.charset === undefined) params = { ...params, charset: 'us-ascii' };
  const cte = (h.first('content-transfer-encoding') ?? '').replace(/\([^)]*\)/g, '').trim().toLowerCase();
  return { type, subtype, params, encoding: TOKEN.test(cte) ? cte : '7bit' };
}

/** A parameterised header value (Content-Type, Content-Disposition): RFC 2231 and encoded-word file names decoded. */
function parseValue(value: string | undefined): { value: string; params: Record<string, string> } | undefined {
  if (value === undefined) return undefined;
  try {
    const parsed = libmime.parseHeaderValue(value, { stripComments: true });
    const params: Record<string, string> = {};
    for (const [k, v] of Object.entries(parsed.params)) {
      // RFC 2231 values are decoded already; mailers also put encoded-words in quoted names.
      params[k] = (k === 'name' || k === 'filename') && !parsed.decodedParams.includes(k) ? decodeWords(v) : v;
    }
    return { value: parsed.value.trim(), params };
  } catch {
    return undefined;
  }
}

/** A copy in a buffer of its own: a tree must not keep the message (or a shared pool slab) alive. */
function own(bytes: Buffer): Buffer {
  const copy = Buffer.allocUnsafeSlow(bytes.length);
  bytes.copy(copy);
  return copy;
}

function countLines(buf: Buffer, start: number, end: number): number {
  let n = 0;
  for (let i = buf.indexOf(LF, start); i >= 0 && i < end; i = buf.indexOf(LF, i + 1)) n++;
  return n;
}

/** A part as the splitter gave it, before its end is known. */
interface Split {
  node: MimeNode;
  headerStart: number;
  headerEnd: number;
  /** End of the last body bytes the splitter gave this part. */
  bodyEnd: number;
  /** Where the delimiter before this part begins (all parts but a multipart's first). */
  delimiter?: number;
  children: Split[];
}

/** The CRLF and `--boundary` line that ends `[s, e)` (a chunk the splitter gave right before a part). */
function delimiterStart(buf: Buffer, s: number, e: number): number {
  let q = e;
  if (q > s && buf[q - 1] === LF) q--;
  if (q > s && buf[q - 1] === CR) q--;
  const lf = q > s ? buf.lastIndexOf(LF, q - 1) : -1;
  let line = lf >= s ? lf + 1 : s;
  if (line > 0 && buf[line - 1] === LF) line -= line > 1 && buf[line - 2] === CR ? 2 : 1;
  return line;
}

/** Where a multipart's close delimiter (`CRLF--boundary--`) begins in `[from, to)`, if it has one. */
function closeDelimiter(buf: Buffer, from: number, to: number, boundary: Buffer): number | undefined {
  const needle = Buffer.concat([Buffer.from('--'), boundary]);
  const area = buf.subarray(from, to);
  for (let i = area.indexOf(needle); i >= 0; i = area.indexOf(needle, i + 1)) {
    const at = from + i;
    const lineStart = at === 0 || buf[at - 1] === LF;
    if (lineStart && buf[at + needle.length] === DASH && buf[at + needle.length + 1] === DASH && at + needle.length + 2 <= to) {
      let start = at;
      if (start > from && buf[start - 1] === LF) start -= start - 1 > from && buf[start - 2] === CR ? 2 : 1;
      return start;
    }
  }
  return undefined;
}

/** mailsplit's parts of `[start, end)` with their offsets; undefined when it gives up (too many parts). */
function split(buf: Buffer, start: number, end: number): Promise<Split | undefined> {
  return new Promise((resolve) => {
    // message/rfc822 parts are split by parseEntity, at any depth and whatever their disposition.
    const splitter = new Splitter({ ignoreEmbedded: true, maxHeadSize: Infinity, maxChildNodes: MAX_PARTS });
    const input = buf.subarray(start, end);
    const byNode = new Map<MimeNode, Split>();
    let root: Split | undefined;
    let last = start;
    let lastData: [number, number] | undefined;
    splitter.on('data', (chunk: MimeNode | MessageChunk) => {
      if (chunk.type === 'node') {
        const headerEnd = Math.min(last + chunk.getHeaders().length, end);
        const part: Split = { node: chunk, headerStart: last, headerEnd, bodyEnd: headerEnd, children: [] };
        const parent = chunk.parentNode ? byNode.get(chunk.parentNode) : undefined;
        if (parent) {
          if (parent.children.length && lastData) part.delimiter = delimiterStart(buf, lastData[0], lastData[1]);
          parent.children.push(part);
        } else root ??= part;
        byNode.set(chunk, part);
        last = headerEnd;
        lastData = undefined;
        return;
      }
      // Values are slices of the input: their offset is their place, even where the splitter
      // gives some bytes twice (a header cut short by a boundary) or drops them.
      const s = chunk.value.buffer === input.buffer ? chunk.value.byteOffset - input.byteOffset + start : last;
      const e = s + chunk.value.length;
      if (chunk.type === 'body') {
        const part = byNode.get(chunk.node);
        if (part) part.bodyEnd = e;
        lastData = undefined;
      } else lastData = [s, e];
      last = e;
    });
    // Its types declare only 'data'; the rest are the Transform's.
    const stream = splitter as unknown as Transform;
    stream.on('end', () => resolve(root));
    stream.on('error', () => resolve(undefined));
    stream.end(input);
  });
}

/** The part at `[start, end)` read from its header alone, not split (past the limits). */
function headerOnly(buf: Buffer, start: number, end: number, inDigest: boolean): MimePart {
  const header = new HeaderFields(own(buf.subarray(start, start + headerLength(buf, start, end))));
  let desc = describe(header, inDigest);
  // A message part needs the message in it split: past the limits it is shown as text.
  if (isMessageType(desc.type, desc.subtype)) desc = { ...desc, type: 'text', subtype: 'plain', params: { charset: 'us-ascii' } };
  const bodyStart = start + header.raw.length;
  return {
    header,
    headerStart: start,
    bodyStart,
    end,
    ...desc,
    ...(desc.type === 'multipart' ? { parts: [] } : {}),
    ...(desc.type === 'text' ? { lines: countLines(buf, bodyStart, end) } : {}),
  };
}

/** The entity at `[start, end)` and everything in it. */
async function parseEntity(buf: Buffer, start: number, end: number, depth: number, inDigest: boolean): Promise<MimePart> {
  const root = depth < MAX_DEPTH ? await split(buf, start, end) : undefined;
  return root ? build(buf, root, end, depth, inDigest) : headerOnly(buf, start, end, inDigest);
}

async function build(buf: Buffer, s: Split, end: number, depth: number, inDigest: boolean): Promise<MimePart> {
  const header = new HeaderFields(own(s.node.getHeaders()));
  const desc = describe(header, inDigest);
  const bodyStart = Math.min(s.headerEnd, end);
  // What the splitter split is a multipart, even where this reading of Content-Type differs from its.
  if (desc.type === 'multipart' || s.children.length > 0) {
    const parts: MimePart[] = [];
    const n = s.children.length;
    for (let i = 0; i < n; i++) {
      const child = s.children[i];
      let childEnd: number;
      if (i + 1 < n) childEnd = s.children[i + 1].delimiter ?? s.children[i + 1].headerStart;
      else {
        // The last part ends at the close delimiter, found after the last bytes the splitter gave it.
        const boundary = s.node._boundary;
        childEnd = (boundary && closeDelimiter(buf, contentEnd(child), end, boundary)) || end;
      }
      parts.push(await build(buf, child, Math.max(child.headerEnd, Math.min(childEnd, end)), depth, desc.subtype === 'digest'));
    }
    return { header, headerStart: s.headerStart, bodyStart, end, ...desc, parts };
  }
  // A leaf ends where the splitter's body for it ended, within what its parent gives it.
  const leafEnd = Math.max(bodyStart, Math.min(s.bodyEnd, end));
  const part: MimePart = { header, headerStart: s.headerStart, bodyStart, end: leafEnd, ...desc };
  // Line counts are for text and message/rfc822 only (the grammar has none for other types).
  if (desc.type === 'text') return { ...part, lines: countLines(buf, bodyStart, leafEnd) };
  if (!isMessageType(desc.type, desc.subtype)) return part;
  return { ...part, lines: countLines(buf, bodyStart, leafEnd), message: await parseEntity(buf, bodyStart, leafEnd, depth + 1, false) };
}

function contentEnd(s: Split): number {
  let end = Math.max(s.headerEnd, s.bodyEnd);
  for (const c of s.children) end = Math.max(end, contentEnd(c));
  return end;
}

function treeCost(p: MimePart): number {
  let cost = 256 + p.header.raw.length;
  for (const c of p.parts ?? []) cost += treeCost(c);
  if (p.message) cost += treeCost(p.message);
  return cost;
}

/**
 * The MIME tree of a message (mailsplit splits it; message/rfc822 and message/global parts are
 * split too, whatever their disposition). Linear in the message's size; the splitter yields to
 * the event loop line by line, so a large message does not hold up other sessions.
 */
export async function parseMime(message: Buffer): Promise<MimeTree> {
  const root = await parseEntity(message, 0, message.length, 0, false);
  return { root, size: message.length, cost: treeCost(root) };
}

// ---- BODYSTRUCTURE ----------------------------------------------------------------------

const EMPTY_PART: BodyStructure = {
  type: 'text',
  subtype: 'plain',
  params: { charset: 'us-ascii' },
  id: null,
  description: null,
  encoding: '7bit',
  size: 0,
  lines: 0,
  md5: null,
  disposition: null,
  language: null,
  location: null,
};

function structureOf(p: MimePart): BodyStructure {
  const h = p.header;
  const disposition = parseValue(h.first('content-disposition'));
  const language = (h.first('content-language') ?? '')
    .split(',')
    .map((l) => l.replace(/\([^)]*\)/g, '').trim())
    .filter(Boolean);
  const out: BodyStructure = {
    type: p.type,
    subtype: p.subtype,
    params: p.params,
    id: h.first('content-id') ?? null,
    description: h.first('content-description') ?? null,
    encoding: p.encoding,
    size: p.end - p.bodyStart,
    md5: h.first('content-md5') ?? null,
    disposition: disposition?.value ? { type: disposition.value.toLowerCase(), params: disposition.params } : null,
    language: language.length ? language : null,
    location: h.first('content-location') ?? null,
  };
  // A multipart without parts still shows one, empty (the grammar needs one; Dovecot does this).
  if (p.parts) out.parts = p.parts.length ? p.parts.map(structureOf) : [EMPTY_PART];
  if (p.lines !== undefined) out.lines = p.lines;
  if (p.message) {
    out.envelope = envelope(p.message.header);
    out.body = structureOf(p.message);
  }
  return out;
}

const structures = new WeakMap<MimeTree, BodyStructure>();

/** BODYSTRUCTURE (and BODY, which is it without the extension data), computed once per tree. */
export function bodyStructure(tree: MimeTree): BodyStructure {
  let s = structures.get(tree);
  if (!s) structures.set(tree, (s = structureOf(tree.root)));
  return s;
}

// ---- BODY[section] and BINARY[part] -----------------------------------------------------

/**
 * The entity a part number names (RFC 9051 §6.4.5): numbers index a multipart's parts; a
 * non-multipart message has only part 1, itself; a message/rfc822 part's numbers go on into the
 * message it encloses.
 */
function resolve(root: MimePart, path: readonly number[]): MimePart | null {
  let entity: MimePart | null = null;
  let message = root;
  for (const n of path) {
    if (!Number.isInteger(n) || n < 1) return null;
    if (entity?.parts) {
      entity = entity.parts[n - 1] ?? null;
    } else {
      if (entity) {
        if (!entity.message) return null;
        message = entity.message;
      }
      entity = message.parts ? (message.parts[n - 1] ?? null) : n === 1 ? message : null;
    }
    if (!entity) return null;
  }
  return entity;
}

function needTree(tree: MimeTree | undefined, what: string): MimeTree {
  if (!tree) throw new TypeError(`${what} of a part needs the message's MIME tree (parseMime)`);
  return tree;
}

/**
 * BODY[section]: the bytes as stored (a slice of `message` where they lie together). Sections of
 * the whole message (`[]`, `HEADER`, `TEXT`, `HEADER.FIELDS ...`) need only the bytes; part
 * numbers need the tree. null for a part the message does not have, for HEADER/TEXT of a part
 * that is no message/rfc822, and for MIME without a part number.
 */
export function section(message: Buffer, s: Section, tree?: MimeTree): Buffer | null {
  let target: { header: () => HeaderFields; headerStart: number; bodyStart: number; end: number };
  if (s.part.length === 0) {
    if (!s.specifier) return message;
    if (s.specifier === 'MIME') return null;
    const top = tree?.root ?? headerFields(message);
    const hl = top instanceof HeaderFields ? top.raw.length : top.bodyStart;
    target = { header: () => (top instanceof HeaderFields ? top : top.header), headerStart: 0, bodyStart: hl, end: message.length };
  } else {
    const entity = resolve(needTree(tree, 'BODY[]').root, s.part);
    if (!entity) return null;
    if (!s.specifier) return message.subarray(entity.bodyStart, entity.end);
    if (s.specifier === 'MIME') return message.subarray(entity.headerStart, entity.bodyStart);
    const m = entity.message;
    if (!m) return null;
    target = { header: () => m.header, headerStart: m.headerStart, bodyStart: m.bodyStart, end: m.end };
  }
  switch (s.specifier) {
    case 'HEADER':
      return message.subarray(target.headerStart, target.bodyStart);
    case 'TEXT':
      return message.subarray(target.bodyStart, target.end);
    case 'HEADER.FIELDS':
    case 'HEADER.FIELDS.NOT':
      return target.header().select(s.fields ?? [], s.specifier === 'HEADER.FIELDS.NOT');
  }
}

/** BINARY[part]: the content with its transfer encoding undone; or why it cannot be (RFC 3516's `[UNKNOWN-CTE]`). */
export type BinaryResult = { data: Buffer } | { data: null; reason: 'unknown-cte'; encoding: string } | { data: null; reason: 'no-such-part' };

function decodeTransfer(body: Buffer, encoding: string): BinaryResult {
  switch (encoding) {
    case '7bit':
    case '8bit':
    case 'binary':
      return { data: body };
    case 'base64':
      return { data: Buffer.from(body.toString('latin1'), 'base64') };
    case 'quoted-printable':
      return { data: libqp.decode(body) };
    default:
      return { data: null, reason: 'unknown-cte', encoding };
  }
}

/**
 * BINARY[part] (RFC 3516). `[]`, a multipart and a message part are given as stored (their own
 * encoding is an identity; the parts in them keep their Content-Transfer-Encoding header).
 */
export function binary(message: Buffer, part: readonly number[], tree?: MimeTree): BinaryResult {
  if (part.length === 0) return { data: message };
  const entity = resolve(needTree(tree, 'BINARY[]').root, part);
  if (!entity) return { data: null, reason: 'no-such-part' };
  const body = message.subarray(entity.bodyStart, entity.end);
  return entity.parts ? { data: body } : decodeTransfer(body, entity.encoding);
}

/** BINARY.SIZE[part]: octets of what BINARY[part] gives (decoded only when it has to be). */
export function binarySize(
  message: Buffer,
  part: readonly number[],
  tree?: MimeTree,
): { size: number } | Exclude<BinaryResult, { data: Buffer }> {
  if (part.length === 0) return { size: message.length };
  const entity = resolve(needTree(tree, 'BINARY.SIZE[]').root, part);
  if (!entity) return { data: null, reason: 'no-such-part' };
  if (entity.parts || ['7bit', '8bit', 'binary'].includes(entity.encoding)) return { size: entity.end - entity.bodyStart };
  const r = binary(message, part, tree);
  return r.data ? { size: r.data.length } : r;
}

// ---- text for SEARCH BODY/TEXT ----------------------------------------------------------

function decodeCharset(data: Buffer, name: string | undefined): string {
  const cs = (name ?? '').trim().toLowerCase();
  // Undeclared or us-ascii text with 8-bit bytes is mislabelled: UTF-8 if it is, else Latin-1.
  if (!cs || cs === 'us-ascii' || cs === 'ascii') return data.toString(isUtf8(data) ? 'utf8' : 'latin1');
  try {
    return charset.decode(data, cs);
  } catch {
    return data.toString('utf8');
  }
}

/**
 * The text SEARCH BODY looks in: each text/* part with its transfer encoding and charset
 * undone (other types are not text), and the header of each enclosed message.
 */
export function bodyText(message: Buffer, tree: MimeTree): string {
  const out: string[] = [];
  const walk = (p: MimePart) => {
    if (p.parts) for (const c of p.parts) walk(c);
    else if (p.message) {
      out.push(p.message.header.text());
      walk(p.message);
    } else if (p.type === 'text') {
      const r = decodeTransfer(message.subarray(p.bodyStart, p.end), p.encoding);
      out.push(decodeCharset(r.data ?? message.subarray(p.bodyStart, p.end), p.params.charset));
    }
  };
  walk(tree.root);
  return out.join('\n');
}

// ---- what a FETCH needs -----------------------------------------------------------------

/**
 * What a FETCH's items need of each message, so the caller loads no more than that: `header`
 * (the header block is enough: ENVELOPE, and the header sections of the whole message, which
 * mail clients list folders with), `message` (the bytes), `tree` (the MIME tree: from
 * MimeCache, or parsed from the bytes).
 */
export function fetchNeeds(items: readonly FetchItem[]): { header: boolean; message: boolean; tree: boolean } {
  const needs = { header: false, message: false, tree: false };
  for (const item of items) {
    switch (item.kind) {
      case 'ENVELOPE':
      case 'RFC822.HEADER':
        needs.header = true;
        break;
      case 'BODYSTRUCTURE':
      case 'BODY':
        needs.tree = true;
        break;
      case 'RFC822':
      case 'RFC822.TEXT':
        needs.message = true;
        break;
      case 'BODY[]':
        if (!item.section.part.length && item.section.specifier?.startsWith('HEADER')) {
          needs.header = true;
          break;
        }
        needs.message = true;
        if (item.section.part.length) needs.tree = true;
        break;
      case 'BINARY[]':
      case 'BINARY.SIZE':
        needs.message = true;
        if (item.section.part.length) needs.tree = true;
        break;
    }
  }
  return needs;
}

// ---- a cache of trees -------------------------------------------------------------------

export interface MimeCacheOptions {
  /** Memory the cached trees may hold (their `cost`). Default 32 MiB. */
  maxBytes?: number;
}

/**
 * MIME trees by message id, least recently used dropped first, bounded by their cost: mail
 * clients fetch BODYSTRUCTURE again and again. A message is immutable, so an id's tree never
 * goes stale; `delete` frees it when the message goes. Parses of one id at once are shared.
 */
export class MimeCache {
  readonly #maxBytes: number;
  readonly #trees = new Map<string, MimeTree>();
  readonly #pending = new Map<string, Promise<MimeTree>>();
  #bytes = 0;

  constructor(options: MimeCacheOptions = {}) {
    this.#maxBytes = options.maxBytes ?? 32 * 1024 * 1024;
  }

  /** The tree of message `id`; `message` (the bytes, or how to get them) is read only on a miss. */
  async tree(id: string, message: Buffer | (() => Buffer | Promise<Buffer>)): Promise<MimeTree> {
    const hit = this.get(id);
    if (hit) return hit;
    let pending = this.#pending.get(id);
    if (!pending) {
      pending = (async () => parseMime(typeof message === 'function' ? await message() : message))();
      this.#pending.set(id, pending);
      try {
        this.#put(id, await pending);
      } finally {
        this.#pending.delete(id);
      }
    }
    return pending;
  }

  /** The cached tree, if any (and it becomes the most recently used). */
  get(id: string): MimeTree | undefined {
    const tree = this.#trees.get(id);
    if (tree) {
      this.#trees.delete(id);
      this.#trees.set(id, tree);
    }
    return tree;
  }

  delete(id: string): void {
    const tree = this.#trees.get(id);
    if (!tree) return;
    this.#trees.delete(id);
    this.#bytes -= tree.cost;
  }

  clear(): void {
    this.#trees.clear();
    this.#bytes = 0;
  }

  /** Trees cached, and the memory they hold. */
  get stats(): { trees: number; bytes: number } {
    return { trees: this.#trees.size, bytes: this.#bytes };
  }

  #put(id: string, tree: MimeTree): void {
    if (tree.cost > this.#maxBytes) return;
    this.delete(id);
    this.#trees.set(id, tree);
    this.#bytes += tree.cost;
    for (const [old, t] of this.#trees) {
      if (this.#bytes <= this.#maxBytes) break;
      this.#trees.delete(old);
      this.#bytes -= t.cost;
    }
  }
}
