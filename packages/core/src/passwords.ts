import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { Replies } from './errors.js';

/**
 * Password hashes. New ones are scrypt (node:crypto, computed on libuv's thread pool, so a
 * login never blocks the event loop), written in the PHC string format
 * `$scrypt$ln=15,r=8,p=1$<salt>$<hash>`. Hashes an operator brings along from Dovecot are
 * verified as they are: bcrypt (`$2a$`/`$2b$`/`$2y$`, BLF-CRYPT), SHA512-CRYPT (`$6$`) and
 * argon2id, with or without Dovecot's `{SCHEME}` prefix.
 */
const SCRYPT = { ln: 15, r: 8, p: 1 };

/**
 * Slow hashes at once, and how many may wait. scrypt runs on libuv's thread pool (4 threads),
 * which file flushes share: unbounded, a burst of logins (a cold credential cache, a password
 * guesser) would hold back every flush, and with them every 250. Past the queue a login gets
 * a temporary failure at once.
 */
const HASHING = { concurrent: 2, waiting: 100 };
let running = 0;
const waiting: (() => void)[] = [];

async function gated<T>(work: () => Promise<T>): Promise<T> {
  if (running >= HASHING.concurrent) {
    if (waiting.length >= HASHING.waiting) throw Replies.authUnavailable(new Error('too many password checks waiting'));
    await new Promise<void>((resolve) => waiting.push(resolve));
  } else running++;
  try {
    return await work();
  } finally {
    const next = waiting.shift();
    if (next) next();
    else running--;
  }
}
const KEY_BYTES = 32;

const scryptAsync = (password: string, salt: Buffer, keylen: number, options: ScryptOptions) =>
  new Promise<Buffer>((resolve, reject) => scrypt(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key))));

const scryptOptions = (ln: number, r: number, p: number): ScryptOptions => ({ N: 2 ** ln, r, p, maxmem: 256 * 2 ** ln * r + (1 << 20) });

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await gated(() => scryptAsync(password, salt, KEY_BYTES, scryptOptions(SCRYPT.ln, SCRYPT.r, SCRYPT.p)));
  return `$scrypt$ln=${SCRYPT.ln},r=${SCRYPT.r},p=${SCRYPT.p}$${b64(salt)}$${b64(key)}`;
}

/** The hash without Dovecot's `{SCHEME}` prefix, if it is one mailgrid verifies; else undefined. */
export function normalizeHash(hash: string): string | undefined {
  const bare = hash.trim().replace(/^\{[A-Z0-9.-]+\}/i, '');
  if (SCRYPT_HASH.test(bare) || /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(bare) || /^\$6\$(rounds=\d+\$)?[^$]{0,16}\$[./A-Za-z0-9]{86}$/.test(bare) || /^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[^$]+\$[^$]+$/.test(bare))
    return bare;
  return undefined;
}

const SCRYPT_HASH = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

/**
 * Whether `password` matches `hash` (a hash mailgrid does not know never matches). Throws
 * AUTH_UNAVAILABLE when too many checks are waiting already.
 */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const bare = normalizeHash(hash);
  if (!bare) return false;
  return gated(() => check(password, bare));
}

async function check(password: string, bare: string): Promise<boolean> {
  try {
    const s = SCRYPT_HASH.exec(bare);
    if (s) {
      const expected = Buffer.from(s[5], 'base64');
      const key = await scryptAsync(password, Buffer.from(s[4], 'base64'), expected.length, scryptOptions(Number(s[1]), Number(s[2]), Number(s[3])));
      return timingSafeEqual(key, expected);
    }
    // Loaded on first use: only imported hashes need them, and every process imports this module.
    if (bare.startsWith('$2')) return await (await import('hash-wasm')).bcryptVerify({ password, hash: bare });
    if (bare.startsWith('$argon2id$')) return await (await import('hash-wasm')).argon2Verify({ password, hash: bare });
    return (await import('unixcrypt')).verify(password, bare);
  } catch {
    return false;
  }
}

const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');
