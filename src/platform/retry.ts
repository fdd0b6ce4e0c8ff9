import { setTimeout as sleep } from 'node:timers/promises';

// Retrying a cloud call: the one backoff every adapter uses, and the loop around it. Each adapter decides what is
// transient (`classify`) and how its final error reads (`fail`).

export interface RetryPolicy {
  maxAttempts: number;
  /** The first backoff; each further one doubles, up to maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
}

/** Exponential backoff with jitter: between half and all of base × 2^(attempt-1), capped. */
export function backoffMs(policy: RetryPolicy, attempt: number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/**
 * Runs `request` until it succeeds, its failure is not retryable, or the attempts run out; then throws what `fail`
 * makes of the last failure. `request` must be safe to repeat.
 */
export async function retrying<T, F extends { retryable: boolean }>(
  policy: RetryPolicy,
  request: (attempt: number) => Promise<T>,
  classify: (err: unknown) => F,
  fail: (failure: F, attempts: number, cause: unknown) => Error,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await request(attempt);
    } catch (err) {
      const failure = classify(err);
      if (!failure.retryable || attempt >= policy.maxAttempts) throw fail(failure, attempt, err);
      await sleep(backoffMs(policy, attempt));
    }
  }
}
