import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import libqp from 'libqp';
import { simpleParser } from 'mailparser';
import { binary, binarySize, bodyStructure, bodyText, envelope, fetchNeeds, headerFields, headers, MimeCache, parseMime, section, type MimeTree } from './mime.js';
import { b64, broken, boundaryNeverSeen, crlf, digest, emptyBody, forwarded, headerOnly, mixed, noBoundary, plain } from './test-messages.js';
import type { BodyStructure, Envelope, FetchItem, Section } from './types.js';

// The IMAP text of ENVELOPE and BODYSTRUCTURE, as a server writes it: expected values below are
// written the way RFC 9051 and Dovecot show them.
const q = (s: string | null | undefined) => (s == null ? 'NIL' : `"${s.replace(/[\\"]/g, '\\$&')}"`);
const plist = (p: Record<string, string> | undefined) => {
  const e = Object.entries(p ?? {});
  return e.length ? `(${e.map(([k, v]) => `${q(k)} ${q(v)}`).join(' ')})` : 'NIL';
};
const alist = (l: Envelope['from']) => (l ? `(${l.map((a) => `(${q(a.name)} ${q(a.adl)} ${q(a.mailbox)} ${q(a.host)})`).join('')})` : 'NIL');
const imapEnvelope = (e: Envelope) =>
  [q(e.date), q(e.subject), alist(e.from), alist(e.sender), alist(e.replyTo), alist(e.to), alist(e.cc), alist(e.bcc), q(e.inReplyTo), q(e.messageId)].join(' ');
/** BODYSTRUCTURE, or BODY without the extension data. */
function imap(b: BodyStructure, extended = true): string {
  const dsp = b.disposition ? `(${q(b.disposition.type)} ${plist(b.disposition.params)})` : 'NIL';
  const ext = ` ${dsp} ${b.language ? `(${b.language.map(q).join(' ')})` : 'NIL'} ${q(b.location)}`;
  if (b.parts) return `${b.parts.map((p) => `(${imap(p, extended)})`).join('')} ${q(b.subtype)}${extended ? ` ${plist(b.params)}${ext}` : ''}`;
  let s = `${q(b.type)} ${q(b.subtype)} ${plist(b.params)} ${q(b.id)} ${q(b.description)} ${q(b.encoding)} ${b.size}`;
  if (b.envelope && b.body) s += ` (${imapEnvelope(b.envelope)}) (${imap(b.body, extended)}) ${b.lines}`;
  else if (b.lines !== undefined) s += ` ${b.lines}`;
  return extended ? `${s} ${q(b.md5)}${ext}` : s;
}

const lines = (s: string) => s.split('\n').length - 1;
/** A part's body as it is between its header and the CRLF of the boundary after it. */
const bodyOf = (s: string) => (s.endsWith('\r\n') ? s.slice(0, -2) : s);
const str = (b: Buffer | null) => (b === null ? null : b.toString('utf8'));

describe('envelope', () => {
  const cases: [string, Buffer, string][] = [
    [
      'real-world header: encoded name, quoted name with a comma, a group',
      mixed.message,
      `"Tue, 14 Mar 2023 10:15:00 +0100" "Re: Quartalsbericht – Entwurf" (("Anna Müller" NIL "anna" "example.test")) (("Anna Müller" NIL "anna" "example.test")) (("Anna Müller" NIL "anna" "example.test")) (("Bob" NIL "bob" "example.test")("Carol, C." NIL "carol" "example.test")) ((NIL NIL "team" NIL)(NIL NIL "dave" "example.test")(NIL NIL "erin" "example.test")(NIL NIL NIL NIL)) NIL "<20230313090000.99@example.test>" "<20230314101500.1234@example.test>"`,
    ],
    [
      'a name in a comment; empty Sender and Reply-To fall back to From',
      Buffer.from(crlf('From: user@domain.example (Real Name)\nSender: \nReply-To:\nSubject: x\n\nbody\n')),
      `NIL "x" (("Real Name" NIL "user" "domain.example")) (("Real Name" NIL "user" "domain.example")) (("Real Name" NIL "user" "domain.example")) NIL NIL NIL NIL NIL`,
    ],
    [
      'groups, empty and not',
      Buffer.from(crlf('To: group: g1@d1.example, g2@d2.example;, group2: g3@d3.example;\nCc: empty:;\n\n')),
      `NIL NIL NIL NIL NIL ((NIL NIL "group" NIL)(NIL NIL "g1" "d1.example")(NIL NIL "g2" "d2.example")(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL "g3" "d3.example")(NIL NIL NIL NIL)) ((NIL NIL "empty" NIL)(NIL NIL NIL NIL)) NIL NIL NIL`,
    ],
    [
      'missing and broken headers: an empty subject is "", a bare word a mailbox without domain, a source route dropped',
      broken,
      `NIL "" NIL NIL NIL ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) ((NIL NIL "root" "MISSING_DOMAIN")("Just A Name" NIL "MISSING_MAILBOX" "MISSING_DOMAIN")(NIL NIL "x" "y.example")) NIL NIL NIL`,
    ],
    [
      'a message that is only a header',
      headerOnly,
      `NIL "nothing else" ((NIL NIL "a" "example.test")) ((NIL NIL "a" "example.test")) ((NIL NIL "a" "example.test")) NIL NIL NIL NIL NIL`,
    ],
    [
      'display names in several charsets, and raw UTF-8 (RFC 6532)',
      Buffer.from(
        crlf(
          'From: =?ISO-8859-1?Q?Andr=E9?= <andre@example.test>\nTo: =?KOI8-R?B?8NLJ18XU?= <ivan@example.test>, =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?= <test@example.jp>\nCc: Jürgen <j@bücher.example>\n\n',
        ),
      ),
      `NIL NIL (("André" NIL "andre" "example.test")) (("André" NIL "andre" "example.test")) (("André" NIL "andre" "example.test")) (("Привет" NIL "ivan" "example.test")("テスト" NIL "test" "example.jp")) (("Jürgen" NIL "j" "bücher.example")) NIL NIL NIL`,
    ],
  ];
  for (const [name, message, expected] of cases) {
    it(name, () => assert.equal(imapEnvelope(envelope(message)), expected));
  }

  it('reads only the header block', () => {
    const h = headerFields(plain.message);
    assert.equal(h.raw.toString(), plain.message.toString().slice(0, plain.message.indexOf('\r\n\r\n') + 4));
    assert.deepEqual(envelope(h), envelope(plain.message));
  });
});

describe('headers: what search, sort and thread read', () => {
  const subjects: [string, string | Buffer, string][] = [
    ['UTF-8, base64', `=?UTF-8?B?${Buffer.from('Grüße aus Köln').toString('base64')}?=`, 'Grüße aus Köln'],
    ['ISO-8859-1, Q', '=?ISO-8859-1?Q?Caf=E9_cr=E8me?=', 'Café crème'],
    ['KOI8-R', '=?KOI8-R?B?8NLJ18XU?=', 'Привет'],
    ['ISO-2022-JP', '=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=', 'テスト'],
    ['windows-1252', '=?windows-1252?Q?=93quoted=94?=', '“quoted”'],
    ['adjacent words join without their space', '=?UTF-8?Q?a?= =?UTF-8?Q?b?=', 'ab'],
    ['words among text', 'Re: =?utf-8?q?caf=C3=A9?= meeting', 'Re: café meeting'],
    ['raw UTF-8', Buffer.from('Grüße'), 'Grüße'],
    ['raw Latin-1 bytes', Buffer.from([0x63, 0x61, 0x66, 0xe9]), 'café'],
    ['folded', 'a long\r\n subject', 'a long subject'],
  ];
  for (const [name, subject, decoded] of subjects) {
    it(`subject: ${name}`, () => {
      const message = Buffer.concat([Buffer.from('Subject: '), Buffer.from(subject), Buffer.from('\r\n\r\n')]);
      assert.equal(headers(message).subject, decoded);
      assert.equal(envelope(message).subject, decoded);
    });
  }

  it('a real-world header', () => {
    assert.deepEqual(headers(mixed.message), {
      subject: 'Re: Quartalsbericht – Entwurf',
      baseSubject: 'Quartalsbericht – Entwurf',
      isReplyOrForward: true,
      from: [{ name: 'Anna Müller', address: 'anna@example.test' }],
      to: [
        { name: 'Bob', address: 'bob@example.test' },
        { name: 'Carol, C.', address: 'carol@example.test' },
      ],
      cc: [
        { name: '', address: 'dave@example.test' },
        { name: '', address: 'erin@example.test' },
      ],
      references: ['<20230312080000.1@example.test>', '<20230313090000.99@example.test>'],
      sent: Date.UTC(2023, 2, 14, 9, 15),
      sentZone: 60,
      messageId: '<20230314101500.1234@example.test>',
      inReplyTo: '<20230313090000.99@example.test>',
    });
  });

  const dates: [string, number | undefined, number | undefined][] = [
    ['Tue, 1 Jul 2003 10:52:37 +0200', Date.UTC(2003, 6, 1, 8, 52, 37), 120],
    ['Tue, 1 Jul 2003 10:52:37 -0430 (odd)', Date.UTC(2003, 6, 1, 15, 22, 37), -270],
    ['1 Jul 2003 10:52 EST', Date.UTC(2003, 6, 1, 15, 52), -300],
    ['Thu, 15 Feb 2007 01:02:03 GMT', Date.UTC(2007, 1, 15, 1, 2, 3), 0],
    ['not a date', undefined, undefined],
  ];
  for (const [date, sent, zone] of dates) {
    it(`Date: ${date}`, () => {
      const h = headers(Buffer.from(`Date: ${date}\r\n\r\n`));
      assert.equal(h.sent, sent);
      assert.equal(h.sentZone, zone);
    });
  }

  it('message ids: In-Reply-To with text around it, References folded, a Message-ID without brackets is none', () => {
    const h = headers(
      Buffer.from(crlf('Message-ID: no-brackets@x\nIn-Reply-To: <a@x> (Joe\'s message of Monday)\nReferences: <r1@x>\n\t<r2@x> <r3@x>\n\n')),
    );
    assert.equal(h.messageId, undefined);
    assert.equal(h.inReplyTo, '<a@x>');
    assert.deepEqual(h.references, ['<r1@x>', '<r2@x>', '<r3@x>']);
  });
});

describe('bodyStructure', () => {
  it('multipart/mixed with alternative, an RFC 2231 file name and an inline image', async () => {
    const pdf = b64(mixed.pdf);
    const png = b64(mixed.png);
    const html = b64(mixed.html);
    const none = { id: null, description: null, md5: null, disposition: null, language: null, location: null };
    const expected: BodyStructure = {
      type: 'multipart',
      subtype: 'mixed',
      params: { boundary: '----=_Part_0_123.456' },
      ...none,
      encoding: '7bit',
      size: mixed.message.length - mixed.message.indexOf('\r\n\r\n') - 4,
      parts: [
        {
          type: 'multipart',
          subtype: 'alternative',
          params: { boundary: 'alt' },
          ...none,
          encoding: '7bit',
          size: mixed.message.indexOf('\r\n------=_Part_0_123.456\r\nContent-Type: application/pdf') - (mixed.message.indexOf('boundary="alt"\r\n\r\n') + 18),
          parts: [
            {
              type: 'text',
              subtype: 'plain',
              params: { charset: 'UTF-8', format: 'flowed' },
              ...none,
              encoding: 'quoted-printable',
              size: mixed.text.length - 2,
              lines: lines(mixed.text) - 1,
            },
            { type: 'text', subtype: 'html', params: { charset: 'UTF-8' }, ...none, encoding: 'base64', size: html.length, lines: lines(html) },
          ],
        },
        {
          type: 'application',
          subtype: 'pdf',
          params: { name: 'Bericht Q1 – Entwurf.pdf' },
          ...none,
          encoding: 'base64',
          size: pdf.length,
          disposition: { type: 'attachment', params: { filename: 'Bericht Q1 – Entwurf.pdf' } },
        },
        {
          type: 'image',
          subtype: 'png',
          params: {},
          id: '<logo@example.test>',
          description: null,
          encoding: 'base64',
          size: png.length,
          md5: 'AAAAAAAAAAAAAAAAAAAAAA==',
          disposition: { type: 'inline', params: { filename: 'logo.png' } },
          language: ['de', 'en'],
          location: 'http://example.test/logo.png',
        },
      ],
    };
    assert.deepEqual(bodyStructure(await parseMime(mixed.message)), expected);
  });

  const inner = forwarded.inner;
  const cases: [string, Buffer, string][] = [
    [
      'a forward as an attachment: message/rfc822 with its envelope and structure',
      forwarded.message,
      `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 0 NIL NIL NIL NIL)` +
        `("message" "rfc822" NIL NIL "Forwarded message" "7bit" ${inner.length - 2} ("Mon, 13 Mar 2023 09:00:00 -0500" "Lunch" (("Eve (work)" NIL "eve" "corp.example")) (("Eve (work)" NIL "eve" "corp.example")) (("Eve (work)" NIL "eve" "corp.example")) ((NIL NIL "anna" "example.test")) NIL NIL NIL "<lunch-1@corp.example>") ` +
        `(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" ${forwarded.innerText.length - 2} 0 NIL NIL NIL NIL)("text" "html" ("charset" "us-ascii") NIL NIL "7bit" ${forwarded.innerHtml.length - 2} 0 NIL NIL NIL NIL) "alternative" ("boundary" "inner") NIL NIL NIL) ${lines(inner) - 1} NIL ("attachment" ("filename" "Lunch.eml")) NIL NIL)` +
        ` "mixed" ("boundary" "outer") NIL NIL NIL`,
    ],
    ['a plain message: text/plain and us-ascii by default', plain.message, `"text" "plain" ("charset" "us-ascii") NIL NIL "7bit" ${plain.body.length} ${lines(plain.body)} NIL NIL NIL NIL`],
    ['only a header', headerOnly, `"text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL`],
    ['an empty body', emptyBody, `"text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL`],
    ['a Content-Type that is no type is text/plain; an unknown encoding is kept', broken, `"text" "plain" ("charset" "us-ascii") NIL NIL "x-uuencode" 21 3 NIL NIL NIL NIL`],
    [
      'multipart/digest: a part without Content-Type is message/rfc822',
      digest,
      `("message" "rfc822" NIL NIL NIL "7bit" 48 (NIL "first" ((NIL NIL "one" "example.test")) ((NIL NIL "one" "example.test")) ((NIL NIL "one" "example.test")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)` +
        `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 14 0 NIL NIL NIL NIL) "digest" ("boundary" "d") NIL NIL NIL`,
    ],
    ['a multipart without boundary has one empty part (as Dovecot gives it)', noBoundary, `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed" NIL NIL NIL NIL`],
    ['a multipart whose boundary never comes', boundaryNeverSeen, `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed" ("boundary" "zz") NIL NIL NIL`],
    [
      'a message whose top type is message/rfc822',
      Buffer.from(crlf('Subject: outer\nContent-Type: message/rfc822\n\nSubject: inner\n\nhi\n')),
      `"message" "rfc822" NIL NIL NIL "7bit" 22 (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 4 1 NIL NIL NIL NIL) 3 NIL NIL NIL NIL`,
    ],
    [
      'message/global is a message too',
      Buffer.from(crlf('Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/global\n\nSubject: =?utf-8?q?gr=C3=BC=C3=9F?=\n\nx\n--b--\n')),
      `("message" "global" NIL NIL NIL "7bit" 40 (NIL "grüß" NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 1 0 NIL NIL NIL NIL) 2 NIL NIL NIL NIL) "mixed" ("boundary" "b") NIL NIL NIL`,
    ],
  ];
  for (const [name, message, expected] of cases) {
    it(name, async () => assert.equal(imap(bodyStructure(await parseMime(message))), expected));
  }

  it('is computed once per tree', async () => {
    const tree = await parseMime(mixed.message);
    assert.equal(bodyStructure(tree), bodyStructure(tree));
  });
});

describe('section', () => {
  const cases: [string, Buffer, Section, string | null][] = [];
  {
    const m = plain.message;
    const header = m.subarray(0, m.indexOf('\r\n\r\n') + 4).toString();
    cases.push(
      ['plain []', m, { part: [] }, m.toString()],
      ['plain HEADER', m, { part: [], specifier: 'HEADER' }, header],
      ['plain TEXT', m, { part: [], specifier: 'TEXT' }, plain.body],
      ['plain [1]: a non-multipart message is its own part 1', m, { part: [1] }, plain.body],
      ['plain [1.MIME] is its header', m, { part: [1], specifier: 'MIME' }, header],
      ['plain HEADER.FIELDS: as written, in order, folds kept, then the blank line', m, { part: [], specifier: 'HEADER.FIELDS', fields: ['SUBJECT', 'X-NOTE'] }, 'Subject: note\r\nX-Note: one\r\nX-Note: two\r\n  folded\r\n\r\n'],
      ['plain HEADER.FIELDS.NOT', m, { part: [], specifier: 'HEADER.FIELDS.NOT', fields: ['X-NOTE', 'DATE', 'FROM', 'TO'] }, 'Subject: note\r\n\r\n'],
      ['plain HEADER.FIELDS with no match is the blank line', m, { part: [], specifier: 'HEADER.FIELDS', fields: ['CC'] }, '\r\n'],
      ['plain [2]: no such part', m, { part: [2] }, null],
      ['plain [1.HEADER]: part 1 is no message', m, { part: [1], specifier: 'HEADER' }, null],
      ['plain [MIME] needs a part', m, { part: [], specifier: 'MIME' }, null],
      ['plain [0] is no part number', m, { part: [0] }, null],
    );
  }
  {
    const m = mixed.message;
    const s = m.toString();
    const altStart = s.indexOf('boundary="alt"\r\n\r\n') + 18;
    cases.push(
      ['mixed TEXT: everything after the header', m, { part: [], specifier: 'TEXT' }, s.slice(s.indexOf('\r\n\r\n') + 4)],
      ['mixed [1]: a multipart part up to the CRLF of the next boundary, its epilogue kept', m, { part: [1] }, s.slice(altStart, s.indexOf('\r\n------=_Part_0_123.456\r\nContent-Type: application/pdf'))],
      ['mixed [1.1]: quoted-printable as stored', m, { part: [1, 1] }, bodyOf(mixed.text)],
      ['mixed [1.1.MIME]', m, { part: [1, 1], specifier: 'MIME' }, 'Content-Type: text/plain; charset=UTF-8; format=flowed\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'],
      ['mixed [1.2]: base64 as stored', m, { part: [1, 2] }, b64(mixed.html)],
      ['mixed [2]', m, { part: [2] }, b64(mixed.pdf)],
      ['mixed [3]', m, { part: [3] }, b64(mixed.png)],
      ['mixed [1.MIME]', m, { part: [1], specifier: 'MIME' }, 'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'],
      ['mixed [4]', m, { part: [4] }, null],
      ['mixed [1.3]', m, { part: [1, 3] }, null],
      ['mixed [2.1]: a leaf has no parts', m, { part: [2, 1] }, null],
    );
  }
  {
    const m = forwarded.message;
    const inner = forwarded.inner;
    const innerHeaderEnd = inner.indexOf('\r\n\r\n') + 4;
    cases.push(
      ['forward [2]: the enclosed message', m, { part: [2] }, bodyOf(inner)],
      ['forward [2.HEADER]', m, { part: [2], specifier: 'HEADER' }, inner.slice(0, innerHeaderEnd)],
      ['forward [2.TEXT]', m, { part: [2], specifier: 'TEXT' }, bodyOf(inner.slice(innerHeaderEnd))],
      ['forward [2.HEADER.FIELDS (SUBJECT FROM)]', m, { part: [2], specifier: 'HEADER.FIELDS', fields: ['SUBJECT', 'FROM'] }, 'From: "Eve (work)" <eve@corp.example>\r\nSubject: Lunch\r\n\r\n'],
      ['forward [2.HEADER.FIELDS.NOT (CONTENT-TYPE ...)]', m, { part: [2], specifier: 'HEADER.FIELDS.NOT', fields: ['CONTENT-TYPE', 'DATE', 'FROM', 'MESSAGE-ID'] }, 'To: anna@example.test\r\nSubject: Lunch\r\n\r\n'],
      ['forward [2.MIME]: the part\'s own header', m, { part: [2], specifier: 'MIME' }, 'Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename="Lunch.eml"\r\nContent-Description: Forwarded message\r\n\r\n'],
      ['forward [2.1]: numbers go on into the enclosed message', m, { part: [2, 1] }, bodyOf(forwarded.innerText)],
      ['forward [2.2]', m, { part: [2, 2] }, bodyOf(forwarded.innerHtml)],
      ['forward [2.2.MIME]', m, { part: [2, 2], specifier: 'MIME' }, 'Content-Type: text/html; charset=us-ascii\r\n\r\n'],
      ['forward [2.3]', m, { part: [2, 3] }, null],
      ['forward [2.1.1]', m, { part: [2, 1, 1] }, null],
      ['forward [1.TEXT]: text/plain is no message', m, { part: [1], specifier: 'TEXT' }, null],
    );
  }
  cases.push(
    ['only a header: HEADER has no blank line', headerOnly, { part: [], specifier: 'HEADER' }, headerOnly.toString()],
    ['only a header: HEADER.FIELDS has none either', headerOnly, { part: [], specifier: 'HEADER.FIELDS', fields: ['SUBJECT'] }, 'Subject: nothing else\r\n'],
    ['only a header: TEXT is empty', headerOnly, { part: [], specifier: 'TEXT' }, ''],
    ['empty body: HEADER.FIELDS keeps the blank line', emptyBody, { part: [], specifier: 'HEADER.FIELDS', fields: ['SUBJECT'] }, 'Subject: empty\r\n\r\n'],
    ['empty body: [1] is empty', emptyBody, { part: [1] }, ''],
    ['digest [1.MIME]: an empty MIME header is its blank line', digest, { part: [1], specifier: 'MIME' }, '\r\n'],
    ['digest [1.HEADER]', digest, { part: [1], specifier: 'HEADER' }, 'From: one@example.test\r\nSubject: first\r\n\r\n'],
    ['digest [1.1]: the body of a non-multipart enclosed message', digest, { part: [1, 1] }, 'First.'],
    ['digest [2]', digest, { part: [2] }, 'Not a message.'],
  );

  for (const [name, message, s, expected] of cases) {
    it(name, async () => assert.equal(str(section(message, s, await parseMime(message))), expected));
  }

  it('sections of the whole message need no tree, and give the same bytes', async () => {
    for (const message of [plain.message, mixed.message, headerOnly, emptyBody, forwarded.message]) {
      const tree = await parseMime(message);
      for (const s of [{ part: [] }, { part: [], specifier: 'HEADER' }, { part: [], specifier: 'TEXT' }, { part: [], specifier: 'HEADER.FIELDS', fields: ['SUBJECT', 'FROM'] }] as Section[]) {
        assert.deepEqual(section(message, s), section(message, s, tree));
      }
    }
  });

  it('part numbers need the tree', () => assert.throws(() => section(plain.message, { part: [1] }), TypeError));

  it('gives slices of the message, not copies', async () => {
    const tree = await parseMime(mixed.message);
    const s = section(mixed.message, { part: [2] }, tree)!;
    assert.equal(s.buffer, mixed.message.buffer);
  });
});

describe('broken structure', () => {
  const m = (s: string) => Buffer.from(crlf(s));
  // [name, message, BODY (no extension data), sections]
  const cases: [string, Buffer, string, [number[], string | null][]][] = [
    [
      'a nested multipart as the last part: it ends at the outer close delimiter, its epilogue kept',
      m('Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\nContent-Type: multipart/alternative; boundary=c\n\n--c\n\ntwo\n--c\n\nthree\n--c--\ninner epilogue\n--b--\nouter epilogue\n'),
      '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0)(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0) "alternative") "mixed"',
      [
        [[2], '--c\r\n\r\ntwo\r\n--c\r\n\r\nthree\r\n--c--\r\ninner epilogue'],
        [[2, 2], 'three'],
      ],
    ],
    [
      'an inner multipart left open: the outer boundary still ends its part (RFC 2046, as Dovecot and mailparser read it)',
      m('Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: multipart/alternative; boundary=c\n\n--c\n\ntwo\n--b\n\nthree\n--b--\n'),
      '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0) "alternative")("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0) "mixed"',
      [
        [[1], '--c\r\n\r\ntwo'],
        [[1, 1], 'two'],
        [[2], 'three'],
      ],
    ],
    [
      'cut off before the close delimiter: the last part runs to the end',
      m('Content-Type: multipart/mixed; boundary=b\n\n--b\n\nfirst\n--b\n\ncut off here\n'),
      '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 14 1) "mixed"',
      [[[2], 'cut off here\r\n']],
    ],
    [
      'a part whose header the close delimiter cuts short',
      m('Content-Type: multipart/mixed; boundary=b\n\n--b\n\nfirst\n--b\nContent-Type: text/html\n--b--\nepilogue\n'),
      '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0)("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed"',
      [
        [[2], ''],
        [[3], null],
      ],
    ],
    [
      'delimiters with transport padding (trailing white space, RFC 2046)',
      m('Content-Type: multipart/mixed; boundary=b\n\n--b  \n\none\n--b\t\n\ntwo\n--b-- \n'),
      '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0) "mixed"',
      [
        [[1], 'one'],
        [[2], 'two'],
      ],
    ],
    [
      'a boundary that is a prefix of another',
      m('Content-Type: multipart/mixed; boundary=ab\n\n--ab\nContent-Type: multipart/mixed; boundary=abc\n\n--abc\n\ninner\n--abc--\n--ab\n\nouter\n--ab--\n'),
      '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0) "mixed")("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0) "mixed"',
      [
        [[1, 1], 'inner'],
        [[2], 'outer'],
      ],
    ],
  ];
  for (const [name, message, body, sections] of cases) {
    it(name, async () => {
      const tree = await parseMime(message);
      assert.equal(imap(bodyStructure(tree), false), body);
      for (const [part, expected] of sections) assert.equal(str(section(message, { part }, tree)), expected, `BODY[${part.join('.')}]`);
    });
  }
});

describe('binary', () => {
  it('undoes quoted-printable and base64; a multipart and [] are as stored', async () => {
    const m = mixed.message;
    const tree = await parseMime(m);
    const cases: [number[], Buffer][] = [
      [[1, 1], Buffer.from(mixed.textDecoded)],
      [[1, 2], Buffer.from(mixed.html)],
      [[2], mixed.pdf],
      [[3], mixed.png],
      [[1], section(m, { part: [1] }, tree)!],
      [[], m],
    ];
    for (const [part, expected] of cases) {
      assert.deepEqual(binary(m, part, tree).data, expected, `BINARY[${part.join('.')}]`);
      assert.deepEqual(binarySize(m, part, tree), { size: expected.length }, `BINARY.SIZE[${part.join('.')}]`);
    }
  });

  it('7bit is the bytes as they are', async () => {
    const tree = await parseMime(plain.message);
    const r = binary(plain.message, [1], tree);
    assert.equal(r.data?.toString(), plain.body);
    assert.equal(r.data?.buffer, plain.message.buffer);
  });

  it('an encoding it cannot undo is UNKNOWN-CTE, with the encoding named', async () => {
    const tree = await parseMime(broken);
    assert.deepEqual(binary(broken, [1], tree), { data: null, reason: 'unknown-cte', encoding: 'x-uuencode' });
    assert.deepEqual(binarySize(broken, [1], tree), { data: null, reason: 'unknown-cte', encoding: 'x-uuencode' });
  });

  it('a part the message does not have', async () => {
    const tree = await parseMime(mixed.message);
    assert.deepEqual(binary(mixed.message, [7], tree), { data: null, reason: 'no-such-part' });
  });

  it('decodes quoted-printable soft breaks, =3D and 8-bit, base64 across lines', async () => {
    const data = Buffer.from('a=b\u00e9 '.repeat(40) + '\r\nend');
    const message = Buffer.from(
      crlf(`Content-Type: multipart/mixed; boundary=x

--x
Content-Transfer-Encoding: quoted-printable

${libqp.wrap(libqp.encode(data), 20)}
--x
Content-Transfer-Encoding: BASE64

${b64(data, 12)}
--x--
`),
    );
    const tree = await parseMime(message);
    assert.deepEqual(binary(message, [1], tree).data, data);
    assert.deepEqual(binary(message, [2], tree).data, data);
  });
});

describe('bodyText: what SEARCH BODY reads', () => {
  it('text parts decoded (transfer encoding and charset), attachments left out', async () => {
    const text = bodyText(mixed.message, await parseMime(mixed.message));
    assert.match(text, /Grüße, Anna/);
    assert.match(text, /f&uuml;r das Quartal/);
    assert.doesNotMatch(text, /PDF|Catalog/);
  });

  it('an enclosed message: its header and its text', async () => {
    const text = bodyText(forwarded.message, await parseMime(forwarded.message));
    assert.match(text, /See below\./);
    assert.match(text, /subject: Lunch/);
    assert.match(text, /Lunch at noon\?/);
  });

  it('charsets: ISO-8859-1 in base64, and undeclared 8-bit UTF-8', async () => {
    const message = Buffer.concat([
      Buffer.from(
        crlf(`Content-Type: multipart/mixed; boundary=x

--x
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: base64

${b64(Buffer.from('Grüße', 'latin1'))}
--x
Content-Type: text/plain

`),
      ),
      Buffer.from('naïve\r\n--x--\r\n'),
    ]);
    const text = bodyText(message, await parseMime(message));
    assert.match(text, /Grüße/);
    assert.match(text, /naïve/);
  });
});

describe('agreement with mailparser', () => {
  // Every attachment mailparser finds is at the same part number here, with the same type and content.
  async function agree(message: Buffer) {
    const tree = await parseMime(message);
    const parsed = await simpleParser(message);
    const at = (path: number[]) => {
      let s = bodyStructure(tree);
      for (const n of path) s = s.parts ? s.parts[n - 1] : s.body!.parts ? s.body!.parts[n - 1] : s.body!;
      return s;
    };
    assert.ok(parsed.attachments.length > 0);
    for (const a of parsed.attachments) {
      const path = (a.partId ?? '1').split('.').map(Number);
      const s = at(path);
      assert.equal(`${s.type}/${s.subtype}`, a.contentType, `type of ${a.partId}`);
      assert.deepEqual(binary(message, path, tree).data, a.content, `content of ${a.partId}`);
      if (a.filename) assert.equal(s.disposition?.params.filename ?? s.params.name, a.filename);
    }
    assert.equal(envelope(message).subject, parsed.subject ?? null);
    assert.deepEqual(
      headers(message).from.map((f) => f.address),
      parsed.from?.value.map((v) => v.address),
    );
    return parsed;
  }

  it('the real-world mixed message', async () => {
    const parsed = await agree(mixed.message);
    assert.equal(parsed.html, mixed.html);
  });

  it('the forward (the enclosed message is an attachment to mailparser)', async () => {
    await agree(forwarded.message);
  });

  it('generated trees: nested multiparts, encodings, enclosed messages', async () => {
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed % n);
    let parts = 0;
    const leaf = (): string => {
      const n = parts++;
      switch (rand(4)) {
        case 0:
          return crlf(`Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename="f${n}.bin"\n\n`) + b64(Buffer.from(`binary ${n} `.repeat(rand(30) + 1)));
        case 1:
          return crlf(`Content-Type: text/csv; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\nContent-Disposition: attachment; filename="t${n}.csv"\n\n`) + libqp.wrap(libqp.encode(Buffer.from(`a;b;ü${n}\r\n`.repeat(rand(9) + 1))), 40);
        case 2:
          return crlf(`Content-Type: message/rfc822\nContent-Disposition: attachment\n\nSubject: m${n}\nContent-Type: multipart/mixed; boundary=in${n}\n\n--in${n}\n\ninner\n--in${n}--\n`);
        default:
          return crlf(`Content-Type: image/gif\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename="i${n}.gif"\n\n`) + b64(Buffer.from([71, 73, 70, n % 256]));
      }
    };
    const multipart = (depth: number): string => {
      const b = `b${depth}_${parts++}`;
      const children = Array.from({ length: rand(3) + 1 }, () => (depth < 3 && rand(3) === 0 ? multipart(depth + 1) : leaf()));
      return crlf(`Content-Type: multipart/mixed; boundary="${b}"\n\npreamble\n`) + children.map((c) => `--${b}\r\n${c}\r\n`).join('') + `--${b}--\r\nepilogue\r\n`;
    };
    for (let i = 0; i < 20; i++) await agree(Buffer.from(`From: gen@example.test\r\nSubject: generated ${i}\r\n${multipart(0)}`));
  });
});

describe('MimeCache', () => {
  it('parses once, then answers from the cache without the bytes', async () => {
    const cache = new MimeCache();
    let loads = 0;
    const load = () => (loads++, mixed.message);
    const a = await cache.tree('m1', load);
    const b = await cache.tree('m1', load);
    assert.equal(a, b);
    assert.equal(loads, 1);
    assert.deepEqual(cache.stats, { trees: 1, bytes: a.cost });
  });

  it('shares a parse in progress', async () => {
    const cache = new MimeCache();
    let loads = 0;
    const [a, b] = await Promise.all([cache.tree('m', async () => (loads++, plain.message)), cache.tree('m', async () => (loads++, plain.message))]);
    assert.equal(a, b);
    assert.equal(loads, 1);
  });

  it('drops the least recently used past its size, and keeps no tree larger than all of it', async () => {
    const size = (await parseMime(plain.message)).cost;
    const cache = new MimeCache({ maxBytes: size * 2 });
    const t1 = await cache.tree('1', plain.message);
    await cache.tree('2', plain.message);
    assert.equal(cache.get('1'), t1); // now 2 is the oldest
    await cache.tree('3', plain.message);
    assert.equal(cache.get('2'), undefined);
    assert.equal(cache.get('1'), t1);
    assert.ok(cache.get('3'));
    const small = new MimeCache({ maxBytes: 10 });
    await small.tree('big', mixed.message);
    assert.deepEqual(small.stats, { trees: 0, bytes: 0 });
    cache.delete('1');
    assert.equal(cache.stats.trees, 1);
    cache.clear();
    assert.deepEqual(cache.stats, { trees: 0, bytes: 0 });
  });

  it('a tree holds no reference to the message, nor to a shared buffer', async () => {
    const message = Buffer.concat([forwarded.message, Buffer.alloc(100_000, 'x')]);
    const tree: MimeTree = await parseMime(message);
    const walk = (p: MimeTree['root']): void => {
      assert.equal(p.header.raw.buffer.byteLength, p.header.raw.length);
      for (const c of p.parts ?? []) walk(c);
      if (p.message) walk(p.message);
    };
    walk(tree.root);
  });
});

describe('fetchNeeds', () => {
  const body = (part: number[], specifier?: Section['specifier']): FetchItem => ({ kind: 'BODY[]', section: { part, specifier }, peek: true });
  const cases: [string, FetchItem[], { header: boolean; message: boolean; tree: boolean }][] = [
    ['FLAGS UID RFC822.SIZE', [{ kind: 'FLAGS' }, { kind: 'UID' }, { kind: 'RFC822.SIZE' }], { header: false, message: false, tree: false }],
    ['ENVELOPE', [{ kind: 'ENVELOPE' }], { header: true, message: false, tree: false }],
    ['BODYSTRUCTURE', [{ kind: 'BODYSTRUCTURE' }], { header: false, message: false, tree: true }],
    ['BODY.PEEK[HEADER]', [body([], 'HEADER')], { header: true, message: false, tree: false }],
    ['BODY.PEEK[HEADER.FIELDS (Subject)]', [{ kind: 'BODY[]', section: { part: [], specifier: 'HEADER.FIELDS', fields: ['SUBJECT'] }, peek: true }], { header: true, message: false, tree: false }],
    ['BODY.PEEK[TEXT]', [body([], 'TEXT')], { header: false, message: true, tree: false }],
    ['BODY[2.HEADER]', [body([2], 'HEADER')], { header: false, message: true, tree: true }],
    ['BODY[1.2]', [body([1, 2])], { header: false, message: true, tree: true }],
    ['BINARY.SIZE[1]', [{ kind: 'BINARY.SIZE', section: { part: [1] } }], { header: false, message: true, tree: true }],
  ];
  for (const [name, items, expected] of cases) it(name, () => assert.deepEqual(fetchNeeds(items), expected));
});
