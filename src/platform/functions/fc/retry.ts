import { CallError, type CallFailure, type RetryPolicy, retrying } from '../../retry.js';

// How the FC adapter tells a failure worth retrying from one to report, and how it retries. The FC SDK (through
// @alicloud/openapi-core) throws, for an answer of 4xx/5xx, a ClientError, ServerError or ThrottlingError carrying
// `statusCode`, `code` (FC's error code, e.g. FunctionNotFound) and `requestId`; for no answer at all, the network
// error: httpx's `RequestTimeoutError` (connect or read timeout) or Node's ECONNRESET, ECONNREFUSED, ….
//
// Why not the SDK's own retries (RuntimeOptions.autoretry / Config.retryOptions): they match exceptions by name and
// error code lists only, so a 503 without a listed code is not retried while a listed code is retried on any
// operation; they are not jittered unless configured per condition; and the error that escapes names neither the
// operation nor the function. Here every request is retried by one rule (throttling, 5xx, timeouts, broken
// connections), and the error says what failed, on which function, with FC's code and request id.

/** FC error codes that describe a passing condition on FC's side, whatever the HTTP status. */
const TRANSIENT_CODES = new Set(['ResourceThrottled', 'Throttling', 'ServiceUnavailable', 'InternalServerError']);

/** httpx's name for a connect or read timeout, and Node's codes for connections that broke or never came up. */
const NETWORK_ERRORS = new Set([
  'RequestTimeoutError',
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

const text = (value: unknown) => (typeof value === 'string' && value !== '' ? value : undefined);

/** What an error thrown by the FC SDK says, normalized; its code is FC's (FunctionNotFound, ResourceThrottled, …). */
export function describeFailure(err: unknown): CallFailure {
  const e = (typeof err === 'object' && err !== null ? err : { message: String(err) }) as Record<string, unknown>;
  const status = typeof e.statusCode === 'number' && e.statusCode > 0 ? e.statusCode : undefined;
  const name = text(e.name) ?? 'Error';
  const code = text(e.code) ?? name;
  const data = (typeof e.data === 'object' && e.data !== null ? e.data : {}) as Record<string, unknown>;
  // The SDK's message repeats the status and the request id ("code: 404, <FC's message> request id: …"); FC's own
  // message is in the error body.
  const detail = (text(data.Message) ?? text(data.message) ?? text(e.message) ?? name).split('\n')[0].slice(0, 300);
  // A body that is not JSON (a proxy's HTML error page) surfaces as a SyntaxError without a status: a passing fault.
  const retryable =
    status === 429 ||
    (status !== undefined && status >= 500) ||
    TRANSIENT_CODES.has(code) ||
    (status === undefined && (NETWORK_ERRORS.has(name) || NETWORK_ERRORS.has(code) || name === 'SyntaxError'));
  return {
    status,
    code,
    requestId: text(e.requestId) ?? text(data.RequestId) ?? text(data.requestId),
    detail,
    retryable,
  };
}

/** A failed FC operation: its message names the operation, the function, FC's error code and the request id. */
export class FcError extends CallError {
  readonly functionName?: string;

  constructor(
    init: { operation: string; functionName?: string; attempts: number } & CallFailure,
    options?: { cause?: unknown },
  ) {
    super({ service: 'FC', target: init.functionName ? ` of ${init.functionName}` : '' }, init, options);
    this.name = 'FcError';
    this.functionName = init.functionName;
  }
}

/**
 * Runs one FC request, again after a transient failure up to the policy's attempts. `request` must be safe to
 * repeat: a create whose answer was lost comes back as "already exists", a delete as "not found", which the callers
 * take as success. Anything else, or the last failure, is thrown as an FcError.
 */
export function withRetries<T>(
  policy: RetryPolicy,
  what: { operation: string; functionName?: string },
  request: () => Promise<T>,
): Promise<T> {
  return retrying(policy, request, describeFailure, (failure, attempts, cause) => {
    return new FcError({ ...what, ...failure, attempts }, { cause });
  });
}
