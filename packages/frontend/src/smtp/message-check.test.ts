import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findBadByte } from '@mailgrid/core';
import { MessageCollector } from './message-check.js';

describe('findBadByte', () => {
  const cases: [string, string, number][] = [
    ['clean CRLF lines', 'a\r\nb\r\n', -1],
    ['bare LF', 'a\nb\r\n', 1],
    ['bare CR', 'a\rb\r\n', 1],
    ['NUL', 'a\r\nb\0\r\n', 4],
    ['LF first in chunk after CR', '\nb\r\n', -1],
    ['smuggling sequence', 'x\r\n\n.\r\nMAIL FROM:<a@b>\r\n', 3],
  ];
  for (const [name, text, want] of cases) {
    it(name, () => {
      const prev = name.includes('after CR') ? 0x0d : 0x0a;
      assert.equal(findBadByte(Buffer.from(text, 'latin1'), prev), want);
    });
  }

  it('catches a bare CR split across chunks', () => {
    const c = new MessageCollector(1000);
    c.add(Buffer.from('abc\r'));
    c.add(Buffer.from('def\r\n'));
    assert.equal(c.badAt, 4);
    assert.equal(c.chunks.length, 1, 'nothing after the bad byte is kept');
  });

  it('keeps a clean message whole', () => {
    const c = new MessageCollector(1000);
    c.add(Buffer.from('Subject: x\r'));
    c.add(Buffer.from('\n\r\nbody\r\n'));
    assert.equal(c.badAt, -1);
    assert.equal(Buffer.concat(c.chunks).toString(), 'Subject: x\r\n\r\nbody\r\n');
  });
});
