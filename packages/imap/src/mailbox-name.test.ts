import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { listMatcher } from './mailbox-name.js';

describe('listMatcher', () => {
  const names = ['INBOX', 'Archive', 'Archive/2024', 'Archive/2024/Q1', 'Arc', 'a%b', 'Entwürfe ☕'];
  const listed = (pattern: string) => names.filter(listMatcher(pattern));

  for (const [pattern, want] of [
    ['*', names],
    ['%', ['INBOX', 'Archive', 'Arc', 'a%b', 'Entwürfe ☕']],
    ['Archive/%', ['Archive/2024']],
    ['Archive/*', ['Archive/2024', 'Archive/2024/Q1']],
    ['Arc*', ['Archive', 'Archive/2024', 'Archive/2024/Q1', 'Arc']],
    ['Arc%', ['Archive', 'Arc']],
    ['%/%/%', ['Archive/2024/Q1']],
    ['*4', ['Archive/2024']],
    ['A*%*e', ['Archive']],
    ['Entw%rfe ?', []],
    ['Entw%rfe ☕', ['Entwürfe ☕']],
    ['Archive', ['Archive']],
    ['', []],
  ] as const) {
    it(`${JSON.stringify(pattern)} lists ${JSON.stringify(want)}`, () => assert.deepEqual(listed(pattern), want));
  }

  it('takes time linear in the pattern and the name: many wildcards against a long name that almost matches', () => {
    const name = 'a'.repeat(1000);
    assert.equal(listMatcher(`${'*a'.repeat(500)}*b`)(name), false);
    assert.equal(listMatcher(`${'%a'.repeat(500)}%`)(name), true);
    assert.equal(listMatcher('a'.repeat(1001))(name), false);
  });
});
