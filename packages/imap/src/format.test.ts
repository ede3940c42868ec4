import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import imapResponse from 'imapflow/lib/handler/imap-parser.js';
import { parseBodystructure, parseEnvelope } from 'imapflow/lib/tools.js';
import { astring, formatBodyStructure, dateTime, formatEnvelope, flagList, list, literal, mailboxName, nstring, quoted, sequenceSet, sequenceSetText } from './format.js';
import { parseSequenceSet, readCommand } from './parser.js';
import { BufferInput, testOptions } from './test-input.js';
import type { BodyStructure, Envelope } from './types.js';

describe('strings', () => {
  const cases: [string, string, boolean, string][] = [
    ['plain', 'abc', false, '"abc"'],
    ['quotes and backslashes escaped', 'a"b\\c', false, '"a\\"b\\\\c"'],
    ['empty', '', false, '""'],
    ['CR or LF: a literal', 'a\r\nb', false, '{4}\r\na\r\nb'],
    ['8-bit without UTF8=ACCEPT: a literal of its UTF-8', 'für', false, '{4}\r\nfür'],
    ['8-bit with UTF8=ACCEPT: quoted', 'für', true, '"für"'],
    ['NUL dropped', 'a\0b', false, '"ab"'],
    ['long: a literal', 'x'.repeat(1001), false, `{1001}\r\n${'x'.repeat(1001)}`],
    ['1000 bytes still quoted', 'x'.repeat(1000), false, `"${'x'.repeat(1000)}"`],
  ];
  for (const [what, text, utf8, expected] of cases) it(`quoted: ${what}`, () => assert.equal(quoted(text, utf8), expected));

  it('astring: an atom when it is one, else quoted; NIL always quoted', () => {
    assert.equal(astring('INBOX'), 'INBOX');
    assert.equal(astring('a]b'), 'a]b');
    assert.equal(astring('Nil'), '"Nil"');
    assert.equal(astring(''), '""');
    assert.equal(astring('a b'), '"a b"');
    for (const special of ['(', ')', '{', '%', '*', '"', '\\']) assert.equal(astring(`a${special}`)[0], '"');
  });

  it('nstring: NIL for null', () => {
    assert.equal(nstring(null), 'NIL');
    assert.equal(nstring(undefined), 'NIL');
    assert.equal(nstring('NIL'), '"NIL"');
  });

  it('literal: {n} and the bytes, ~{n} for binary', () => {
    assert.deepEqual(literal(Buffer.from('hi\r\n')), Buffer.from('{4}\r\nhi\r\n'));
    assert.deepEqual(literal(Buffer.from([0, 255]), true), Buffer.concat([Buffer.from('~{2}\r\n'), Buffer.from([0, 255])]));
  });

  it('lists and flags', () => {
    assert.equal(list([]), '()');
    assert.equal(list(['UIDNEXT', '4']), '(UIDNEXT 4)');
    assert.equal(flagList(['\\Seen', '$Forwarded']), '(\\Seen $Forwarded)');
  });

  it('a quoted string or literal reads back as the same text', async () => {
    for (const text of ['a"b\\c', 'line\r\nbreak', 'für', 'x'.repeat(2000), '']) {
      const { command } = await readCommand(new BufferInput(`a LOGIN ${quoted(text)} ${quoted(text, true)}\r\n`), testOptions());
      assert.deepEqual(command, { name: 'LOGIN', user: text, password: text });
    }
  });
});

describe('mailbox names', () => {
  const cases: [string, boolean, string][] = [
    ['INBOX', false, 'INBOX'],
    ['日本語', false, '&ZeVnLIqe-'],
    ['Entwürfe', false, 'Entw&APw-rfe'],
    ['Tom & Jerry', false, '"Tom &- Jerry"'],
    ['日本語', true, '"日本語"'],
    ['a&b', true, 'a&b'],
    ['Sent Items', false, '"Sent Items"'],
    ['%', false, '"%"'],
  ];
  for (const [name, utf8, wire] of cases) {
    it(`${name}${utf8 ? ' (UTF8=ACCEPT)' : ''} → ${wire}, and back`, async () => {
      assert.equal(mailboxName(name, utf8), wire);
      const { command } = await readCommand(new BufferInput(`a SELECT ${wire}\r\n`), testOptions({ utf8 }));
      assert.deepEqual(command, { name: 'SELECT', mailbox: name, condstore: false });
    });
  }
});

describe('sequence sets', () => {
  const cases: [number[], string][] = [
    [[], ''],
    [[1], '1'],
    [[1, 2, 3, 5], '1:3,5'],
    [[1, 1, 2, 4, 5, 6, 9], '1:2,4:6,9'],
    [[3, 2, 1], '3,2,1'],
    [[4294967294, 4294967295], '4294967294:4294967295'],
  ];
  for (const [numbers, text] of cases) it(`[${numbers.join(',')}] → ${JSON.stringify(text)}`, () => assert.equal(sequenceSet(numbers), text));

  it('writes a parsed set back', () => {
    assert.equal(sequenceSetText({ saved: true }), '$');
    assert.equal(
      sequenceSetText({
        ranges: [
          [1, 3],
          [5, 5],
          [7, Infinity],
        ],
      }),
      '1:3,5,7:*',
    );
  });

  it('round-trips: numbers → sequenceSet → parseSequenceSet → the same numbers', () => {
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    for (let round = 0; round < 200; round++) {
      const numbers = [...new Set(Array.from({ length: 1 + Math.floor(random() * 50) }, () => 1 + Math.floor(random() * 80)))].sort((a, b) => a - b);
      const text = sequenceSet(numbers);
      const parsed = parseSequenceSet(text);
      assert.ok(!parsed.saved);
      const back = parsed.ranges.flatMap(([a, b]) => Array.from({ length: b - a + 1 }, (_, i) => a + i));
      assert.deepEqual(back, numbers, text);
      assert.equal(sequenceSetText(parsed), text);
    }
  });
});

describe('dateTime', () => {
  it('writes INTERNALDATE as RFC 9051 does, day space-padded, in the zone asked for', () => {
    assert.equal(dateTime(new Date('1996-07-17T09:44:25Z'), -420), '"17-Jul-1996 02:44:25 -0700"');
    assert.equal(dateTime(new Date('1994-02-08T05:52:25Z'), -480), '" 7-Feb-1994 21:52:25 -0800"');
    assert.equal(dateTime(new Date('2026-02-01T00:00:00Z')), '" 1-Feb-2026 00:00:00 +0000"');
    assert.equal(dateTime(new Date('2026-02-01T00:00:00Z'), 330), '" 1-Feb-2026 05:30:00 +0530"');
  });

  it('is what APPEND takes back', async () => {
    const date = dateTime(new Date('2026-02-01T12:34:56Z'), 60);
    const { command } = await readCommand(new BufferInput(`a APPEND INBOX ${date} {1}\r\nx\r\n`), testOptions());
    assert.equal(command.name === 'APPEND' && command.messages[0].date, date.slice(1, -1));
  });
});

const terry = { name: 'Terry Gray', adl: null, mailbox: 'gray', host: 'cac.washington.edu' };
/** The message of RFC 9051 §8's example session. */
const rfcEnvelope: Envelope = {
  date: 'Wed, 17 Jul 1996 02:23:25 -0700 (PDT)',
  subject: 'IMAP4rev2 WG mtg summary and minutes',
  from: [terry],
  sender: [terry],
  replyTo: [terry],
  to: [{ name: null, adl: null, mailbox: 'imap', host: 'cac.washington.edu' }],
  cc: [
    { name: null, adl: null, mailbox: 'minutes', host: 'CNRI.Reston.VA.US' },
    { name: 'John Klensin', adl: null, mailbox: 'KLENSIN', host: 'MIT.EDU' },
  ],
  bcc: null,
  inReplyTo: null,
  messageId: '<B27397-0100000@cac.washington.edu>',
};

const part = (over: Partial<BodyStructure>): BodyStructure => ({
  type: 'text',
  subtype: 'plain',
  params: {},
  id: null,
  description: null,
  encoding: '7bit',
  size: 0,
  md5: null,
  disposition: null,
  language: null,
  location: null,
  ...over,
});

/** RFC 3501 §7.4.2's multipart example. */
const rfcMultipart = part({
  type: 'multipart',
  subtype: 'mixed',
  params: { boundary: '----=_Part_1' },
  parts: [
    part({ params: { charset: 'US-ASCII' }, size: 1152, lines: 23 }),
    part({ params: { charset: 'US-ASCII', name: 'cc.diff' }, id: '<960723163407.20117h@cac.washington.edu>', description: 'Compiler diff', encoding: 'base64', size: 4554, lines: 73 }),
  ],
});

describe('envelope', () => {
  it("writes RFC 9051 §8's example exactly", () => {
    assert.equal(
      formatEnvelope(rfcEnvelope),
      '("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev2 WG mtg summary and minutes" ' +
        '(("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) ' +
        '(("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")) ' +
        '((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL ' +
        '"<B27397-0100000@cac.washington.edu>")',
    );
  });

  it('writes a group as its start and end addresses, and an empty list as NIL', () => {
    const env: Envelope = {
      ...rfcEnvelope,
      to: [
        { name: null, adl: null, mailbox: 'undisclosed-recipients', host: null },
        { name: null, adl: null, mailbox: null, host: null },
      ],
      cc: [],
    };
    assert.match(formatEnvelope(env), / \(\(NIL NIL "undisclosed-recipients" NIL\)\(NIL NIL NIL NIL\)\) NIL NIL NIL "</);
  });

  it('is read back by an independent client (imapflow)', async () => {
    const response = await imapResponse(`* 12 FETCH (ENVELOPE ${formatEnvelope(rfcEnvelope)})`);
    const parsed = parseEnvelope((response.attributes?.[1] as unknown[])[1] as Parameters<typeof parseEnvelope>[0]);
    assert.equal(parsed.subject, rfcEnvelope.subject);
    assert.deepEqual(parsed.from, [{ name: 'Terry Gray', address: 'gray@cac.washington.edu' }]);
    assert.deepEqual(parsed.cc, [
      { name: '', address: 'minutes@CNRI.Reston.VA.US' },
      { name: 'John Klensin', address: 'KLENSIN@MIT.EDU' },
    ]);
    assert.equal(parsed.messageId, rfcEnvelope.messageId);
  });
});

describe('bodyStructure', () => {
  it("writes RFC 9051 §8's text/plain BODY exactly", () => {
    assert.equal(formatBodyStructure(part({ params: { charset: 'US-ASCII' }, size: 3028, lines: 92 }), false), '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)');
  });

  it("writes RFC 3501 §7.4.2's multipart BODY exactly", () => {
    assert.equal(
      formatBodyStructure(rfcMultipart, false),
      '(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") ' +
        '"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) "MIXED")',
    );
  });

  it('adds the extension data for BODYSTRUCTURE', () => {
    assert.equal(
      formatBodyStructure(rfcMultipart, true),
      '(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23 NIL NIL NIL NIL)("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") ' +
        '"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "----=_Part_1") NIL NIL NIL)',
    );
  });

  const attachment = part({
    type: 'application',
    subtype: 'pdf',
    params: { name: 'report.pdf' },
    encoding: 'base64',
    size: 1000,
    md5: 'Q2hlY2sgSW50ZWdyaXR5IQ==',
    disposition: { type: 'attachment', params: { filename: 'report.pdf' } },
    language: ['en', 'de'],
    location: 'http://example.test/report.pdf',
  });
  const forwarded = part({
    type: 'message',
    subtype: 'rfc822',
    size: 342,
    lines: 10,
    envelope: rfcEnvelope,
    body: part({ params: { charset: 'utf-8' }, size: 20, lines: 1, language: ['en'] }),
  });

  it('writes a single part with every extension field', () => {
    assert.equal(
      formatBodyStructure(attachment, true),
      '("APPLICATION" "PDF" ("NAME" "report.pdf") NIL NIL "BASE64" 1000 "Q2hlY2sgSW50ZWdyaXR5IQ==" ' + '("ATTACHMENT" ("FILENAME" "report.pdf")) ("en" "de") "http://example.test/report.pdf")',
    );
    assert.equal(formatBodyStructure(attachment, false), '("APPLICATION" "PDF" ("NAME" "report.pdf") NIL NIL "BASE64" 1000)');
  });

  it('writes message/rfc822 with its envelope, body and lines', () => {
    assert.equal(
      formatBodyStructure(forwarded, true),
      `("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 342 ${formatEnvelope(rfcEnvelope)} ("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 20 1 NIL NIL "en" NIL) 10 NIL NIL NIL NIL)`,
    );
  });

  it('writes a multipart without parts as one empty text part', () => {
    assert.equal(formatBodyStructure(part({ type: 'multipart', subtype: 'mixed', parts: [] }), false), '(("TEXT" "PLAIN" NIL NIL NIL "7BIT" 0 0) "MIXED")');
  });

  it('is read back by an independent client (imapflow)', async () => {
    const tree = part({ type: 'multipart', subtype: 'mixed', params: { boundary: 'b1' }, parts: [rfcMultipart, attachment, forwarded] });
    const response = await imapResponse(`* 1 FETCH (BODYSTRUCTURE ${formatBodyStructure(tree, true)})`);
    const parsed = parseBodystructure((response.attributes?.[1] as unknown[])[1] as Parameters<typeof parseBodystructure>[0]);
    assert.equal(parsed.type, 'multipart/mixed');
    const [inner, pdf, message] = parsed.childNodes ?? [];
    assert.equal(inner.type, 'multipart/mixed');
    assert.equal(inner.childNodes?.[1].description, 'Compiler diff');
    assert.equal(inner.childNodes?.[1].part, '1.2');
    assert.equal(pdf.type, 'application/pdf');
    assert.equal(pdf.disposition, 'attachment');
    assert.deepEqual(pdf.dispositionParameters, { filename: 'report.pdf' });
    assert.equal(pdf.md5, 'q2hly2sgsw50zwdyaxr5iq=='); // imapflow lower-cases it
    assert.equal(message.type, 'message/rfc822');
    assert.equal(message.lineCount, 10);
    assert.equal(message.envelope?.subject, rfcEnvelope.subject);
    assert.equal(message.childNodes?.[0].type, 'text/plain');
  });
});
