import * as grpc from '@grpc/grpc-js';
import { MailError, Replies, toMailError } from '@mailgrid/core';
import type { Outcome } from './generated/mailgrid/v1/Outcome.js';

/**
 * The one place where gRPC statuses and MailErrors meet. A MailError crosses the wire as
 * a status whose metadata carries its code and reply, so the other side rebuilds the same
 * error. A transport fault (UNAVAILABLE, DEADLINE_EXCEEDED, ...) is always temporary.
 */
const REPLY_KEY = 'x-mailgrid-reply';

export function toServiceError(err: unknown): Partial<grpc.StatusObject> {
  const mail = toMailError(err);
  const metadata = new grpc.Metadata();
  metadata.set(REPLY_KEY, JSON.stringify({ code: mail.code, reply: mail.reply }));
  return { code: statusFor(mail), details: mail.reply.text, metadata };
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

/**
 * A failed call as a MailError: the error the other side sent, or what the transport fault
 * means. Only a reply the peer sent can be permanent; every fault of the call itself is a 4xx.
 */
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
      return Replies.timeout(what, err);
    case grpc.status.UNIMPLEMENTED:
      return Replies.unimplemented(what, err);
    default:
      return Replies.backendUnavailable(err);
  }
}

/** How a delivery-channel result reports a refusal: the one MailError → Outcome mapping. */
export function outcomeOf(err: MailError): Extract<Outcome, 'TEMPORARY_FAILURE' | 'PERMANENT_FAILURE'> {
  return err.retryable ? 'TEMPORARY_FAILURE' : 'PERMANENT_FAILURE';
}
