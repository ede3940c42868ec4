import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bodyText, headerFields, parseMime } from './mime.js';
import { matches, searchNeeds, type SearchableMessage, type SearchContext } from './search.js';
import { crlf, mixed } from './test-messages.js';
import type { SearchKey } from './types.js';

const tree = await parseMime(mixed.message);
const text = bodyText(mixed.message, tree);

/** Message 7 of 10 (UID 70 of 100): the real-world mixed message, flagged \Seen and $Work. */
const message = (over: Partial<SearchableMessage> = {}): SearchableMessage => ({
  seq: 7,
  uid: 70,
  flags: ['\\Seen', '$Work'],
  modseq: 500n,
  internalDate: Date.UTC(2023, 2, 14, 23, 30),
  size: 2000,
  emailId: 'M1',
  threadId: 'T1',
  headers: () => headerFields(mixed.message),
  bodyText: () => text,
  ...over,
});
const context: SearchContext = { now: Date.UTC(2023, 2, 20), maxSeq: 10, maxUid: 100, saved: new Set([70, 71]) };

const all = (...keys: SearchKey[]): SearchKey => ({ kind: 'AND', keys });
const header = (name: string, value: string): SearchKey => ({ kind: 'HEADER', name, value });
const set = (...ranges: [number, number][]) => ({ ranges });

describe('matches', () => {
  const cases: [string, SearchKey, boolean, SearchContext?][] = [
    ['ALL', { kind: 'ALL' }, true],
    ['NOT ALL', { kind: 'NOT', key: { kind: 'ALL' } }, false],
    ['AND: all must match', all({ kind: 'ALL' }, { kind: 'FLAG', flag: '\\Deleted', set: true }), false],
    ['OR: one must', { kind: 'OR', a: { kind: 'FLAG', flag: '\\Deleted', set: true }, b: { kind: 'ALL' } }, true],
    ['SEQ 7', { kind: 'SEQ', set: set([7, 7]) }, true],
    ['SEQ 1:5,8:*', { kind: 'SEQ', set: set([1, 5], [8, Infinity]) }, false],
    ['SEQ 9:5 is 5:9', { kind: 'SEQ', set: set([9, 5]) }, true],
    ['SEQ 20:* is 10:20 (* is the largest, 10)', { kind: 'SEQ', set: set([20, Infinity]) }, false],
    ['SEQ * with 7 messages', { kind: 'SEQ', set: set([Infinity, Infinity]) }, true, { ...context, maxSeq: 7 }],
    ['UID 60:75', { kind: 'UID', set: set([60, 75]) }, true],
    ['UID 71:*', { kind: 'UID', set: set([71, Infinity]) }, false],
    ['$ (the saved UIDs)', { kind: 'SEQ', set: { saved: true } }, true],
    ['UID $ with nothing saved', { kind: 'UID', set: { saved: true } }, false, { ...context, saved: undefined }],
    ['SEEN', { kind: 'FLAG', flag: '\\Seen', set: true }, true],
    ['UNSEEN', { kind: 'FLAG', flag: '\\Seen', set: false }, false],
    ['flags compare without case: \\SEEN', { kind: 'FLAG', flag: '\\SEEN', set: true }, true],
    ['KEYWORD $work', { kind: 'FLAG', flag: '$work', set: true }, true],
    ['UNKEYWORD Junk', { kind: 'FLAG', flag: 'Junk', set: false }, true],
    ['ANSWERED', { kind: 'FLAG', flag: '\\Answered', set: true }, false],
    ['RECENT is never set', { kind: 'FLAG', flag: '\\Recent', set: true }, false],
    // INTERNALDATE is 14 Mar 23:30 UTC, which is 15 Mar in Berlin.
    ['ON 14-Mar-2023 (UTC)', { kind: 'DATE', field: 'internal', op: 'on', date: '14-Mar-2023' }, true],
    ['ON 15-Mar-2023 in Europe/Berlin', { kind: 'DATE', field: 'internal', op: 'on', date: '15-Mar-2023' }, true, { ...context, timeZone: 'Europe/Berlin' }],
    ['BEFORE 14-Mar-2023', { kind: 'DATE', field: 'internal', op: 'before', date: '14-Mar-2023' }, false],
    ['BEFORE 15-Mar-2023', { kind: 'DATE', field: 'internal', op: 'before', date: '15-Mar-2023' }, true],
    ['SINCE 14-Mar-2023', { kind: 'DATE', field: 'internal', op: 'since', date: '14-Mar-2023' }, true],
    ['SINCE 1-Apr-2023', { kind: 'DATE', field: 'internal', op: 'since', date: '1-Apr-2023' }, false],
    ['SENTON 14-Mar-2023', { kind: 'DATE', field: 'sent', op: 'on', date: '14-Mar-2023' }, true],
    ['SENTBEFORE 14-Mar-2023', { kind: 'DATE', field: 'sent', op: 'before', date: '14-Mar-2023' }, false],
    ['SENTSINCE 15-Mar-2023', { kind: 'DATE', field: 'sent', op: 'since', date: '15-Mar-2023' }, false],
    ['OLDER 3 days (it is 5 days old)', { kind: 'WITHIN', op: 'older', seconds: 3 * 86400 }, true],
    ['YOUNGER 3 days', { kind: 'WITHIN', op: 'younger', seconds: 3 * 86400 }, false],
    ['YOUNGER 7 days', { kind: 'WITHIN', op: 'younger', seconds: 7 * 86400 }, true],
    ['LARGER 1999', { kind: 'SIZE', op: 'larger', size: 1999 }, true],
    ['LARGER 2000', { kind: 'SIZE', op: 'larger', size: 2000 }, false],
    ['SMALLER 2001', { kind: 'SIZE', op: 'smaller', size: 2001 }, true],
    ['FROM "müller": the decoded display name', header('FROM', 'MÜLLER'), true],
    ['FROM "anna@example"', header('FROM', 'anna@example'), true],
    ['TO "carol"', header('TO', 'carol'), true],
    ['CC "dave": a group member', header('CC', 'dave'), true],
    ['BCC "anna": no Bcc', header('BCC', 'anna'), false],
    ['SUBJECT "quartalsBERICHT": decoded, any case', header('SUBJECT', 'quartalsBERICHT'), true],
    ['SUBJECT "Entwurf –" (a non-ASCII dash)', header('SUBJECT', 'Entwurf –'), false],
    ['SUBJECT "– Entwurf"', header('SUBJECT', '– Entwurf'), true],
    ['HEADER Message-ID "": has the field', header('MESSAGE-ID', ''), true],
    ['HEADER X-Missing "": has no such field', header('X-MISSING', ''), false],
    ['HEADER References "20230312": any of its values', header('REFERENCES', '20230312'), true],
    ['HEADER Received "ESMTPS": folded', header('RECEIVED', 'with ESMTPS id'), true],
    ['BODY "GRÜSSE": decoded quoted-printable, ß is SS under the casemap', { kind: 'BODY', value: 'GRÜSSE' }, true],
    ['BODY "&uuml;r das": the HTML part, decoded base64', { kind: 'BODY', value: '&uuml;r das' }, true],
    ['BODY "Quartalsbericht": only in the header', { kind: 'BODY', value: 'Quartalsbericht' }, false],
    ['BODY "%PDF": attachments are not text', { kind: 'BODY', value: '%PDF' }, false],
    ['TEXT "Quartalsbericht": header or body', { kind: 'TEXT', value: 'quartalsbericht' }, true],
    ['TEXT "anbei"', { kind: 'TEXT', value: 'anbei' }, true],
    ['TEXT "nowhere"', { kind: 'TEXT', value: 'nowhere' }, false],
    ['MODSEQ 500', { kind: 'MODSEQ', modseq: 500n }, true],
    ['MODSEQ 501', { kind: 'MODSEQ', modseq: 501n }, false],
    ['EMAILID M1', { kind: 'EMAILID', id: 'M1' }, true],
    ['THREADID T2', { kind: 'THREADID', id: 'T2' }, false],
  ];
  for (const [name, key, expected, ctx] of cases) {
    it(name, () => assert.equal(matches(key, message(), ctx ?? context), expected));
  }

  it('SENTON is the date as written in the Date: header\'s own zone', () => {
    const late = () => headerFields(Buffer.from(crlf('Date: Tue, 14 Mar 2023 23:30:00 -0500\n\n')));
    assert.equal(matches({ kind: 'DATE', field: 'sent', op: 'on', date: '14-Mar-2023' }, message({ headers: late }), context), true);
    assert.equal(matches({ kind: 'DATE', field: 'sent', op: 'on', date: '15-Mar-2023' }, message({ headers: late }), context), false);
  });

  it('no Date: header: SENT* keys match nothing', () => {
    const none = () => headerFields(Buffer.from('Subject: x\r\n\r\n'));
    for (const op of ['before', 'on', 'since'] as const) {
      assert.equal(matches({ kind: 'DATE', field: 'sent', op, date: '1-Jan-2000' }, message({ headers: none }), context), false);
    }
  });

  it('reads the header and body only when a key needs them, and once', () => {
    let headerReads = 0;
    let bodyReads = 0;
    const counted = message({
      headers: () => (headerReads++, headerFields(mixed.message)),
      bodyText: () => (bodyReads++, text),
    });
    // The flag fails first, so neither is read, whatever the order of the keys.
    assert.equal(matches(all({ kind: 'BODY', value: 'x' }, header('SUBJECT', 'x'), { kind: 'FLAG', flag: '\\Deleted', set: true }), counted, context), false);
    assert.deepEqual([headerReads, bodyReads], [0, 0]);
    assert.equal(matches(all(header('SUBJECT', 'bericht'), header('FROM', 'anna'), { kind: 'TEXT', value: 'Grüße' }), counted, context), true);
    assert.deepEqual([headerReads, bodyReads], [1, 1]);
  });

  it('a key that needs what the message was not given throws', () => {
    assert.throws(() => matches({ kind: 'BODY', value: 'x' }, message({ bodyText: undefined }), context), TypeError);
  });
});

describe('searchNeeds', () => {
  const cases: [string, SearchKey, { headers: boolean; body: boolean }][] = [
    ['flags and dates of arrival', all({ kind: 'FLAG', flag: '\\Seen', set: true }, { kind: 'DATE', field: 'internal', op: 'on', date: '1-Jan-2023' }), { headers: false, body: false }],
    ['SENTON', { kind: 'DATE', field: 'sent', op: 'on', date: '1-Jan-2023' }, { headers: true, body: false }],
    ['FROM', header('FROM', 'x'), { headers: true, body: false }],
    ['BODY under NOT', { kind: 'NOT', key: { kind: 'BODY', value: 'x' } }, { headers: false, body: true }],
    ['TEXT', { kind: 'TEXT', value: 'x' }, { headers: true, body: true }],
    ['OR of both kinds', { kind: 'OR', a: header('TO', 'x'), b: { kind: 'BODY', value: 'y' } }, { headers: true, body: true }],
  ];
  for (const [name, key, expected] of cases) it(name, () => assert.deepEqual(searchNeeds(key), expected));
});
