/**
 * Errors with a stable `code` (what logs, tests and the CLI key on) and a text for people.
 * Two kinds: a MailError also carries its SMTP reply (basic + enhanced code) and says by it
 * whether trying again can help; an AdminError is an administration answer (NOT_FOUND,
 * ALREADY_EXISTS, ...) with no SMTP reply, since IMAP, JMAP and CLI clients have no use for
 * one. Infrastructure faults are always temporary MailErrors (4xx) so mail is retried,
 * never bounced by accident.
 */
export interface SmtpReply {
  code: number;
  enhanced: string;
  text: string;
}

// Brands, not instanceof: they survive duplicate installs of this package.
const CODED = Symbol.for('mailgrid.CodedError');
const MAIL = Symbol.for('mailgrid.MailError');
const ADMIN = Symbol.for('mailgrid.AdminError');
const branded = (err: unknown, brand: symbol) => typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[brand] === true;

/** What MailError and AdminError share. */
export abstract class CodedError extends Error {
  readonly [CODED] = true;

  constructor(
    /** Stable identifier for logs, tests and the CLI, e.g. `UNKNOWN_USER`, `NOT_FOUND`. */
    readonly code: string,
    /** For people, without any protocol's codes. */
    readonly text: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** Whether the same request may succeed later. */
  abstract get retryable(): boolean;

  static is(err: unknown): err is MailError | AdminError {
    return branded(err, CODED);
  }
}

export class MailError extends CodedError {
  readonly [MAIL] = true;
  override readonly name = 'MailError';

  constructor(
    code: string,
    readonly reply: SmtpReply,
    options?: { cause?: unknown },
  ) {
    super(code, reply.text, `${reply.code} ${reply.enhanced} ${reply.text}`, options);
  }

  /** 4xx: a retry may succeed. */
  get retryable(): boolean {
    return this.reply.code < 500;
  }

  static override is(err: unknown): err is MailError {
    return branded(err, MAIL);
  }
}

/** The codes of administration answers (gRPC's words for them, see protocol's status.ts). */
export const ADMIN_CODES = ['NOT_FOUND', 'ALREADY_EXISTS', 'INVALID_ARGUMENT', 'FAILED_PRECONDITION'] as const;
export type AdminCode = (typeof ADMIN_CODES)[number];

/** An administration answer (no such account, domain exists, bad script, ...): definite, never retried. */
export class AdminError extends CodedError {
  readonly [ADMIN] = true;
  override readonly name = 'AdminError';
  declare readonly code: AdminCode;

  constructor(code: AdminCode, text: string, options?: { cause?: unknown }) {
    super(code, text, text, options);
  }

  get retryable(): boolean {
    return false;
  }

  static override is(err: unknown): err is AdminError {
    return branded(err, ADMIN);
  }

  static isCode(code: unknown): code is AdminCode {
    return (ADMIN_CODES as readonly unknown[]).includes(code);
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
 * Any error as a MailError, where an SMTP reply must be given: a MailError stays itself,
 * anything else is an unexpected local fault and becomes a temporary `451 4.3.0` (an
 * AdminError too: it has no SMTP reply, and mail is never bounced for a fault).
 */
export function toMailError(err: unknown): MailError {
  if (MailError.is(err)) return err;
  return Replies.localError(err);
}

/** Any error as a coded one: a MailError or AdminError stays itself, anything else is `toMailError`'s 451. */
export function toCodedError(err: unknown): MailError | AdminError {
  return CodedError.is(err) ? err : Replies.localError(err);
}

/**
 * Every answer mailgrid gives, named once so every component answers alike. Refusals of mail
 * and sessions are MailErrors; acceptances are SMTP replies; administration answers are
 * AdminErrors. protocol's status.ts gives each `code` its gRPC status (a test checks that
 * every entry here has one).
 */
export const Replies = {
  // --- accepted ----------------------------------------------------------------------------
  /** The one 250 of a transaction: `how` is stored, queued, or stored and queued. */
  accepted: (how: 'stored' | 'queued' | 'stored and queued', id: string): SmtpReply => ({ code: 250, enhanced: '2.0.0', text: `Ok: ${how} as ${id}` }),
  storedAs: (folder: string, uid: number): SmtpReply => ({ code: 250, enhanced: '2.0.0', text: `Stored as ${folder}/${uid}` }),

  // --- addresses and recipients ------------------------------------------------------------
  unknownUser: (address: string) => permanent('UNKNOWN_USER', 550, '5.1.1', `<${address}>: Recipient address rejected: no such user`),
  relayDenied: (address: string) => permanent('RELAY_DENIED', 554, '5.7.1', `<${address}>: Relay access denied`),
  badAddress: (address: string) => permanent('BAD_ADDRESS', 553, '5.1.3', `<${address}>: Bad address syntax`),
  utf8Required: (address: string) =>
    permanent('SMTPUTF8_REQUIRED', 553, '5.6.7', `<${address}>: Non-ASCII address requires SMTPUTF8`),
  lookupFailed: (address: string, cause?: unknown) =>
    temporary('LOOKUP_FAILED', 451, '4.4.3', `<${address}>: Directory lookup failed, try again later`, cause),
  /** The directory entry exists but its value is malformed: deferred until an operator fixes it. */
  directoryEntryInvalid: (address: string) =>
    temporary('DIRECTORY_ENTRY_INVALID', 451, '4.4.3', `<${address}>: Directory entry is invalid, try again later`),
  /** A backend that does not know a recipient yet, while its directory is behind the sender's. */
  directoryBehind: (address: string) =>
    temporary('DIRECTORY_BEHIND', 451, '4.4.3', `<${address}>: Directory not yet current here, try again later`),
  noPostmaster: (address: string) =>
    temporary('NO_POSTMASTER', 451, '4.3.0', `<${address}>: No postmaster account is set here yet, try again later`),
  /** The account is on its way to another hosting group: its mail waits in the queues until the move is done. */
  accountMoving: (account: string) => temporary('ACCOUNT_MOVING', 451, '4.2.0', `<${account}>: Account is being moved, try again later`),
  wrongGroup: (address: string) =>
    temporary('WRONG_GROUP', 451, '4.2.0', `<${address}>: Account is not served here right now, try again later`),

  /** A MAIL or RCPT parameter this server did not advertise in EHLO (RFC 5321 §4.1.1.11, RFC 1869). */
  parameterNotOffered: (name: string) => permanent('PARAMETER_NOT_OFFERED', 555, '5.5.4', `${name} parameter not recognized or not implemented`),

  // --- messages ----------------------------------------------------------------------------
  messageTooBig: (max: number) => permanent('MESSAGE_TOO_BIG', 552, '5.3.4', `Message size exceeds fixed limit of ${max} bytes`),
  badLineEndings: () =>
    permanent('BAD_LINE_ENDINGS', 550, '5.6.0', 'Message contains bare CR, bare LF or NUL; lines must end with CRLF'),
  deliveryExpired: (last: SmtpReply) =>
    permanent('DELIVERY_EXPIRED', 554, '5.4.7', `Delivery time expired; last error: ${last.code} ${last.enhanced} ${last.text}`),
  noAnswer: () => temporary('NO_ANSWER', 451, '4.3.0', 'No answer for this recipient, try again later'),
  /** What the account's rules did with a message that was not stored (discard, redirect, reject). */
  disposedByRules: (actions: string): SmtpReply => ({ code: 250, enhanced: '2.0.0', text: `Handled by the account's rules: ${actions}` }),
  /** Handed to a queue taker (Submit), which now answers for it. */
  handedOver: (taker: string, reply: SmtpReply): SmtpReply => ({ code: 250, enhanced: '2.0.0', text: `Handed over to ${taker}: ${reply.text}` }),
  /** A rule's `reject` (RFC 5429), in the DSN to the sender. */
  rejectedByRules: (reason: string) => permanent('REJECTED_BY_RULES', 550, '5.7.1', `Rejected by the recipient's rules: ${reason.replace(/\s+/g, ' ').trim()}`),
  /** `mailgrid send --as` an address that is not an account here. */
  notAnAccount: (address: string) => permanent('NOT_AN_ACCOUNT', 553, '5.7.1', `<${address}>: Sender is not an account here`),
  /** A hand-over to a member that is not a queue taker (its mode changed meanwhile). */
  notTaking: () => temporary('NOT_TAKING', 451, '4.3.0', 'This node does not take other members\' mail now, try another'),
  /** A Submit call from neither a member nor the CLI sending as an account. */
  submitDenied: () => permanent('SUBMIT_DENIED', 554, '5.7.1', 'Submit takes mail from cluster members, or sent as an account'),
  /** Relay via the frontends with none live. */
  noFrontend: () => temporary('NO_FRONTEND', 451, '4.4.1', 'No frontend is live to relay through, try again later'),

  // --- access: authentication, submission, POP3 ----------------------------------------------
  /** The same for an unknown user and a wrong password (no enumeration). */
  authFailed: () => permanent('AUTH_FAILED', 535, '5.7.8', 'Authentication credentials invalid'),
  /** Too many failures from the client's address, on any frontend. */
  authLocked: () => temporary('AUTH_LOCKED', 454, '4.7.0', 'Too many failed authentications from your address, try again later'),
  authUnavailable: (cause?: unknown) => temporary('AUTH_UNAVAILABLE', 454, '4.7.0', 'Temporary authentication failure, try again later', cause),
  tlsRequired: () => permanent('TLS_REQUIRED', 530, '5.7.0', 'Must issue a STARTTLS command first'),
  authRequired: () => permanent('AUTH_REQUIRED', 530, '5.7.0', 'Authentication required'),
  /** An authenticated user sending as an address that is not its account or one of its aliases. */
  senderNotOwned: (address: string, user: string) => permanent('SENDER_NOT_OWNED', 553, '5.7.1', `<${address}>: Sender address is not owned by ${user}`),
  /** Another access session holds the mailbox (POP3 answers -ERR [IN-USE]). */
  mailboxInUse: (account: string) => temporary('MAILBOX_IN_USE', 450, '4.2.1', `Mailbox ${account} is in use by another session`),
  /** A session that failed `auth.maxFailures` logins is closed. */
  tooManyAuthFailures: () => temporary('TOO_MANY_AUTH_FAILURES', 421, '4.7.0', 'Too many failed authentications, closing connection'),
  /** The primary that served the session's mailbox changed or stopped: the next session goes to the new one. */
  mailboxChanged: () => temporary('MAILBOX_CHANGED', 421, '4.4.2', 'Mailbox server changed, please reconnect'),

  // --- sessions: what refuses or ends one, whatever its protocol -----------------------------
  /** Past the protocol's `maxClients`. */
  tooManyConnections: () => temporary('TOO_MANY_CONNECTIONS', 421, '4.7.0', 'Too many connections, try again later'),
  /** A client that talked before the greeting (an SMTP early talker). */
  earlyTalker: () => temporary('EARLY_TALKER', 421, '4.7.0', 'You talk too soon'),
  idleTimeout: () => temporary('IDLE_TIMEOUT', 421, '4.4.2', 'Idle for too long, closing connection'),
  /** A client that sends on without reading the answers (or a line without end). */
  tooMuchInput: () => permanent('TOO_MUCH_INPUT', 500, '5.5.6', 'Too much input without reading the answers'),

  // --- the system --------------------------------------------------------------------------
  localError: (cause?: unknown) => temporary('LOCAL_ERROR', 451, '4.3.0', 'Local error in processing, try again later', cause),
  backendUnavailable: (cause?: unknown) =>
    temporary('BACKEND_UNAVAILABLE', 451, '4.4.1', 'Mailbox server unavailable, try again later', cause),
  timeout: (what: string, cause?: unknown) => temporary('TIMEOUT', 451, '4.4.7', `${what} timed out, try again later`, cause),
  unimplemented: (what: string, cause?: unknown) =>
    temporary('UNIMPLEMENTED', 451, '4.3.0', `${what}: the service is not offered there, try again later`, cause),
  storageFailed: (cause?: unknown) => temporary('STORAGE_FAILED', 451, '4.3.0', 'Mail store error, try again later', cause),
  /** A peer out of resources that did not say which (a gRPC RESOURCE_EXHAUSTED without our metadata). */
  outOfResources: (what: string, cause?: unknown) => temporary('OUT_OF_RESOURCES', 452, '4.3.1', `${what}: out of resources there, try again later`, cause),
  queueFull: () => temporary('QUEUE_FULL', 452, '4.3.1', 'Insufficient system storage, try again later'),
  diskFull: () => temporary('DISK_FULL', 452, '4.3.1', 'Insufficient system storage, try again later'),
  duplicateQueueId: (id: string) => temporary('DUPLICATE_QUEUE_ID', 451, '4.3.0', `Queue id ${id} is taken, try again later`),
  shuttingDown: () => temporary('SHUTTING_DOWN', 421, '4.3.2', 'Service shutting down, try again later'),
  /** A delivery-channel request that does not add up: never a bounce, the sender tries again. */
  malformedRequest: (what: string) => temporary('MALFORMED_REQUEST', 451, '4.3.0', `Malformed delivery request (${what}), try again later`),
  /** A call fenced by a leader epoch that is not this node's current one. */
  notPrimary: (group: string) => temporary('NOT_PRIMARY', 451, '4.3.0', `This member is not the primary of hosting group ${group} now, try again later`),
  staleEpoch: (sent: number, current: number | undefined) =>
    temporary('STALE_EPOCH', 451, '4.3.0', `Epoch ${sent} is not current here (${current ?? 'none'}), try again later`),
  etcdUnavailable: (cause?: unknown) => temporary('ETCD_UNAVAILABLE', 451, '4.3.0', 'Cluster controller (etcd) unreachable, try again later', cause),

  // --- administration: AdminErrors, no SMTP reply ------------------------------------------
  invalidDomain: (domain: string) => new AdminError('INVALID_ARGUMENT', `invalid domain name: ${domain}`),
  invalidAddress: (address: string) => new AdminError('INVALID_ARGUMENT', `invalid address: ${address}`),
  noSuchDomain: (domain: string) => new AdminError('NOT_FOUND', `no such domain: ${domain}`),
  domainExists: (domain: string) => new AdminError('ALREADY_EXISTS', `domain ${domain} already exists`),
  domainHasAccounts: (domain: string) =>
    new AdminError('FAILED_PRECONDITION', `domain ${domain} still has accounts; remove them first`),
  domainNotHosted: (domain: string) =>
    new AdminError('FAILED_PRECONDITION', `domain ${domain} is not hosted; add it first with: mailgrid domain add ${domain}`),
  noSuchAccount: (address: string) => new AdminError('NOT_FOUND', `no such account: ${address}`),
  accountExists: (address: string) => new AdminError('ALREADY_EXISTS', `account ${address} already exists`),
  noSuchAlias: (alias: string) => new AdminError('NOT_FOUND', `no such alias: ${alias}`),
  aliasTaken: (alias: string) => new AdminError('ALREADY_EXISTS', `${alias} is already an account or an alias`),
  aliasTargetNotAccount: (target: string) => new AdminError('FAILED_PRECONDITION', `alias target ${target} is not an account`),
  groupRequired: () => new AdminError('INVALID_ARGUMENT', 'a hosting group is required (--group)'),
  noSuchGroup: (group: string) => new AdminError('FAILED_PRECONDITION', `no such hosting group: ${group}`),
  accountInOtherGroup: (account: string, group: string, here: string) =>
    new AdminError('FAILED_PRECONDITION', `account ${account} is in hosting group ${group}, not ${here}`),
  moveUnderWay: (account: string, to: string) =>
    new AdminError('FAILED_PRECONDITION', `a move of ${account} to ${to} is under way: finish it with --resume or undo it with --abort`),
  noMoveUnderWay: (account: string) => new AdminError('FAILED_PRECONDITION', `no move of ${account} is under way`),
  notMoving: (account: string, how: string) => new AdminError('FAILED_PRECONDITION', `${account} ${how}`),
  badScript: (reason: string) => new AdminError('INVALID_ARGUMENT', `rules refused (the old ones stay): ${reason}`),
  backupRefused: (reason: string) => new AdminError('FAILED_PRECONDITION', `backup refused: ${reason}`),
  badPasswordHash: () => new AdminError('INVALID_ARGUMENT', 'not a password hash mailgrid verifies (scrypt, argon2id, bcrypt, SHA512-CRYPT)'),
  noSuchMessage: (account: string, folder: string, uid: number) => new AdminError('NOT_FOUND', `no message ${uid} in ${account}/${folder}`),

  // --- mailboxes (IMAP): the session answers them by code ----------------------------------
  noSuchMailbox: (name: string) => new AdminError('NOT_FOUND', `no such mailbox: ${name}`),
  mailboxExists: (name: string) => new AdminError('ALREADY_EXISTS', `mailbox ${name} already exists`),
  mailboxRefused: (reason: string) => new AdminError('FAILED_PRECONDITION', reason),
  /** Over the account's storage limit: a definite refusal (a DSN at delivery, `[OVERQUOTA]` at APPEND). */
  overQuota: (account: string) => permanent('OVER_QUOTA', 552, '5.2.2', `<${account}>: Mailbox is over its storage quota`),
} as const;
