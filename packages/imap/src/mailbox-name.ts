/**
 * Mailbox names on the wire: modified UTF-7 (RFC 3501 §5.1.3) until the client enables
 * UTF8=ACCEPT (or IMAP4rev2), UTF-8 after. INBOX is case-insensitive.
 */
import { MAX_FOLDER_NAME_BYTES } from '@mailgrid/core';
import utf7 from 'utf7';

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** Why a name could not be decoded. */
export class MailboxNameError extends Error {
  override readonly name = 'MailboxNameError';
}

/**
 * A mailbox name as the client wrote it, decoded. With `utf8` the bytes are UTF-8 and `&`
 * is itself; without, modified UTF-7 is decoded, and 8-bit bytes are refused as Dovecot
 * refuses them: the session lists names in modified UTF-7, so a folder made from raw UTF-8
 * would come back under another name, and a syncing client (mbsync 1.4) then makes a
 * second folder of it on its side and can never open the one it made.
 */
export function decodeMailboxName(raw: Buffer, utf8: boolean): string {
  const name = decode(raw, utf8);
  // Longer, it can name no folder (the store would not take it).
  if (Buffer.byteLength(name) > MAX_FOLDER_NAME_BYTES) throw new MailboxNameError(`Mailbox name longer than ${MAX_FOLDER_NAME_BYTES} bytes`);
  return isInbox(name) ? 'INBOX' : name;
}

/** A list pattern or LIST reference: decoded like a name, but INBOX is left as written (the matcher folds its case). */
export function decodeMailboxPattern(raw: Buffer, utf8: boolean): string {
  return decode(raw, utf8);
}

function decode(raw: Buffer, utf8: boolean): string {
  if (utf8) {
    try {
      return utf8Strict.decode(raw);
    } catch {
      throw new MailboxNameError('Mailbox name is not UTF-8');
    }
  }
  if (raw.some((b) => b >= 0x80)) throw new MailboxNameError('Mailbox name is not valid modified UTF-7 (8-bit needs ENABLE UTF8=ACCEPT)');
  const text = raw.toString('latin1');
  return text.includes('&') ? decodeUtf7(text) : text;
}

/** A name as it goes on the wire, unquoted: modified UTF-7 unless `utf8`. */
export function encodeMailboxName(name: string, utf8: boolean): string {
  if (utf8) return name;
  return /[^\x20-\x25\x27-\x7e]/.test(name) ? utf7.imap.encode(name) : name;
}

/**
 * A LIST pattern (RFC 9051 §6.3.9) as a test of names: `*` matches anything, `%` anything
 * but the delimiter. Matched as a set of pattern positions read along the name, in time
 * linear in each: a backtracking regular expression of many wildcards takes exponential
 * time on a long name, and one LIST would stall every session of the process.
 */
export function listMatcher(pattern: string, delimiter = '/'): (name: string) => boolean {
  // A run of wildcards is one: `*` if it has one, else `%`.
  const p: string[] = [];
  for (const c of pattern) {
    const last = p.length - 1;
    if ((c === '*' || c === '%') && (p[last] === '*' || p[last] === '%')) {
      if (c === '*') p[last] = '*';
    } else p.push(c);
  }
  const literals = p.filter((c) => c !== '*' && c !== '%').length;
  // A wildcard may match nothing: where one stands, the position after it is reached too.
  const spread = (at: Uint8Array) => {
    for (let i = 0; i < p.length; i++) if (at[i] && (p[i] === '*' || p[i] === '%')) at[i + 1] = 1;
  };
  return (name) => {
    const chars = [...name];
    if (literals > chars.length) return false;
    let at = new Uint8Array(p.length + 1);
    at[0] = 1;
    spread(at);
    for (const c of chars) {
      const next = new Uint8Array(p.length + 1);
      let any = false;
      for (let i = 0; i < p.length; i++) {
        if (!at[i]) continue;
        if (p[i] === '*' || (p[i] === '%' && c !== delimiter)) next[i] = 1;
        else if (p[i] === c) next[i + 1] = 1;
        else continue;
        any = true;
      }
      if (!any) return false;
      spread(next);
      at = next;
    }
    return at[p.length] === 1;
  };
}

export function isInbox(name: string): boolean {
  return name.length === 5 && name.toUpperCase() === 'INBOX';
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function decodeUtf7(text: string): string {
  const name = utf7.imap.decode(text);
  // The library decodes leniently; only the one canonical spelling of a name is taken, so
  // two spellings can never name two mailboxes that look alike.
  if (LONE_SURROGATE.test(name) || utf7.imap.encode(name) !== text) throw new MailboxNameError('Mailbox name is not valid modified UTF-7');
  return name;
}
