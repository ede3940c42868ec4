import * as grpc from '@grpc/grpc-js';
import { AdminError, MailError, Replies, toCodedError, type AdminCode } from '@mailgrid/core';
import type { Outcome } from './generated/mailgrid/v1/Outcome.js';

/**
 * The one place where gRPC statuses and mailgrid's errors meet. An error crosses the wire as
 * the status a generic gRPC client understands, and whole in `x-mailgrid-reply` metadata
 * (a MailError's code and SMTP reply, an AdminError's code and text), so mailgrid's own
 * clients rebuild it exactly.
 * Only UNAVAILABLE, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED invite a client to retry the
 * same call; mailgrid's clients go by the rebuilt error instead (the queue retries a 4xx
 * later, after routing the mail again).
 */
const REPLY_KEY = 'x-mailgrid-reply';
const { status } = grpc;
/** Metadata values must be printable ASCII (grpc-js throws otherwise): the rest as JSON \u escapes. */
const asciiJson = (value: object) => JSON.stringify(value).replace(/[^ -~]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/** Administration answers: their codes are gRPC's own words. */
const ADMIN_STATUS: Record<AdminCode, grpc.status> = {
  NOT_FOUND: status.NOT_FOUND,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
};

/**
 * The status of every code in `Replies` (status.test.ts fails for a code missing here).
 * UNAVAILABLE: a passing fault, the same call may work soon. FAILED_PRECONDITION: the
 * caller must first learn something new (where the account or the primary is now) or an
 * operator must act; repeating the call at the same node cannot help.
 */
export const STATUS_OF_CODE: Readonly<Record<string, grpc.status>> = {
  ...ADMIN_STATUS,
  // addresses and recipients
  UNKNOWN_USER: status.NOT_FOUND,
  RELAY_DENIED: status.PERMISSION_DENIED,
  BAD_ADDRESS: status.INVALID_ARGUMENT,
  SMTPUTF8_REQUIRED: status.INVALID_ARGUMENT,
  LOOKUP_FAILED: status.UNAVAILABLE,
  // Until an operator fixes the entry.
  DIRECTORY_ENTRY_INVALID: status.FAILED_PRECONDITION,
  // This member's directory catches up by itself.
  DIRECTORY_BEHIND: status.UNAVAILABLE,
  NO_POSTMASTER: status.FAILED_PRECONDITION,
  // The account is (or is about to be) served by another group: route again.
  ACCOUNT_MOVING: status.FAILED_PRECONDITION,
  WRONG_GROUP: status.FAILED_PRECONDITION,
  PARAMETER_NOT_OFFERED: status.INVALID_ARGUMENT,
  // messages
  // Not RESOURCE_EXHAUSTED: the same message never fits.
  MESSAGE_TOO_BIG: status.INVALID_ARGUMENT,
  BAD_LINE_ENDINGS: status.INVALID_ARGUMENT,
  // The queue gave up: a final answer (it travels in results and DSNs, not as a call's error).
  DELIVERY_EXPIRED: status.FAILED_PRECONDITION,
  NO_ANSWER: status.UNAVAILABLE,
  REJECTED_BY_RULES: status.PERMISSION_DENIED,
  NOT_AN_ACCOUNT: status.PERMISSION_DENIED,
  // Its submit mode changed: the caller must find a member that takes mail now.
  NOT_TAKING: status.FAILED_PRECONDITION,
  SUBMIT_DENIED: status.PERMISSION_DENIED,
  NO_FRONTEND: status.UNAVAILABLE,
  // access
  AUTH_FAILED: status.UNAUTHENTICATED,
  // A lockout per client address: a quota that runs out, as rate limits do.
  AUTH_LOCKED: status.RESOURCE_EXHAUSTED,
  AUTH_UNAVAILABLE: status.UNAVAILABLE,
  // The client must secure the connection first.
  TLS_REQUIRED: status.FAILED_PRECONDITION,
  AUTH_REQUIRED: status.UNAUTHENTICATED,
  SENDER_NOT_OWNED: status.PERMISSION_DENIED,
  // Another session holds the lock: a conflict, retried (if at all) by whoever decides to open the mailbox again.
  MAILBOX_IN_USE: status.ABORTED,
  TOO_MANY_AUTH_FAILURES: status.UNAUTHENTICATED,
  MAILBOX_CHANGED: status.FAILED_PRECONDITION,
  // Until the user makes room: not a limit that clears by itself.
  OVER_QUOTA: status.FAILED_PRECONDITION,
  // sessions
  TOO_MANY_CONNECTIONS: status.RESOURCE_EXHAUSTED,
  EARLY_TALKER: status.FAILED_PRECONDITION,
  // A new session works.
  IDLE_TIMEOUT: status.UNAVAILABLE,
  TOO_MUCH_INPUT: status.INVALID_ARGUMENT,
  // the system: passing faults
  LOCAL_ERROR: status.UNAVAILABLE,
  BACKEND_UNAVAILABLE: status.UNAVAILABLE,
  TIMEOUT: status.DEADLINE_EXCEEDED,
  UNIMPLEMENTED: status.UNIMPLEMENTED,
  STORAGE_FAILED: status.UNAVAILABLE,
  OUT_OF_RESOURCES: status.RESOURCE_EXHAUSTED,
  QUEUE_FULL: status.RESOURCE_EXHAUSTED,
  DISK_FULL: status.RESOURCE_EXHAUSTED,
  // The sender must pick another id.
  DUPLICATE_QUEUE_ID: status.ALREADY_EXISTS,
  SHUTTING_DOWN: status.UNAVAILABLE,
  // Sent again unchanged, it is refused again.
  MALFORMED_REQUEST: status.INVALID_ARGUMENT,
  NOT_PRIMARY: status.FAILED_PRECONDITION,
  STALE_EPOCH: status.FAILED_PRECONDITION,
  ETCD_UNAVAILABLE: status.UNAVAILABLE,
};

/** A code this build does not know (a newer peer's) goes by whether a retry can help. */
export function statusFor(err: MailError | AdminError): grpc.status {
  return STATUS_OF_CODE[err.code] ?? (err.retryable ? status.UNAVAILABLE : status.FAILED_PRECONDITION);
}

export function toServiceError(err: unknown): Partial<grpc.StatusObject> {
  const e = toCodedError(err);
  const metadata = new grpc.Metadata();
  metadata.set(REPLY_KEY, asciiJson(MailError.is(e) ? { code: e.code, reply: e.reply } : { code: e.code, text: e.text }));
  return { code: statusFor(e), details: e.text, metadata };
}

/**
 * A failed call as the error the other side sent (a MailError or an AdminError), or what
 * the transport fault means. Only an answer the peer sent can be permanent; every fault of
 * the call itself is a temporary MailError.
 */
export function fromServiceError(err: unknown, what = 'remote call'): MailError | AdminError {
  const e = err as Partial<grpc.ServiceError>;
  const carried = e.metadata?.get(REPLY_KEY)?.[0];
  if (typeof carried === 'string') {
    try {
      const { code, text, reply } = JSON.parse(carried);
      if (reply) return new MailError(code, reply, { cause: err });
      if (AdminError.isCode(code) && typeof text === 'string') return new AdminError(code, text, { cause: err });
    } catch {
      // fall through to the status
    }
  }
  switch (e.code) {
    case status.DEADLINE_EXCEEDED:
      return Replies.timeout(what, err);
    case status.RESOURCE_EXHAUSTED:
      return Replies.outOfResources(what, err);
    case status.UNIMPLEMENTED:
      return Replies.unimplemented(what, err);
    default:
      return Replies.backendUnavailable(err);
  }
}

/** How a delivery-channel result reports a refusal: the one MailError → Outcome mapping. */
export function outcomeOf(err: MailError): Extract<Outcome, 'TEMPORARY_FAILURE' | 'PERMANENT_FAILURE'> {
  return err.retryable ? 'TEMPORARY_FAILURE' : 'PERMANENT_FAILURE';
}
