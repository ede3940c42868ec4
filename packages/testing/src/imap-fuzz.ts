import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './node-process.js';

/**
 * Seeded mutations of valid IMAP commands, for fuzzing: the parser's unit fuzz test and the
 * live one against a node take the same corpus and the same mutator, so a failing input of
 * either is found again from its seed.
 */

/** A valid command of the corpus: its file name and its wire bytes (CRLF and literals as a client sends them). */
export interface FuzzSeed {
  name: string;
  data: Buffer;
}

const CORPUS_DIR = join(repoRoot, 'packages', 'imap', 'fuzz', 'corpus');

/** The commands of packages/imap/fuzz/corpus, by file name. */
export function imapCorpus(): FuzzSeed[] {
  return readdirSync(CORPUS_DIR)
    .filter((name) => name.endsWith('.txt'))
    .sort()
    .map((name) => ({ name, data: readFileSync(join(CORPUS_DIR, name)) }));
}

/** mulberry32: small, seeded, good enough to pick mutations. */
export function seeded(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { next, int, pick: <T>(list: readonly T[]): T => list[int(list.length)] };
}
export type Random = ReturnType<typeof seeded>;

const TOKENS = [
  '(', ')', '{', '}', '"', '\\', ' ', '\r\n', '\n', '\r', '\0', '\xff', '~', '+', '*', '$', '[', ']', '<', '>', '%', ':', ',', '.', '-',
  'NIL', 'UID ', 'OR ', 'NOT ', '&', '&-', '&Jjo', '0', '4294967296', '99999999999999999999', 'BODY[', 'HEADER.FIELDS (', '<0.', '\\Seen',
].map((t) => Buffer.from(t, 'latin1'));

function literalAnnouncement(random: Random): Buffer {
  const size = random.pick([0, 1, 2, 5, 100, 4096, 4097, 70000, 2 ** 31, Number.MAX_SAFE_INTEGER, random.int(64)]);
  const form = random.pick(['{n}', '{n+}', '~{n}', '~{n+}', '{n', 'n}']);
  const body = Buffer.alloc(Math.min(size, 200), random.pick([0x61, 0x00, 0x0a, 0x28, 0x7b]));
  return Buffer.concat([Buffer.from(form.replace('n', String(size)) + '\r\n', 'latin1'), random.next() < 0.5 ? body : Buffer.alloc(0)]);
}

function nesting(random: Random): Buffer {
  const depth = random.pick([31, 32, 33, 64, 129, 1000, 20000]);
  const unit = random.pick(['(', 'NOT ', 'OR ALL ', '((', '(OR ']);
  return Buffer.from(unit.repeat(depth) + (random.next() < 0.5 ? 'ALL' + ')'.repeat(depth) : ''), 'latin1');
}

/**
 * One to four mutations of `seed`: byte flips, insertions of IMAP's special characters,
 * cuts, truncation, splices (of itself and of `corpus`), literal announcements, deep
 * nesting, case flips.
 */
export function mutate(random: Random, seed: Buffer, corpus: readonly FuzzSeed[]): Buffer {
  let data = Buffer.from(seed);
  const at = () => random.int(data.length + 1);
  const rounds = 1 + random.int(4);
  for (let round = 0; round < rounds; round++) {
    switch (random.int(9)) {
      case 0: {
        if (!data.length) break;
        const i = random.int(data.length);
        data[i] = random.next() < 0.5 ? random.int(256) : random.pick(TOKENS)[0];
        break;
      }
      case 1: {
        const i = at();
        data = Buffer.concat([data.subarray(0, i), random.pick(TOKENS), data.subarray(i)]);
        break;
      }
      case 2: {
        const i = at();
        data = Buffer.concat([data.subarray(0, i), data.subarray(Math.min(data.length, i + 1 + random.int(8)))]);
        break;
      }
      case 3:
        data = data.subarray(0, at());
        break;
      case 4: {
        const i = at();
        const j = Math.min(data.length, i + random.int(16));
        const k = at();
        data = Buffer.concat([data.subarray(0, k), data.subarray(i, j), data.subarray(k)]);
        break;
      }
      case 5: {
        const other = random.pick(corpus).data;
        const i = random.int(other.length);
        const k = at();
        data = Buffer.concat([data.subarray(0, k), other.subarray(i, i + random.int(40)), data.subarray(k)]);
        break;
      }
      case 6: {
        const i = at();
        data = Buffer.concat([data.subarray(0, i), literalAnnouncement(random), data.subarray(i)]);
        break;
      }
      case 7: {
        const i = at();
        data = Buffer.concat([data.subarray(0, i), nesting(random), data.subarray(i)]);
        break;
      }
      default: {
        // Flip the case of a run of letters: names and keywords are case-insensitive.
        const i = random.int(Math.max(1, data.length));
        for (let k = i; k < Math.min(data.length, i + 12); k++) if (/[a-z]/i.test(String.fromCharCode(data[k]))) data[k] ^= 0x20;
      }
    }
  }
  return data;
}
