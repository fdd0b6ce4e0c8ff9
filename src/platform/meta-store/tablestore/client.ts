import http from 'node:http';
import https from 'node:https';
import protobuf from 'protobufjs';
import TableStore from 'tablestore';
import { backoffMs } from '../../retry.js';

// Calls to Tablestore through the official SDK, with this adapter's own retry policy and errors.
//
// The SDK's retries are switched off (maxRetries 0): its policy matches error codes that its error parser never
// produces (it looks for an XML parser that the SDK doesn't ship, so an error's `code` is the bare HTTP status), and
// it retries writes on no condition at all. Here the raw response is read instead: Tablestore answers errors with a
// protobuf `Error { code, message }` body, which names the error exactly.

export type Operation =
  | 'CreateTable'
  | 'ListTable'
  | 'DescribeTable'
  | 'GetRow'
  | 'PutRow'
  | 'UpdateRow'
  | 'DeleteRow'
  | 'GetRange'
  | 'BatchGetRow'
  | 'BatchWriteRow';

/** What one failed attempt tells: the error, whether another attempt may help, and whether it may have been applied. */
export interface Failure {
  code: string;
  message: string;
  httpStatus?: number;
  retryable: boolean;
  /** The request may have been carried out although it failed (a timeout, a lost response, a 5xx). */
  mayHaveApplied: boolean;
}

/** Errors that mean the request was turned away before it was carried out, and that waiting helps. */
const REJECTED_RETRYABLE = new Set([
  'OTSServerBusy',
  'OTSNotEnoughCapacityUnit',
  'OTSOperationThrottled',
  'OTSTooFrequentReservedThroughputAdjustment',
  'OTSRowOperationConflict',
  'OTSTableNotReady',
]);

/** Errors after which the request's outcome is unknown, and that another attempt may overcome. */
const UNKNOWN_RETRYABLE = new Set([
  'OTSTimeout',
  'OTSInternalServerError',
  'OTSServerUnavailable',
  'OTSPartitionUnavailable',
]);

const AUTH_ERRORS = new Set(['OTSAuthFailed', 'OTSNoPermissionAccess']);

export const CONDITION_FAILED = 'OTSConditionCheckFail';

/** A Tablestore call that failed for good, naming the operation and table. */
export class MetaStoreError extends Error {
  override readonly name = 'MetaStoreError';
  readonly operation: string;
  readonly table: string | undefined;
  readonly code: string;
  readonly httpStatus: number | undefined;
  readonly retryable: boolean;
  readonly attempts: number;
  /** Some attempt may have been carried out: the write may have happened although the call failed. */
  readonly mayHaveApplied: boolean;

  constructor(
    operation: string,
    table: string | undefined,
    failure: Failure,
    attempts: number,
    mayHaveApplied: boolean,
  ) {
    const where = table === undefined ? `Tablestore ${operation}` : `Tablestore ${operation} on table ${table}`;
    const status = failure.httpStatus === undefined ? '' : ` (HTTP ${failure.httpStatus})`;
    const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
    const hint = AUTH_ERRORS.has(failure.code)
      ? '; check ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET and SDFLOW_TABLESTORE_INSTANCE'
      : '';
    super(`${where} failed${tries}: ${failure.code}${status}: ${failure.message}${hint}`);
    this.operation = operation;
    this.table = table;
    this.code = failure.code;
    this.httpStatus = failure.httpStatus;
    this.retryable = failure.retryable;
    this.attempts = attempts;
    this.mayHaveApplied = mayHaveApplied;
  }
}

export const isConditionFailure = (err: unknown): err is MetaStoreError =>
  err instanceof MetaStoreError && err.code === CONDITION_FAILED;

/** Decodes Tablestore's protobuf error body: `message Error { required string code = 1; optional string message = 2; }`. */
export function decodeErrorBody(body: Buffer): { code?: string; message?: string } {
  const decoded: { code?: string; message?: string } = {};
  try {
    const reader = protobuf.Reader.create(body);
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      const field = tag >>> 3;
      if (field === 1 && (tag & 7) === 2) decoded.code = reader.string();
      else if (field === 2 && (tag & 7) === 2) decoded.message = reader.string();
      else reader.skipType(tag & 7);
    }
  } catch {
    // Not a protobuf error body (a proxy's page, say): the HTTP status speaks for it.
    return {};
  }
  return decoded;
}

/** Classifies one failed attempt from the SDK's error and the raw HTTP response. */
export function classify(err: TableStore.SdkError, httpStatus: number | undefined, body: Buffer | undefined): Failure {
  if (httpStatus === undefined) {
    // No response: the connection failed or the SDK's socket timeout fired (both reported as NetworkingError).
    const network = err.code === 'NetworkingError' || err.code === 'TimeoutError';
    return {
      code: network ? 'NetworkingError' : String(err.code ?? 'ClientError'),
      message: err.message,
      retryable: network,
      mayHaveApplied: network,
    };
  }
  if (httpStatus < 300) {
    return { code: 'MalformedResponse', message: err.message, httpStatus, retryable: false, mayHaveApplied: true };
  }
  const decoded = body && body.length > 0 ? decodeErrorBody(body) : {};
  const code = decoded.code ?? `HTTP${httpStatus}`;
  const message = decoded.message ?? (body && body.length > 0 ? body.toString('utf8').slice(0, 200) : 'no details');
  const failure = (retryable: boolean, mayHaveApplied: boolean): Failure => ({
    code,
    message,
    httpStatus,
    retryable,
    mayHaveApplied,
  });
  if (REJECTED_RETRYABLE.has(code)) return failure(true, false);
  // Quota errors are final, except the throttling of table operations.
  if (code === 'OTSQuotaExhausted') return failure(/too frequent/i.test(message), false);
  if (UNKNOWN_RETRYABLE.has(code)) return failure(true, true);
  if (decoded.code === undefined) {
    if (httpStatus === 429) return failure(true, false);
    if (httpStatus >= 500) return failure(true, true);
  }
  return failure(false, false);
}

/** Errors of single rows inside a batch (BatchWriteRow, BatchGetRow) are classified by code alone. */
export function rowFailure(code: string, message: string): Failure {
  if (REJECTED_RETRYABLE.has(code)) return { code, message, retryable: true, mayHaveApplied: false };
  if (UNKNOWN_RETRYABLE.has(code)) return { code, message, retryable: true, mayHaveApplied: true };
  return { code, message, retryable: false, mayHaveApplied: false };
}

export interface CallerSettings {
  endpoint: string;
  instance: string;
  accessKeyId: string;
  accessKeySecret: string;
  securityToken?: string;
  /** Per attempt: the socket may stay idle this long before the attempt counts as timed out. */
  timeoutMs: number;
  maxAttempts: number;
  /** Exponential backoff with jitter: the first retry waits about retryBaseMs, then twice as long each time. */
  retryBaseMs: number;
  retryMaxMs: number;
}

type Send<T> = (client: TableStore.Client, done: TableStore.Callback<T>) => void;

type Outcome<T> = { ok: true; data: T } | { ok: false; failure: Failure };

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class TablestoreCaller {
  private readonly client: TableStore.Client;
  private readonly agent: http.Agent;

  constructor(private readonly settings: CallerSettings) {
    // An agent of our own, so close() can let go of the kept-alive sockets.
    this.agent = settings.endpoint.startsWith('https:')
      ? new https.Agent({ keepAlive: true })
      : new http.Agent({ keepAlive: true });
    this.client = new TableStore.Client({
      accessKeyId: settings.accessKeyId,
      secretAccessKey: settings.accessKeySecret,
      ...(settings.securityToken ? { stsToken: settings.securityToken } : {}),
      endpoint: settings.endpoint,
      instancename: settings.instance,
      maxRetries: 0,
      httpOptions: { timeout: settings.timeoutMs, agent: this.agent },
    });
  }

  /**
   * Calls one operation, retrying what retrying can fix, with exponential backoff and jitter, up to maxAttempts.
   * `check` inspects a successful response for failures inside it (the rows of a batch).
   */
  async call<T>(
    operation: Operation,
    table: string | undefined,
    send: Send<T>,
    check?: (data: T) => Failure | undefined,
  ) {
    let mayHaveApplied = false;
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.attempt(send);
      const failure = outcome.ok ? check?.(outcome.data) : outcome.failure;
      if (outcome.ok && failure === undefined) return outcome.data;
      const failed = failure!;
      mayHaveApplied ||= failed.mayHaveApplied;
      if (!failed.retryable || attempt >= this.settings.maxAttempts) {
        throw new MetaStoreError(operation, table, failed, attempt, mayHaveApplied);
      }
      await sleep(this.backoff(attempt));
    }
  }

  close(): void {
    this.agent.destroy();
  }

  private attempt<T>(send: Send<T>): Promise<Outcome<T>> {
    return new Promise((resolve) => {
      try {
        // The SDK calls back with the response as `this`: the raw status and body that name the error.
        send(this.client, function (this: TableStore.Response, err, data) {
          if (!err) return resolve({ ok: true, data });
          const response = this.httpResponse ?? {};
          resolve({ ok: false, failure: classify(err, response.statusCode, response.body) });
        });
      } catch (err) {
        resolve({
          ok: false,
          failure: { code: 'ClientError', message: (err as Error).message, retryable: false, mayHaveApplied: false },
        });
      }
    });
  }

  private backoff(attempt: number): number {
    const { maxAttempts, retryBaseMs, retryMaxMs } = this.settings;
    return backoffMs({ maxAttempts, baseDelayMs: retryBaseMs, maxDelayMs: retryMaxMs }, attempt);
  }
}
