/**
 * Errors that carry their SMTP reply. A MailError says what the client should be told
 * (basic + enhanced code and text) and whether trying again can help. Infrastructure
 * faults are always temporary (4xx) so mail is retried, never bounced by accident.
 */
export interface SmtpReply {
  code: number;
  enhanced: string;
  text: string;
}

const BRAND = Symbol.for('mailgrid.MailError');

export class MailError extends Error {
  readonly [BRAND] = true;
  override readonly name = 'MailError';

  constructor(
    /** Stable identifier for logs and tests, e.g. `UNKNOWN_USER`. */
    readonly code: string,
    readonly reply: SmtpReply,
    options?: { cause?: unknown },
  ) {
    super(`${reply.code} ${reply.enhanced} ${reply.text}`, options);
  }

  /** 4xx: a retry may succeed. */
  get retryable(): boolean {
    return this.reply.code < 500;
  }

  /** Survives duplicate installs of this package, unlike instanceof. */
  static is(err: unknown): err is MailError {
    return typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[BRAND] === true;
  }
}

export function temporary(code: string, basic: number, enhanced: string, text: string, cause?: unknown): MailError {
  if (basic < 400 || basic >= 500) throw new RangeError(`temporary reply needs a 4xx code, got ${basic}`);
  return new MailError(code, { code: basic, enhanced, text }, { cause });
}

export function permanent(code: string, basic: number, enhanced: string, text: string, cause?: unknown): MailError {
  if (basic < 500 || basic >= 600) throw new RangeError(`permanent reply needs a 5xx code, got ${basic}`);
  return new MailError(code, { code: basic, enhanced, text }, { cause });
}

/**
 * Any error as a MailError: a MailError stays itself, anything else is an unexpected local
 * fault and becomes a temporary `451 4.3.0`.
 */
export function toMailError(err: unknown): MailError {
  if (MailError.is(err)) return err;
  return temporary('LOCAL_ERROR', 451, '4.3.0', 'Local error in processing, try again later', err);
}

/** The replies mailgrid gives, named once so every component answers alike. */
export const Replies = {
  unknownUser: (address: string) => permanent('UNKNOWN_USER', 550, '5.1.1', `<${address}>: Recipient address rejected: no such user`),
  relayDenied: (address: string) => permanent('RELAY_DENIED', 554, '5.7.1', `<${address}>: Relay access denied`),
  badAddress: (address: string) => permanent('BAD_ADDRESS', 553, '5.1.3', `<${address}>: Bad address syntax`),
  utf8Required: (address: string) =>
    permanent('SMTPUTF8_REQUIRED', 553, '5.6.7', `<${address}>: Non-ASCII address requires SMTPUTF8`),
  messageTooBig: (max: number) => permanent('MESSAGE_TOO_BIG', 552, '5.3.4', `Message size exceeds fixed limit of ${max} bytes`),
  badLineEndings: () =>
    permanent('BAD_LINE_ENDINGS', 550, '5.6.0', 'Message contains bare CR, bare LF or NUL; lines must end with CRLF'),
  lookupFailed: (address: string, cause?: unknown) =>
    temporary('LOOKUP_FAILED', 451, '4.4.3', `<${address}>: Directory lookup failed, try again later`, cause),
  backendUnavailable: (cause?: unknown) =>
    temporary('BACKEND_UNAVAILABLE', 451, '4.4.1', 'Mailbox server unavailable, try again later', cause),
  storageFailed: (cause?: unknown) => temporary('STORAGE_FAILED', 451, '4.3.0', 'Mail store error, try again later', cause),
  shuttingDown: () => temporary('SHUTTING_DOWN', 421, '4.3.2', 'Service shutting down, try again later'),
  wrongGroup: (address: string) =>
    temporary('WRONG_GROUP', 451, '4.2.0', `<${address}>: Account is not served here right now, try again later`),
} as const;
