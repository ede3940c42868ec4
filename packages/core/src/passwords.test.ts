import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hashPassword, normalizeHash, verifyPassword } from './passwords.js';

// Hashes made by Dovecot's `doveadm pw` (2.3) for the password "secret": what an operator
// brings along from a Dovecot installation, scheme prefix and all.
const DOVECOT = {
  'BLF-CRYPT': '{BLF-CRYPT}$2y$05$ssvANxgzi6kxrnAT.LlkPOGtamuH6VkzZecX6nHX8UZCW04/JIn8u',
  'SHA512-CRYPT': '{SHA512-CRYPT}$6$YubDpBpZBFX7V464$2xc4zmX30wKll8d9HW2YipE3trYNZpFakijU8aLmv5zSpXBXlvb3YXh.kPDqaz7IF0D1IH/bCSUZTG28qgpK20',
  ARGON2ID: '{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$OTmRGnwnZx8GBwu5ovtQNQ$1vJGkHyCFHlFoPmNEhp1d2MLvD8Dxzrk3vw/YIPsYho',
};

describe('password hashes', () => {
  it('makes scrypt hashes that verify, each with its own salt', async () => {
    const a = await hashPassword('secret');
    const b = await hashPassword('secret');
    assert.match(a, /^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
    assert.notEqual(a, b);
    assert.equal(await verifyPassword('secret', a), true);
    assert.equal(await verifyPassword('Secret', a), false);
  });

  for (const [scheme, hash] of Object.entries(DOVECOT)) {
    it(`verifies Dovecot's ${scheme}`, async () => {
      assert.ok(normalizeHash(hash)?.startsWith('$'), 'the {SCHEME} prefix is dropped');
      assert.equal(await verifyPassword('secret', hash), true);
      assert.equal(await verifyPassword('secreT', hash), false);
    });
  }

  it('refuses what it does not know: plain text, MD5-CRYPT, a truncated hash', async () => {
    for (const bad of ['secret', '{PLAIN}secret', '$1$abc$xyz', DOVECOT['SHA512-CRYPT'].slice(0, 40)]) {
      assert.equal(normalizeHash(bad), undefined, bad);
      assert.equal(await verifyPassword('secret', bad), false);
    }
  });
});
