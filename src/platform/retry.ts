import { setTimeout as sleep } from 'node:timers/promises';

// Retrying a cloud call: the one backoff every adapter uses, the loop around it, and the error a call that failed
// for good ends with. Each adapter decides what is transient (`classify`) and what its final error names (`fail`).

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

/** What an adapter makes of one failed call to its cloud service. */
export interface CallFailure {
  /** The HTTP status, when the service answered. */
  status?: number;
  /** The service's error code, or the network error's name or code. */
  code: string;
  requestId?: string;
  /** The service's fine-grained error code, where it has one (OSS's EC). */
  ec?: string;
  detail: string;
  retryable: boolean;
}

/**
 * A cloud call that failed for good. Its message names the service, the operation and its target, the service's
 * error code, the answer (HTTP status, EC, request id) and the attempts made.
 */
export class CallError extends Error {
  readonly operation: string;
  readonly status?: number;
  readonly code: string;
  readonly requestId?: string;
  readonly attempts: number;
  readonly retryable: boolean;

  constructor(
    what: { service: string; target: string },
    init: { operation: string; attempts: number } & CallFailure,
    options?: { cause?: unknown },
  ) {
    const answer = [
      init.status !== undefined ? `HTTP ${init.status}` : undefined,
      init.ec ? `EC ${init.ec}` : undefined,
      init.requestId ? `request id ${init.requestId}` : 'no request id',
    ].filter((part) => part !== undefined);
    const attempts = `${init.attempts} attempt${init.attempts === 1 ? '' : 's'}`;
    super(
      `${what.service} ${init.operation}${what.target} failed after ${attempts}: ${init.code} (${answer.join(', ')}): ` +
        init.detail,
      options,
    );
    this.operation = init.operation;
    this.status = init.status;
    this.code = init.code;
    this.requestId = init.requestId;
    this.attempts = init.attempts;
    this.retryable = init.retryable;
  }
}
