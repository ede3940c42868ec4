import { toMailError, type MailError } from '@mailgrid/core';

/**
 * What a routing or policy step decides. Steps return verdicts; a refusal carries its
 * reply (from the one table, `Replies`), which the listener hands back as it is.
 */
export type Verdict<T = undefined> =
  | { kind: 'accept'; value: T }
  | { kind: 'reject'; error: MailError }
  | { kind: 'tempfail'; error: MailError };

export function accept<T>(value: T): Verdict<T> {
  return { kind: 'accept', value };
}

/** A refusal; whether it is final follows from the error's reply code. */
export function refuse<T = never>(error: unknown): Verdict<T> {
  const e = toMailError(error);
  return { kind: e.retryable ? 'tempfail' : 'reject', error: e };
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
