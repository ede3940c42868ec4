import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { baseSubject } from './subject.js';

describe('baseSubject (RFC 5256 §2.1)', () => {
  // [subject, base subject, reply or forward]
  const cases: [string, string, boolean][] = [
    ['hello', 'hello', false],
    ['Re: hello', 'hello', true],
    ['RE:hello', 'hello', true],
    ['re :hello', 'hello', true],
    ['Fwd: hello', 'hello', true],
    ['FW: hello', 'hello', true],
    ['Re[2]: hello', 'hello', true],
    ['Re [2] : hello', 'hello', true],
    ['Re: Re: Fwd: hello', 'hello', true],
    ['[list] Re: hello', 'hello', true],
    ['[list] hello', 'hello', false],
    ['[a] [b] hello', 'hello', false],
    ['Re: [list] Re: hello', 'hello', true],
    ['hello (fwd)', 'hello', true],
    ['hello (FWD) (fwd)   ', 'hello', true],
    ['[fwd: hello]', 'hello', true],
    ['[Fwd: Re: hello (fwd)]', 'hello', true],
    ['Re: [fwd: [list] hello]', 'hello', true],
    ['[blob]', '[blob]', false],
    ['[a] [b]', '[b]', false],
    ['Re:', '', true],
    ['', '', false],
    ['   spaced    out\tsubject  ', 'spaced out subject', false],
    ['Reply to this', 'Reply to this', false],
    ['Fwd hello', 'Fwd hello', false],
    ['Re(2): hello', 'Re(2): hello', false],
    ['Résumé: draft', 'Résumé: draft', false],
    ['Re: Grüße aus Köln', 'Grüße aus Köln', true],
  ];
  for (const [subject, base, reply] of cases) {
    it(`${JSON.stringify(subject)} → ${JSON.stringify(base)}${reply ? ', a reply or forward' : ''}`, () =>
      assert.deepEqual(baseSubject(subject), { base, isReplyOrForward: reply }));
  }
});
