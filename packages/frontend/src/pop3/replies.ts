import type { CodedError } from '@mailgrid/core';

/**
 * POP3's words: every `-ERR` a session sends comes from here. Refusals of the mail system
 * are coded errors (MailError, AdminError), answered by their code (RFC 2449 response codes: `[AUTH]` for a login the
 * client must change, `[IN-USE]` for a maildrop another session holds, `[SYS/TEMP]` for
 * anything that may work later); the protocol's own complaints (a bad command, a message
 * number) have codes of their own.
 */
const BY_CODE: Record<string, string> = {
  AUTH_FAILED: '[AUTH] Authentication failed',
  TOO_MANY_AUTH_FAILURES: '[AUTH] Too many failed authentications, closing connection',
  TLS_REQUIRED: '[AUTH] Plaintext authentication disallowed on non-secure connections: STLS first',
  MAILBOX_IN_USE: '[IN-USE] Mailbox is in use by another session',
  TOO_MUCH_INPUT: 'Too much input without reading the answers',
};

/** The `-ERR` line for a refusal: its own words, else `[SYS/TEMP]` and its text when a retry may help. */
export function pop3Error(err: CodedError): string {
  const own = BY_CODE[err.code];
  if (own) return `-ERR ${own}`;
  return err.retryable ? `-ERR [SYS/TEMP] ${err.text}` : `-ERR ${err.text}`;
}

/** POP3's complaints about the command itself. */
export const Pop3 = {
  unknownCommand: '-ERR Unknown command',
  notBeforeLogin: '-ERR Unknown command or not allowed before login',
  userFirst: '-ERR USER first',
  messageNumberRequired: '-ERR Message number required',
  lineCountRequired: '-ERR Line count required',
  noSuchMessage: '-ERR No such message',
  messageDeleted: '-ERR Message is deleted',
  tlsActive: '-ERR TLS already active',
  mechanism: '-ERR [AUTH] Unsupported mechanism (PLAIN only)',
  malformedAuth: '-ERR [AUTH] Malformed authentication',
  authCancelled: '-ERR [AUTH] Authentication cancelled',
  /** QUIT could not remove what DELE marked (it stays, the session ends). */
  notRemoved: (err: CodedError) => `-ERR [SYS/TEMP] Marked messages were not removed: ${err.text}`,
} as const;
