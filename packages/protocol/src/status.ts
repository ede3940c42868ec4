import * as grpc from '@grpc/grpc-js';
import { MailError, Replies, permanent, temporary, toMailError } from '@mailgrid/core';

/**
 * The one place where gRPC statuses and MailErrors meet. A MailError crosses the wire as
 * a status whose metadata carries its reply, so the other side rebuilds the same error.
 * A transport fault (UNAVAILABLE, DEADLINE_EXCEEDED, ...) is always temporary.
 */
const REPLY_KEY = 'x-mailgrid-reply';

export function toServiceError(err: unknown): Partial<grpc.StatusObject> {
  const mail = toMailError(err);
  const metadata = new grpc.Metadata();
  metadata.set(REPLY_KEY, JSON.stringify({ code: mail.code, reply: mail.reply }));
  return {
    code: statusFor(mail),
    details: mail.reply.text,
    metadata,
  };
}

function statusFor(err: MailError): grpc.status {
  switch (err.code) {
    case 'NOT_FOUND':
    case 'UNKNOWN_USER':
      return grpc.status.NOT_FOUND;
    case 'ALREADY_EXISTS':
      return grpc.status.ALREADY_EXISTS;
    case 'BAD_ADDRESS':
    case 'INVALID_ARGUMENT':
      return grpc.status.INVALID_ARGUMENT;
    case 'FAILED_PRECONDITION':
      return grpc.status.FAILED_PRECONDITION;
    default:
      return err.retryable ? grpc.status.UNAVAILABLE : grpc.status.FAILED_PRECONDITION;
  }
}

export function fromServiceError(err: unknown, what = 'remote call'): MailError {
  const e = err as Partial<grpc.ServiceError>;
  const carried = e.metadata?.get(REPLY_KEY)?.[0];
  if (typeof carried === 'string') {
    try {
      const { code, reply } = JSON.parse(carried);
      return new MailError(code, reply, { cause: err });
    } catch {
      // fall through to the status
    }
  }
  switch (e.code) {
    case grpc.status.DEADLINE_EXCEEDED:
      return temporary('TIMEOUT', 451, '4.4.7', `${what} timed out, try again later`, err);
    case grpc.status.INVALID_ARGUMENT:
      return permanent('INVALID_ARGUMENT', 501, '5.5.4', e.details || `${what}: invalid argument`, err);
    case grpc.status.NOT_FOUND:
      return permanent('NOT_FOUND', 550, '5.1.0', e.details || `${what}: not found`, err);
    default:
      return Replies.backendUnavailable(err);
  }
}

/** A MailError for a domain-level answer that is not an SMTP reply (admin calls). */
export function notFound(text: string): MailError {
  return permanent('NOT_FOUND', 550, '5.1.0', text);
}
export function alreadyExists(text: string): MailError {
  return permanent('ALREADY_EXISTS', 550, '5.0.0', text);
}
export function invalidArgument(text: string): MailError {
  return permanent('INVALID_ARGUMENT', 501, '5.5.4', text);
}
export function failedPrecondition(text: string): MailError {
  return permanent('FAILED_PRECONDITION', 550, '5.0.0', text);
}
