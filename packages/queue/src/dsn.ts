import { rfc5322Date as rfc5322 } from '@mailgrid/core';
import { randomBytes } from 'node:crypto';
import type { Reply } from './queue-store.js';

/**
 * Delivery status notifications (RFC 3464): `multipart/report;
 * report-type=delivery-status` with a human part, the machine-readable
 * `message/delivery-status` part and the original message's headers
 * (`text/rfc822-headers`). Sent with the null sender `<>`.
 */
export interface DsnRecipient {
  address: string;
  action: 'failed' | 'delayed';
  reply: Reply;
  /** `dns; mx.example.net` of the server that answered, when there was one. */
  remoteMta?: string;
  lastAttemptAt?: number;
  /** For delayed: until when we keep trying. */
  willRetryUntil?: number;
}

export interface DsnInput {
  reportingMta: string;
  /** Postmaster address of this system, the From: of the report. */
  from: string;
  to: string;
  queueId: string;
  arrivalDate: number;
  envid?: string;
  originalHeaders: Buffer;
  recipients: DsnRecipient[];
  now?: Date;
}

/** The header block of a message: everything up to the first empty line. */
export function headersOf(message: Buffer): Buffer {
  const end = message.indexOf('\r\n\r\n');
  return end < 0 ? message : message.subarray(0, end + 2);
}

/** A field value must not break the report: no CR/LF, nothing non-ASCII unencoded. */
const field = (s: string) => s.replace(/[\r\n]+/g, ' ').replace(/[^\x20-\x7e]/g, '?');

export function buildDsn(input: DsnInput): Buffer {
  const now = input.now ?? new Date();
  const failed = input.recipients.some((r) => r.action === 'failed');
  const boundary = `mailgrid-dsn-${randomBytes(12).toString('hex')}`;
  const msgId = `<${now.getTime().toString(36)}.${randomBytes(6).toString('hex')}@${input.reportingMta}>`;
  const lines = (arr: string[]) => arr.join('\r\n') + '\r\n';

  const human = [
    `This is the mail system at ${input.reportingMta}.`,
    '',
    ...(failed
      ? ['Your message could not be delivered to one or more recipients.', 'Its headers are attached below.']
      : ['Your message has not been delivered yet. It is still queued and will be retried;', 'you do not need to send it again.']),
    '',
    ...input.recipients.map((r) => `<${r.address}>: ${r.reply.code} ${r.reply.enhanced} ${field(r.reply.text)}`),
  ];

  const perMessage = [
    `Reporting-MTA: dns; ${input.reportingMta}`,
    `X-Mailgrid-Queue-ID: ${input.queueId}`,
    ...(input.envid ? [`Original-Envelope-Id: ${field(input.envid)}`] : []),
    `Arrival-Date: ${rfc5322(new Date(input.arrivalDate))}`,
  ];
  const perRecipient = input.recipients.map((r) =>
    [
      `Final-Recipient: rfc822; ${field(r.address)}`,
      `Action: ${r.action}`,
      `Status: ${r.reply.enhanced}`,
      ...(r.remoteMta ? [`Remote-MTA: ${field(r.remoteMta)}`] : []),
      `Diagnostic-Code: smtp; ${r.reply.code} ${r.reply.enhanced} ${field(r.reply.text)}`,
      ...(r.lastAttemptAt ? [`Last-Attempt-Date: ${rfc5322(new Date(r.lastAttemptAt))}`] : []),
      ...(r.willRetryUntil ? [`Will-Retry-Until: ${rfc5322(new Date(r.willRetryUntil))}`] : []),
    ].join('\r\n'),
  );

  const head = lines([
    `From: Mail Delivery System <${input.from}>`,
    `To: <${input.to}>`,
    `Subject: ${failed ? 'Undelivered Mail Returned to Sender' : 'Delayed Mail (still being retried)'}`,
    `Date: ${rfc5322(now)}`,
    `Message-ID: ${msgId}`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    '',
    'This is a MIME-encapsulated message.',
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=us-ascii',
    'Content-Description: Notification',
    '',
    ...human,
    '',
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    'Content-Description: Delivery report',
    '',
    perMessage.join('\r\n'),
    '',
    perRecipient.join('\r\n\r\n'),
    '',
    `--${boundary}`,
    'Content-Type: text/rfc822-headers',
    'Content-Description: Undelivered Message Headers',
    '',
  ]);
  const headers = headersOf(input.originalHeaders);
  return Buffer.concat([Buffer.from(head, 'latin1'), headers, Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1')]);
}
