import { MailError, toMailError } from '@mailgrid/core';

/**
 * What a policy or routing step decides. Steps return verdicts; `toSmtpError` below is the
 * one place that turns them into smtp-server replies.
 */
export type Verdict<T = undefined> =
  | { kind: 'accept'; value: T }
  | { kind: 'reject'; error: MailError }
  | { kind: 'tempfail'; error: MailError };

export function accept<T>(value: T): Verdict<T> {
  return { kind: 'accept', value };
}

/** A refusal; whether it is final follows from the error's reply code. */
export function refuse<T = never>(error: MailError): Verdict<T> {
  return { kind: error.retryable ? 'tempfail' : 'reject', error };
}

export type SmtpError = Error & { responseCode: number };

/** The reply smtp-server sends for a refusal: basic code, then our enhanced code and text. */
export function toSmtpError(err: unknown): SmtpError {
  const { reply } = toMailError(err);
  return Object.assign(new Error(`${reply.enhanced} ${reply.text}`), { responseCode: reply.code });
}

/** Settles an smtp-server callback from a verdict. */
export function answer<T>(verdict: Verdict<T>, callback: (err?: Error | null, message?: string) => void, message?: string): void {
  if (verdict.kind === 'accept') callback(null, message);
  else callback(toSmtpError(verdict.error));
}

/** Runs a step with a deadline; a step that does not answer in time fails soft (4xx). */
export async function withTimeout<T>(work: Promise<T>, ms: number, onTimeout: () => MailError): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(onTimeout()), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
