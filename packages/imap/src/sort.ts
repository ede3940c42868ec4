/**
 * SORT (RFC 5256, with RFC 5957's DISPLAYFROM and DISPLAYTO). Strings compare under
 * i;unicode-casemap, as Dovecot compares them; all keys equal, the lower message number first.
 */
import { casemap, compareCodePoints } from './collation.js';
import type { MessageHeaders, SortKey } from './types.js';

export interface SortableMessage {
  seq: number;
  /** INTERNALDATE, ms. */
  internalDate: number;
  /** RFC822.SIZE. */
  size: number;
  /** Needed for every key but ARRIVAL and SIZE (sortNeeds). */
  headers?: MessageHeaders;
}

/** Whether the keys read the header. */
export function sortNeeds(keys: readonly SortKey[]): { headers: boolean } {
  return { headers: keys.some((k) => k.key !== 'ARRIVAL' && k.key !== 'SIZE') };
}

/** RFC 5256 §2.2: the Date: header's time, else INTERNALDATE. */
export function sentDate(m: { internalDate: number; headers?: MessageHeaders }): number {
  return m.headers?.sent ?? m.internalDate;
}

/** [IMAP] addr-mailbox: the local part. */
const mailboxOf = (address: string) => {
  const at = address.lastIndexOf('@');
  return at < 0 ? address : address.slice(0, at);
};

function sortValue(m: SortableMessage, key: SortKey['key']): number | string {
  const h = m.headers;
  switch (key) {
    case 'ARRIVAL':
      return m.internalDate;
    case 'DATE':
      return sentDate(m);
    case 'SIZE':
      return m.size;
    case 'SUBJECT':
      return casemap(h?.baseSubject ?? '');
    case 'FROM':
    case 'TO':
    case 'CC': {
      const first = h?.[key === 'FROM' ? 'from' : key === 'TO' ? 'to' : 'cc'][0];
      return casemap(first ? mailboxOf(first.address) : '');
    }
    case 'DISPLAYFROM':
    case 'DISPLAYTO': {
      // RFC 5957: the display name, or the address when it has none.
      const first = h?.[key === 'DISPLAYFROM' ? 'from' : 'to'][0];
      return casemap(first ? first.name || first.address : '');
    }
  }
}

/** The messages in SORT's order (a new array). */
export function sort<T extends SortableMessage>(messages: readonly T[], keys: readonly SortKey[]): T[] {
  const rows = messages.map((m) => ({ m, values: keys.map((k) => sortValue(m, k.key)) }));
  rows.sort((a, b) => {
    for (let i = 0; i < keys.length; i++) {
      const x = a.values[i];
      const y = b.values[i];
      const c = typeof x === 'number' ? x - (y as number) : compareCodePoints(x, y as string);
      if (c !== 0) return keys[i].reverse ? -Math.sign(c) : Math.sign(c);
    }
    return a.m.seq - b.m.seq;
  });
  return rows.map((r) => r.m);
}
