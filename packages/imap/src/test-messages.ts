/**
 * Messages the MIME and search tests share, shaped like real mail. Each is built from named
 * pieces so a test can say what a part's bytes, size and line count must be.
 */

/** LF to CRLF: messages are stored CRLF. */
export const crlf = (s: string) => s.replace(/\r?\n/g, '\r\n');
export const b64 = (s: string | Buffer, width = 76) => (Buffer.isBuffer(s) ? s : Buffer.from(s)).toString('base64').replace(new RegExp(`.{${width}}`, 'g'), '$&\r\n');

// ---- multipart/mixed: alternative (QP text, base64 HTML), a PDF with an RFC 2231 name, an inline image

const mixedParts = {
  text: crlf('Hallo Bob,\n\nanbei der Entwurf f=C3=BCr das Quartal. Gr=C3=BC=C3=9Fe=\n, Anna\n'),
  /** The text part's content decoded (its last CRLF belongs to the boundary). */
  textDecoded: 'Hallo Bob,\r\n\r\nanbei der Entwurf für das Quartal. Grüße, Anna',
  html: '<html><body><p>Hallo Bob,</p><p>anbei der Entwurf f&uuml;r das Quartal.</p></body></html>',
  pdf: Buffer.from('%PDF-1.4\n1 0 obj <</Type/Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n'),
  png: Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex'),
  subject: 'Re: Quartalsbericht – Entwurf',
};
export const mixed = {
  ...mixedParts,
  message: ((p) =>
    Buffer.from(
      crlf(`Return-Path: <anna@example.test>
Received: from mx.example.test (mx.example.test [192.0.2.1])
\tby mail.example.test with ESMTPS id 4F2A
\tfor <bob@example.test>; Tue, 14 Mar 2023 10:15:02 +0100
Date: Tue, 14 Mar 2023 10:15:00 +0100
From: =?UTF-8?Q?Anna_M=C3=BCller?= <anna@example.test>
To: Bob <bob@example.test>, "Carol, C." <carol@example.test>
Cc: team: dave@example.test, erin@example.test;
Subject: =?UTF-8?B?${Buffer.from(p.subject).toString('base64')}?=
Message-ID: <20230314101500.1234@example.test>
In-Reply-To: <20230313090000.99@example.test>
References: <20230312080000.1@example.test>
 <20230313090000.99@example.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="----=_Part_0_123.456"

This is a multi-part message in MIME format.

------=_Part_0_123.456
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=UTF-8; format=flowed
Content-Transfer-Encoding: quoted-printable

`) +
        p.text +
        crlf(`--alt
Content-Type: text/html; charset=UTF-8
Content-Transfer-Encoding: base64

${b64(p.html)}
--alt--

------=_Part_0_123.456
Content-Type: application/pdf; name="=?UTF-8?Q?Bericht_Q1_=E2=80=93_Entwurf.pdf?="
Content-Transfer-Encoding: base64
Content-Disposition: attachment;
 filename*0*=UTF-8''Bericht%20Q1%20%E2%80%93;
 filename*1*=%20Entwurf.pdf

${b64(p.pdf)}
------=_Part_0_123.456
Content-Type: image/png
Content-Transfer-Encoding: base64
Content-ID: <logo@example.test>
Content-Disposition: inline; filename="logo.png"
Content-Language: de, en
Content-Location: http://example.test/logo.png
Content-MD5: AAAAAAAAAAAAAAAAAAAAAA==

${b64(p.png)}
------=_Part_0_123.456--

`),
      'utf8',
    ))(mixedParts),
};

// ---- a forward as an attachment: message/rfc822 holding multipart/alternative -----------

const innerText = crlf('Lunch at noon?\n');
const innerHtml = crlf('<p>Lunch at <b>noon</b>?</p>\n');
const inner =
  crlf(`Date: Mon, 13 Mar 2023 09:00:00 -0500
From: "Eve (work)" <eve@corp.example>
To: anna@example.test
Subject: Lunch
Message-ID: <lunch-1@corp.example>
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain; charset=us-ascii

`) +
  innerText +
  crlf(`--inner
Content-Type: text/html; charset=us-ascii

`) +
  innerHtml +
  crlf(`--inner--
`);

export const forwarded = {
  innerText,
  innerHtml,
  /** The enclosed message, with the CRLF that the outer close delimiter takes. */
  inner,
  message: Buffer.from(
    crlf(`Date: Tue, 14 Mar 2023 11:00:00 +0100
From: anna@example.test
To: bob@example.test
Subject: Fwd: Lunch
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: text/plain

See below.
--outer
Content-Type: message/rfc822
Content-Disposition: attachment; filename="Lunch.eml"
Content-Description: Forwarded message

`) +
      inner +
      crlf(`--outer--
`),
  ),
};

// ---- a plain message, and ones with little or nothing -------------------------------------

const plainBody = crlf('Hello,\n\nshort note.\n');
export const plain = {
  body: plainBody,
  message: Buffer.from(
    crlf(`From: Bob <bob@example.test>
To: anna@example.test
Subject: note
Date: Wed, 15 Mar 2023 08:00:00 +0000
X-Note: one
X-Note: two
  folded

`) + plainBody,
  ),
};

/** A header and no body, not even the blank line. */
export const headerOnly = Buffer.from(crlf('From: a@example.test\nSubject: nothing else'));

/** The blank line, then nothing. */
export const emptyBody = Buffer.from(crlf('From: a@example.test\nSubject: empty\n\n'));

/** Mail that breaks rules: no Date or From, odd addresses, a Content-Type that is no type. */
export const broken = Buffer.from(
  crlf(`Subject:
To: undisclosed-recipients:;
Cc: root, Just A Name, <@relay.example:x@y.example>
Sender:
Content-Type: ???; charset=utf-8
Content-Transfer-Encoding: x-uuencode

begin 644 x
\`
end
`),
);

/** multipart/digest: parts without Content-Type are message/rfc822. */
export const digest = Buffer.from(
  crlf(`From: list@example.test
Subject: Digest
Content-Type: multipart/digest; boundary=d

--d

From: one@example.test
Subject: first

First.
--d
Content-Type: text/plain

Not a message.
--d--
`),
);

/** Multiparts whose boundary is missing, or never appears. */
export const noBoundary = Buffer.from(crlf('Content-Type: multipart/mixed\n\nJust text.\n'));
export const boundaryNeverSeen = Buffer.from(crlf('Content-Type: multipart/mixed; boundary=zz\n\npreamble only\n'));
