import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { headers } from './mime.js';
import { sort, sortNeeds, type SortableMessage } from './sort.js';
import type { SortKey } from './types.js';

const day = (n: number) => Date.UTC(2023, 0, n);
const date = (n: number) => new Date(day(n)).toUTCString().replace('GMT', '+0000');

/** A message from header lines; internal date and size given apart. */
const msg = (seq: number, fields: Record<string, string>, internal = day(1), size = 100): SortableMessage => ({
  seq,
  internalDate: internal,
  size,
  headers: headers(Buffer.from(Object.entries(fields).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n')),
});
const order = (messages: SortableMessage[], ...keys: [SortKey['key'], boolean?][]) =>
  sort(messages, keys.map(([key, reverse]) => ({ key, reverse: reverse ?? false }))).map((m) => m.seq);

describe('sort (RFC 5256, RFC 5957)', () => {
  it("RFC 5256's example: (SUBJECT REVERSE DATE) gives 5 3 4 1 2", () => {
    const mailbox = [
      msg(1, { Subject: 'Re: beta', Date: date(10) }),
      msg(2, { Subject: 'beta', Date: date(5) }),
      msg(3, { Subject: 'alpha', Date: date(20) }),
      msg(4, { Subject: 'Fwd: ALPHA', Date: date(15) }),
      msg(5, { Subject: '[list] alpha', Date: date(30) }),
    ];
    assert.deepEqual(order(mailbox, ['SUBJECT'], ['DATE', true]), [5, 3, 4, 1, 2]);
  });

  it('ARRIVAL: internal date; ties by message number', () => {
    assert.deepEqual(order([msg(1, {}, day(3)), msg(2, {}, day(1)), msg(3, {}, day(3)), msg(4, {}, day(2))], ['ARRIVAL']), [2, 4, 1, 3]);
  });

  it('DATE: the Date: header in UTC, else the internal date', () => {
    const mailbox = [
      msg(1, { Date: 'Tue, 3 Jan 2023 00:30:00 +0100' }), // 2 Jan 23:30 UTC
      msg(2, { Date: 'not a date' }, day(2) + 1), // falls back to 2 Jan 00:00:00.001
      msg(3, { Date: 'Mon, 2 Jan 2023 00:00:00 +0000' }),
      msg(4, {}, day(1)),
    ];
    assert.deepEqual(order(mailbox, ['DATE']), [4, 3, 2, 1]);
    assert.deepEqual(order(mailbox, ['DATE', true]), [1, 2, 3, 4]);
  });

  it('SIZE, REVERSE SIZE; REVERSE leaves the message-number tie-break ascending', () => {
    const mailbox = [msg(1, {}, 0, 300), msg(2, {}, 0, 100), msg(3, {}, 0, 300), msg(4, {}, 0, 200)];
    assert.deepEqual(order(mailbox, ['SIZE']), [2, 4, 1, 3]);
    assert.deepEqual(order(mailbox, ['SIZE', true]), [1, 3, 4, 2]);
  });

  it('FROM, TO, CC: the first address\'s local part, case-insensitive; none sorts first', () => {
    const mailbox = [
      msg(1, { From: 'Zed <anna@z.example>', To: 'b@x, a@x', Cc: 'q@x' }),
      msg(2, { From: 'Anna <zoe@a.example>', To: 'A@x', Cc: 'group: p@x;' }),
      msg(3, { From: 'bob@example.test' }),
      msg(4, {}),
    ];
    assert.deepEqual(order(mailbox, ['FROM']), [4, 1, 3, 2]);
    assert.deepEqual(order(mailbox, ['TO']), [3, 4, 2, 1]);
    assert.deepEqual(order(mailbox, ['CC']), [3, 4, 2, 1]);
  });

  it('DISPLAYFROM, DISPLAYTO: the decoded display name, else the address', () => {
    const mailbox = [
      msg(1, { From: 'Zed <anna@z.example>', To: '=?UTF-8?Q?=C3=84rger?= <x@y>' }),
      msg(2, { From: '=?UTF-8?Q?=C3=89mile?= <zoe@a.example>', To: 'yak@y' }),
      msg(3, { From: 'bob@example.test', To: 'Bea <z@y>' }),
    ];
    // É decomposes to E + accent: it sorts with E (i;unicode-casemap).
    assert.deepEqual(order(mailbox, ['DISPLAYFROM']), [3, 2, 1]);
    assert.deepEqual(order(mailbox, ['DISPLAYTO']), [1, 3, 2]);
  });

  it('SUBJECT: the base subject, case-insensitive; then the next key', () => {
    const mailbox = [
      msg(1, { Subject: 'Re: [list] Budget', Date: date(4) }),
      msg(2, { Subject: 'agenda', Date: date(3) }),
      msg(3, { Subject: 'budget (fwd)', Date: date(2) }),
      msg(4, { Subject: 'AGENDA', Date: date(1) }),
    ];
    assert.deepEqual(order(mailbox, ['SUBJECT']), [2, 4, 1, 3]);
    assert.deepEqual(order(mailbox, ['SUBJECT'], ['DATE']), [4, 2, 3, 1]);
  });

  it('no keys: message-number order', () => assert.deepEqual(order([msg(3, {}), msg(1, {}), msg(2, {})]), [1, 2, 3]));

  it('sortNeeds: only ARRIVAL and SIZE go without the header', () => {
    assert.deepEqual(sortNeeds([{ key: 'ARRIVAL', reverse: false }, { key: 'SIZE', reverse: true }]), { headers: false });
    assert.deepEqual(sortNeeds([{ key: 'ARRIVAL', reverse: false }, { key: 'DISPLAYTO', reverse: false }]), { headers: true });
    assert.deepEqual(order([msg(2, {}, day(2)), { seq: 1, internalDate: day(1), size: 1 }], ['ARRIVAL']), [1, 2]);
  });
});
