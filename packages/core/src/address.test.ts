import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseAddress } from './address.js';

describe('parseAddress', () => {
  const cases: [string, string | undefined][] = [
    ['Alice@Example.TEST', 'alice@example.test'],
    ['bob@example.test.', 'bob@example.test'],
    ['"odd name"@example.test', '"odd name"@example.test'],
    ['"Alice"@example.test', 'alice@example.test'],
    ['"al\\ice"@example.test', 'alice@example.test'],
    ['"a..b"@example.test', '"a..b"@example.test'],
    ['jürgen@bücher.test', 'jürgen@xn--bcher-kva.test'],
    ['anna@XN--BCHER-KVA.test.', 'anna@xn--bcher-kva.test'],
    ['anna@xn--bcher-kva.test', 'anna@xn--bcher-kva.test'],
    ['a@bad..test', undefined],
    ['no-at-sign', undefined],
    ['@example.test', undefined],
    ['a@', undefined],
    ['a..b@example.test', undefined],
    ['a b@example.test', undefined],
    ['a@-bad-.test', undefined],
    ['a@exa_mple.test', undefined],
    ['x'.repeat(65) + '@example.test', undefined],
  ];
  for (const [input, key] of cases) {
    it(`${JSON.stringify(input)} → ${key ?? 'invalid'}`, () => assert.equal(parseAddress(input)?.key, key));
  }
});
