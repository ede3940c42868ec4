import type { CodedError } from '@mailgrid/core';

/**
 * IMAP's words for the mail system's refusals, by code: the tagged status (NO, or BYE for
 * what ends the session) with its response code (RFC 5530 and the extensions'). A refusal
 * not named here is `NO [UNAVAILABLE]` when it may pass, `NO [CANNOT]` when it will not.
 */
const BY_CODE: Record<string, { status: 'NO' | 'BYE'; code?: string; text?: string }> = {
  AUTH_FAILED: { status: 'NO', code: 'AUTHENTICATIONFAILED', text: 'Authentication failed' },
  AUTH_LOCKED: { status: 'NO', code: 'UNAVAILABLE' },
  AUTH_UNAVAILABLE: { status: 'NO', code: 'UNAVAILABLE' },
  TOO_MANY_AUTH_FAILURES: { status: 'BYE', code: 'AUTHENTICATIONFAILED' },
  TLS_REQUIRED: { status: 'NO', code: 'PRIVACYREQUIRED', text: 'STARTTLS first' },
  NOT_FOUND: { status: 'NO', code: 'NONEXISTENT' },
  ALREADY_EXISTS: { status: 'NO', code: 'ALREADYEXISTS' },
  INVALID_ARGUMENT: { status: 'NO', code: 'CANNOT' },
  FAILED_PRECONDITION: { status: 'NO', code: 'CANNOT' },
  OVER_QUOTA: { status: 'NO', code: 'OVERQUOTA' },
  MESSAGE_TOO_BIG: { status: 'NO', code: 'TOOBIG' },
  ACCOUNT_MOVING: { status: 'NO', code: 'UNAVAILABLE', text: 'The account is being moved, try again shortly' },
  WRONG_GROUP: { status: 'NO', code: 'UNAVAILABLE' },
  STORAGE_FAILED: { status: 'NO', code: 'SERVERBUG' },
  LOCAL_ERROR: { status: 'NO', code: 'SERVERBUG' },
  MAILBOX_CHANGED: { status: 'BYE', code: 'UNAVAILABLE' },
  SHUTTING_DOWN: { status: 'BYE', code: 'UNAVAILABLE' },
  IDLE_TIMEOUT: { status: 'BYE', text: 'Autologout; idle for too long' },
  TOO_MUCH_INPUT: { status: 'BYE', code: 'TOOBIG', text: 'Too much input without reading the answers' },
  TOO_MANY_CONNECTIONS: { status: 'BYE', code: 'UNAVAILABLE' },
  EARLY_TALKER: { status: 'BYE' },
};

export interface ImapRefusal {
  status: 'NO' | 'BYE';
  /** `[CODE] text` */
  text: string;
}

export function imapRefusal(err: CodedError): ImapRefusal {
  const own = BY_CODE[err.code];
  const status = own?.status ?? 'NO';
  const code = own?.code ?? (err.retryable ? 'UNAVAILABLE' : 'CANNOT');
  return { status, text: `${code ? `[${code}] ` : ''}${own?.text ?? err.text}` };
}

/** A refusal as an untagged line (before the greeting, or a session's last words). */
export function imapBye(err: CodedError): string {
  return `* BYE ${imapRefusal(err).text}`;
}
