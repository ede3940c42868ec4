import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dotStuff, top } from './session.js';

describe('POP3 message framing', () => {
  it('doubles a leading dot on every line, the first included, and ends the message with CRLF', () => {
    assert.equal(dotStuff(Buffer.from('.a\r\nb\r\n..c\r\n.')).toString(), '..a\r\nb\r\n...c\r\n..\r\n');
    assert.equal(dotStuff(Buffer.from('x\r\n')).toString(), 'x\r\n');
  });

  it('TOP gives the header, the blank line and n body lines', () => {
    const m = Buffer.from('A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n');
    assert.equal(top(m, 0).toString(), 'A: 1\r\nB: 2\r\n\r\n');
    assert.equal(top(m, 2).toString(), 'A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n');
    assert.equal(top(m, 9).toString(), m.toString());
  });
});
