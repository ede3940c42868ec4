import { rfc5322Date as rfc5322 } from '@mailgrid/core';
import { randomBytes } from 'node:crypto';
import type { Reply } from './queue-store.js';

/**
 * Delivery status notifications (RFC 3464, with the DSN extension's fields of RFC 3461):
 * `multipart/report; report-type=delivery-status` with a human part, the machine-readable
 * `message/delivery-status` part and the original message (`message/rfc822`, for a failure
 * with RET=FULL) or its headers (`text/rfc822-headers`). Sent with the null sender `<>`.
 */
export interface DsnRecipient {
  address: string;
  action: 'failed' | 'delayed' | 'delivered' | 'relayed';
  /** The reply that tells what happened (`Diagnostic-Code`). */
  reply: Reply;
  /** `Status` when it is not the reply's own enhanced code (an expired message: 5.4.7). */
  status?: string;
  /** RFC 3461 ORCPT as the sender gave it (`rfc822;alice@example.test`). */
  originalRecipient?: string;
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
  /** RFC 3461 ENVID. */
  envid?: string;
  /** RFC 3461 RET: FULL returns the whole message with a failure, HDRS (the default) its headers. */
  ret?: 'FULL' | 'HDRS';
  /** The original message. */
  original: Buffer;
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

const SUBJECTS = {
  failed: 'Undelivered Mail Returned to Sender',
  delayed: 'Delayed Mail (still being retried)',
  delivered: 'Successful Mail Delivery Report',
  relayed: 'Successful Mail Delivery Report',
} as const;

export function buildDsn(input: DsnInput): Buffer {
  const now = input.now ?? new Date();
  const actions = new Set(input.recipients.map((r) => r.action));
  // One report for a pass: it is named after the worst news in it.
  const worst = actions.has('failed') ? 'failed' : actions.has('delayed') ? 'delayed' : 'delivered';
  const boundary = `mailgrid-dsn-${randomBytes(12).toString('hex')}`;
  const msgId = `<${now.getTime().toString(36)}.${randomBytes(6).toString('hex')}@${input.reportingMta}>`;
  const lines = (arr: string[]) => arr.join('\r\n') + '\r\n';
  const returnFull = input.ret === 'FULL' && worst === 'failed';

  const human = [
    `This is the mail system at ${input.reportingMta}.`,
    '',
    ...(worst === 'failed'
      ? ['Your message could not be delivered to one or more recipients.', returnFull ? 'It is attached below.' : 'Its headers are attached below.']
      : worst === 'delayed'
        ? ['Your message has not been delivered yet. It is still queued and will be retried;', 'you do not need to send it again.']
        : ['Your message was delivered to the recipients below, as you asked to be told.']),
    '',
    ...input.recipients.map((r) => `<${r.address}>: ${r.action}: ${r.reply.code} ${r.reply.enhanced} ${field(r.reply.text)}`),
  ];

  const perMessage = [
    `Reporting-MTA: dns; ${input.reportingMta}`,
    `X-Mailgrid-Queue-ID: ${input.queueId}`,
    ...(input.envid ? [`Original-Envelope-Id: ${field(input.envid)}`] : []),
    `Arrival-Date: ${rfc5322(new Date(input.arrivalDate))}`,
  ];
  const perRecipient = input.recipients.map((r) =>
    [
      ...(r.originalRecipient ? [`Original-Recipient: ${field(r.originalRecipient)}`] : []),
      `Final-Recipient: rfc822; ${field(r.address)}`,
      `Action: ${r.action}`,
      `Status: ${r.status ?? r.reply.enhanced}`,
      ...(r.remoteMta ? [`Remote-MTA: ${field(r.remoteMta)}`] : []),
      `Diagnostic-Code: smtp; ${r.reply.code} ${r.reply.enhanced} ${field(r.reply.text)}`,
      ...(r.lastAttemptAt ? [`Last-Attempt-Date: ${rfc5322(new Date(r.lastAttemptAt))}`] : []),
      ...(r.willRetryUntil ? [`Will-Retry-Until: ${rfc5322(new Date(r.willRetryUntil))}`] : []),
    ].join('\r\n'),
  );

  const head = lines([
    `From: Mail Delivery System <${input.from}>`,
    `To: <${input.to}>`,
    `Subject: ${SUBJECTS[worst]}`,
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
    returnFull ? 'Content-Type: message/rfc822' : 'Content-Type: text/rfc822-headers',
    returnFull ? 'Content-Description: Undelivered Message' : worst === 'failed' ? 'Content-Description: Undelivered Message Headers' : 'Content-Description: Message Headers',
    '',
  ]);
  const returned = returnFull ? input.original : headersOf(input.original);
  const end = returned.subarray(-2).equals(Buffer.from('\r\n')) ? '' : '\r\n';
  return Buffer.concat([Buffer.from(head, 'latin1'), returned, Buffer.from(`${end}\r\n--${boundary}--\r\n`, 'latin1')]);
}
