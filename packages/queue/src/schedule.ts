/** When to try again (the `queue` settings of the config). */
export interface RetryPolicy {
  /** First retry after this long, doubling with each attempt up to maxRetryMs. */
  minRetryMs: number;
  maxRetryMs: number;
  /** A recipient still undelivered this long after it was queued is bounced. */
  lifetimeMs: number;
  /** One delay notice after this long (0: never). */
  delayWarningMs: number;
}

/** Exponential backoff with ±10% jitter, so retries of one outage do not arrive together. */
export function nextAttempt(policy: RetryPolicy, attempts: number, now: number, random = Math.random): number {
  const base = Math.min(policy.maxRetryMs, policy.minRetryMs * 2 ** Math.max(0, attempts - 1));
  return now + Math.round(base * (0.9 + 0.2 * random()));
}
