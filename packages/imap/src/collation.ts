/**
 * i;unicode-casemap (RFC 5051), the comparator SEARCH, SORT and THREAD use for strings, as
 * Dovecot does: each string mapped once, then compared by code point (what comparing the
 * UTF-8 octets gives).
 */

/** The casemapped form. JS has no titlecase mapping, so upper case stands in for it (they differ only for a few digraphs). */
export function casemap(s: string): string {
  // ASCII needs no decomposition; most headers are ASCII.
  return /^[\x00-\x7f]*$/.test(s) ? s.toUpperCase() : s.toUpperCase().normalize('NFKD');
}

/** Code point order: UTF-16 order puts U+E000..U+FFFF after the surrogates, UTF-8 before. */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/** Whether `needle` occurs in `haystack` under the casemap (SEARCH's substring match). */
export function containsFolded(haystack: string, needle: string): boolean {
  return casemap(haystack).includes(casemap(needle));
}
