/**
 * RFC 5256 §2.1: the base subject SORT and THREAD compare, and whether extracting it found the
 * subject to be a reply or forward (a subj-refwd, a "(fwd)" trailer or a "[fwd: ...]" wrapper
 * was removed; a [blob] alone does not count).
 */

export interface BaseSubject {
  base: string;
  isReplyOrForward: boolean;
}

const isWsp = (c: string | undefined) => c === ' ' || c === '\t';

/** Length of a subj-blob (`"[" *BLOBCHAR "]" *WSP`) at `at`, or 0. */
function blobAt(s: string, at: number): number {
  if (s[at] !== '[') return 0;
  let i = at + 1;
  while (i < s.length && s[i] !== '[' && s[i] !== ']') i++;
  if (s[i] !== ']') return 0;
  i++;
  while (isWsp(s[i])) i++;
  return i - at;
}

/** Length of a subj-refwd (`("re" / ("fw" ["d"])) *WSP [subj-blob] ":"`) at `at`, or 0. */
function refwdAt(s: string, at: number): number {
  const head = s.slice(at, at + 3).toLowerCase();
  let i = at;
  if (head.startsWith('re')) i += 2;
  else if (head === 'fwd') i += 3;
  else if (head.startsWith('fw')) i += 2;
  else return 0;
  while (isWsp(s[i])) i++;
  i += blobAt(s, i);
  return s[i] === ':' ? i + 1 - at : 0;
}

/** Length of a subj-leader (`(*subj-blob subj-refwd) / WSP`) at the start, and whether it held a subj-refwd. */
function leader(s: string): { length: number; refwd: boolean } {
  if (isWsp(s[0])) return { length: 1, refwd: false };
  let i = 0;
  for (let n = blobAt(s, i); n > 0; n = blobAt(s, i)) i += n;
  const r = refwdAt(s, i);
  return r > 0 ? { length: i + r, refwd: true } : { length: 0, refwd: false };
}

export function baseSubject(subject: string): BaseSubject {
  // (1) the caller decoded the encoded-words; tabs and runs of spaces become one space.
  let s = subject.replace(/[\t\r\n ]+/g, ' ');
  let replyOrForward = false;
  for (;;) {
    // (2) trailing "(fwd)" and WSP.
    for (;;) {
      if (isWsp(s[s.length - 1])) s = s.slice(0, -1);
      else if (s.slice(-5).toLowerCase() === '(fwd)') {
        s = s.slice(0, -5);
        replyOrForward = true;
      } else break;
    }
    // (3), (4) and (5): leaders, then a leading blob if something is left after it.
    for (;;) {
      const lead = leader(s);
      if (lead.length > 0) {
        s = s.slice(lead.length);
        replyOrForward ||= lead.refwd;
        continue;
      }
      const blob = blobAt(s, 0);
      if (blob > 0 && blob < s.length) {
        s = s.slice(blob);
        continue;
      }
      break;
    }
    // (6) a "[fwd: ...]" wrapper, then again from (2).
    if (s.length >= 6 && s.slice(0, 5).toLowerCase() === '[fwd:' && s.endsWith(']')) {
      s = s.slice(5, -1);
      replyOrForward = true;
      continue;
    }
    return { base: s, isReplyOrForward: replyOrForward };
  }
}
