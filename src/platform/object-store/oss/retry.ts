import { CallError, type CallFailure, type RetryPolicy, retrying } from '../../retry.js';

// How the OSS adapter tells a failure worth retrying from one to report, and how it retries. ali-oss throws plain
// Errors: those built from an OSS answer carry `status`, `code` (OSS's error code), `requestId` and `ecCode`; those
// from the network (urllib) carry the error's `name` (ResponseTimeoutError, ResponseError, …) and, when no answer
// came at all, a `status` of -1 (connection) or -2 (timeout).

/** OSS error codes that describe a passing condition on OSS's side, whatever the HTTP status. */
const TRANSIENT_CODES = new Set([
  'SlowDown',
  'ServiceUnavailable',
  'InternalError',
  'RequestTimeout',
  'TooManyRequests',
]);

/** urllib's names (and Node's codes) for a request that got no answer: timeouts, resets, refused connections. */
const NETWORK_ERRORS = new Set([
  'ResponseTimeoutError',
  'ConnectionTimeoutError',
  'SocketAssignTimeoutError',
  'RequestError',
  'ResponseError',
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
]);

const text = (value: unknown) => (typeof value === 'string' && value !== '' ? value : undefined);

/** What an error thrown by ali-oss says, normalized; its code is OSS's (AccessDenied, SlowDown, …). */
function describe(err: unknown): CallFailure {
  const e = (typeof err === 'object' && err !== null ? err : { message: String(err) }) as Record<string, unknown>;
  const status = typeof e.status === 'number' && e.status > 0 ? e.status : undefined;
  const name = text(e.name) ?? 'Error';
  const code = text(e.code) ?? name;
  // urllib appends the request, the agent's state and the headers to its messages, and ali-oss some advice: the
  // first clause is the news. ali-oss says UnknownError when the answer had no error body to read, which is always
  // the case for HEAD without OSS's x-oss-err header and for streamed downloads (it discards their bodies).
  const detail =
    name === 'UnknownError'
      ? 'the answer carried no error body to read'
      : (text(e.message) ?? name)
          .split('\n')[0]
          .replace(/, [A-Z]+ https?:\/\/\S+ -?\d+ \(connected:.*$/, '')
          .split(', please')[0]
          .slice(0, 300);
  const retryable =
    status === 429 ||
    (status !== undefined && status >= 500) ||
    TRANSIENT_CODES.has(code) ||
    (status === undefined && (NETWORK_ERRORS.has(name) || NETWORK_ERRORS.has(code)));
  return { status, code, requestId: text(e.requestId), ec: text(e.ecCode), detail, retryable };
}

/** A failed OSS operation: its message names the operation, the object, OSS's error code and the request id. */
export class ObjectStoreError extends CallError {
  readonly bucket: string;
  readonly key: string;

  constructor(
    init: { operation: string; bucket: string; key: string; attempts: number } & CallFailure,
    options?: { cause?: unknown },
  ) {
    super({ service: 'OSS', target: ` of ${init.bucket}/${init.key}` }, init, options);
    this.name = 'ObjectStoreError';
    this.bucket = init.bucket;
    this.key = init.key;
  }
}

export function withRetries<T>(
  policy: RetryPolicy,
  what: { operation: string; bucket: string; key: string },
  request: (attempt: number) => Promise<T>,
): Promise<T> {
  return retrying(policy, request, describe, (failure, attempts, cause) => {
    return new ObjectStoreError({ ...what, ...failure, attempts }, { cause });
  });
}
