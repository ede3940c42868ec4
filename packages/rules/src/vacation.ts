import { createRequire } from 'node:module';
import type { MessageView } from './message.js';
import type { Vacation } from './sieve.js';

// nodemailer's message builder (headers encoded, lines folded, CRLF), without the mailer.
const MailComposer = createRequire(import.meta.url)('nodemailer/lib/mail-composer') as new (mail: object) => {
  compile(): { build(cb: (err: Error | null, message: Buffer) => void): void };
};

export interface VacationContext {
  /** The envelope sender; '' for <>. */
  mailFrom: string;
  /** The account the message was delivered to. */
  account: string;
  message: MessageView;
}

const DAEMONS = /^(mailer-daemon|postmaster|listserv|majordomo|owner-.*|.*-request|.*-owner|no-?reply)$/i;

/**
 * Why a vacation reply must not be sent for this message (RFC 5230 §4.5, §5; RFC 3834), or
 * undefined when it may: never to <>, to a daemon or a list, to bulk or automatic mail, to the
 * account itself, or for a message that was not addressed to one of the account's addresses.
 */
export function vacationRefusal(v: Vacation, c: VacationContext): string | undefined {
  if (!c.mailFrom) return 'null sender';
  const own = [c.account, ...v.addresses].map((a) => a.toLowerCase());
  const sender = c.mailFrom.toLowerCase();
  if (own.includes(sender)) return 'sent by the account itself';
  if (DAEMONS.test(sender.slice(0, sender.lastIndexOf('@')))) return 'sender is a daemon or list address';
  const m = c.message;
  if (m.has('list-id') || m.has('list-post') || m.has('list-unsubscribe')) return 'list mail';
  if (m.header('precedence').some((p) => /^(bulk|list|junk)$/i.test(p.trim()))) return 'bulk mail';
  if (m.header('auto-submitted').some((a) => !/^no$/i.test(a.trim().split(/[\s;]/)[0]))) return 'automatic mail';
  const to = ['to', 'cc', 'bcc', 'resent-to', 'resent-cc'].flatMap((h) => m.addresses(h)).map((a) => a.toLowerCase());
  if (!to.some((a) => own.includes(a))) return 'not addressed to the account';
  return undefined;
}

/** The reply itself (RFC 5230 §5): from the account, `Auto-Submitted: auto-replied`, threaded to the original. */
export function vacationReply(v: Vacation, c: VacationContext): Promise<Buffer> {
  const subject = v.subject ?? `Auto: ${c.message.header('subject')[0] ?? ''}`.trim();
  const id = c.message.header('message-id')[0]?.trim();
  const composer = new MailComposer({
    from: v.from ?? c.account,
    to: c.mailFrom,
    subject,
    text: v.reason,
    inReplyTo: id,
    references: id,
    headers: { 'Auto-Submitted': 'auto-replied', Precedence: 'bulk' },
  });
  return new Promise((resolve, reject) => composer.compile().build((err, message) => (err ? reject(err) : resolve(message))));
}
