import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildDsn } from './dsn.js';

describe('buildDsn', () => {
  const original = Buffer.from('From: a@x.test\r\nSubject: hi\r\nMessage-ID: <m1@x.test>\r\n\r\nsecret body\r\n');
  const dsn = buildDsn({
    reportingMta: 'mx.example.test',
    from: 'MAILER-DAEMON@mx.example.test',
    to: 'a@x.test',
    queueId: 'Q1',
    arrivalDate: Date.UTC(2026, 10, 21, 12),
    envid: 'env-1',
    original,
    recipients: [
      { address: 'b@y.test', action: 'failed', reply: { code: 550, enhanced: '5.1.1', text: 'no such user' }, remoteMta: 'dns; mx.y.test' },
      { address: 'c@y.test', action: 'failed', reply: { code: 554, enhanced: '5.4.7', text: 'expired\r\nInjected: header' } },
    ],
    now: new Date(Date.UTC(2026, 10, 21, 13)),
  });
  const text = dsn.toString('latin1');
  const boundary = /boundary="([^"]+)"/.exec(text)![1];

  it('is a multipart/report of three parts', () => {
    assert.match(text, /^Content-Type: multipart\/report; report-type=delivery-status; boundary="/m);
    assert.equal(text.split(`--${boundary}\r\n`).length - 1, 3);
    assert.ok(text.endsWith(`--${boundary}--\r\n`));
    assert.match(text, /^Auto-Submitted: auto-replied\r$/m);
  });

  it('has per-message and per-recipient fields', () => {
    assert.match(text, /Reporting-MTA: dns; mx\.example\.test\r\nX-Mailgrid-Queue-ID: Q1\r\nOriginal-Envelope-Id: env-1\r\nArrival-Date: Sat, 21 Nov 2026 12:00:00 \+0000/);
    assert.match(text, /Final-Recipient: rfc822; b@y\.test\r\nAction: failed\r\nStatus: 5\.1\.1\r\nRemote-MTA: dns; mx\.y\.test\r\nDiagnostic-Code: smtp; 550 5\.1\.1 no such user/);
    assert.match(text, /Final-Recipient: rfc822; c@y\.test\r\nAction: failed\r\nStatus: 5\.4\.7/);
  });

  it('cannot be broken by a reply text with line breaks', () => {
    assert.doesNotMatch(text, /^Injected: header/m);
  });

  it('attaches the original headers only', () => {
    const part = text.split(`--${boundary}\r\n`)[3];
    assert.match(part, /^Content-Type: text\/rfc822-headers/);
    assert.match(part, /Message-ID: <m1@x\.test>/);
    assert.doesNotMatch(part, /secret body/);
  });

  it('returns the whole message for a failure with RET=FULL, and says ENVID, ORCPT and a separate Status', () => {
    const full = buildDsn({
      reportingMta: 'mx.example.test',
      from: 'MAILER-DAEMON@mx.example.test',
      to: 'a@x.test',
      queueId: 'Q2',
      arrivalDate: 0,
      envid: 'env-2',
      ret: 'FULL',
      original,
      recipients: [{ address: 'b@y.test', action: 'failed', status: '5.4.7', reply: { code: 451, enhanced: '4.3.0', text: 'try later' }, originalRecipient: 'rfc822;B@Y.test' }],
    }).toString('latin1');
    assert.match(full, /Content-Type: message\/rfc822\r\n[\s\S]*secret body/);
    assert.match(full, /Original-Envelope-Id: env-2/);
    assert.match(full, /Original-Recipient: rfc822;B@Y\.test\r\nFinal-Recipient: rfc822; b@y\.test\r\nAction: failed\r\nStatus: 5\.4\.7\r\nDiagnostic-Code: smtp; 451 4\.3\.0 try later/);
  });

  it('reports a delivery (NOTIFY=SUCCESS) with the headers only, whatever RET says', () => {
    const ok = buildDsn({
      reportingMta: 'mx.example.test',
      from: 'MAILER-DAEMON@mx.example.test',
      to: 'a@x.test',
      queueId: 'Q3',
      arrivalDate: 0,
      ret: 'FULL',
      original,
      recipients: [{ address: 'b@y.test', action: 'delivered', reply: { code: 250, enhanced: '2.0.0', text: 'Stored' } }],
    }).toString('latin1');
    assert.match(ok, /Subject: Successful Mail Delivery Report/);
    assert.match(ok, /Action: delivered\r\nStatus: 2\.0\.0/);
    assert.match(ok, /Content-Type: text\/rfc822-headers/);
    assert.doesNotMatch(ok, /secret body/);
  });

  it('uses CRLF line endings only', () => {
    for (let i = 0; i < dsn.length; i++) if (dsn[i] === 0x0a) assert.equal(dsn[i - 1], 0x0d, `bare LF at ${i}`);
  });
});
