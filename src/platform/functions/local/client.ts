import type { IncomingMessage } from 'node:http';
import { openRequest, readResponse } from '../../../http-client.js';
import { errorMessage, networkReason } from '../../../http-util.js';
import { type AgentEvent, decodeEvents, invokeEvents } from '../../../protocol/events.js';
import type { InvokeRequest } from '../../../protocol/invoke.js';
import {
  FunctionNotFoundError,
  type FunctionRuntime,
  type FunctionSpec,
  FunctionUnavailableError,
  type InvokeOptions,
  type PassthroughRequest,
  type PassthroughResponse,
  type RuntimeFunction,
} from '../port.js';

// The FunctionRuntime port over HTTP to `sdflow runtime`. The worker and the API use it; they never touch instance
// processes themselves.

/** Set on the runtime's own error answers, so a passthrough client can tell them from SD's answers. */
export const RUNTIME_ERROR_HEADER = 'x-sdflow-runtime-error';

export interface LocalFunctionRuntimeOptions {
  /** The runtime's base URL (config.runtime.url). */
  url: string;
  /** Timeout of the management calls (ensure, list, delete, restart). */
  timeoutMs?: number;
  /** Timeout of one passthrough call, which may wait for an instance to start. */
  passthroughTimeoutMs?: number;
}

/** The message of the runtime's error answer: its JSON `message`, else the start of its text. */
function errorText(body: Buffer, statusText = ''): string {
  const text = body.toString('utf8');
  try {
    const body = JSON.parse(text) as { message?: unknown };
    if (typeof body.message === 'string') return body.message;
  } catch {
    // Not JSON: use the text as is.
  }
  return text.slice(0, 300) || statusText;
}

async function responseErrorText(res: IncomingMessage): Promise<string> {
  return errorText(await readResponse(res).catch(() => Buffer.alloc(0)), res.statusMessage);
}

async function fetchErrorText(res: Response): Promise<string> {
  return errorText(Buffer.from(await res.arrayBuffer().catch(() => new ArrayBuffer(0))), res.statusText);
}

export class LocalFunctionRuntime implements FunctionRuntime {
  private readonly url: string;
  private readonly timeoutMs: number;
  private readonly passthroughTimeoutMs: number;

  constructor(options: LocalFunctionRuntimeOptions) {
    this.url = options.url.replace(/\/$/, '');
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.passthroughTimeoutMs = options.passthroughTimeoutMs ?? 600_000;
  }

  private fnPath(name: string, rest = ''): string {
    return `${this.url}/functions/${encodeURIComponent(name)}${rest}`;
  }

  /**
   * One request to the runtime. The caller's abort stays an abort; a timeout or a connection failure becomes
   * FunctionUnavailableError.
   */
  private async send(url: string, init: RequestInit, signal: AbortSignal, caller?: AbortSignal): Promise<Response> {
    try {
      return await fetch(url, { ...init, signal });
    } catch (err) {
      if (caller?.aborted) throw err;
      const cause = (err as { cause?: { code?: string } }).cause?.code;
      const reason = signal.aborted ? 'timed out' : (cause ?? (err as Error).message);
      throw new FunctionUnavailableError(`function runtime at ${this.url} unreachable: ${reason}`);
    }
  }

  /** A management call: JSON in and out, with the call's timeout. */
  private async call(method: string, url: string, body: unknown, functionName?: string): Promise<unknown> {
    const signal = AbortSignal.timeout(this.timeoutMs);
    const res = await this.send(
      url,
      {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      },
      signal,
    );
    if (res.status === 404 && functionName !== undefined) {
      await res.body?.cancel();
      throw new FunctionNotFoundError(functionName);
    }
    if (res.status >= 500) throw new FunctionUnavailableError(await fetchErrorText(res));
    if (!res.ok) throw new Error(`function runtime answered ${res.status}: ${await fetchErrorText(res)}`);
    return res.json();
  }

  async ensureFunction(spec: FunctionSpec): Promise<void> {
    await this.call('PUT', this.fnPath(spec.functionName), { model: spec.model, resources: spec.resources ?? {} });
  }

  /**
   * The invoke's event stream, over node:http and a pooled connection (the hot call: one per task). Aborting the
   * signal destroys the connection, which the runtime takes as a cancel, and the stream throws the signal's reason.
   */
  async *invoke(functionName: string, request: InvokeRequest, options: InvokeOptions): AsyncIterable<AgentEvent> {
    const { signal } = options;
    let res: IncomingMessage;
    try {
      res = await openRequest(this.fnPath(functionName, '/invoke'), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(request),
        signal,
      });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      throw new FunctionUnavailableError(`function runtime at ${this.url} unreachable: ${networkReason(err)}`);
    }
    const status = res.statusCode ?? 0;
    if (status === 404) {
      res.resume();
      throw new FunctionNotFoundError(functionName);
    }
    if (status >= 500) throw new FunctionUnavailableError(await responseErrorText(res));
    if (status < 200 || status >= 300) {
      throw new Error(`function runtime answered ${status}: ${await responseErrorText(res)}`);
    }
    try {
      yield* invokeEvents(decodeEvents(res));
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      throw new FunctionUnavailableError(`invoke stream of ${functionName} broke: ${errorMessage(err)}`);
    } finally {
      // A consumer that stops early leaves nothing open.
      if (!res.complete) res.destroy();
    }
  }

  async passthrough(functionName: string, request: PassthroughRequest): Promise<PassthroughResponse> {
    const timeout = AbortSignal.timeout(this.passthroughTimeoutMs);
    const signal = request.signal ? AbortSignal.any([timeout, request.signal]) : timeout;
    const path = request.path.startsWith('/') ? request.path : `/${request.path}`;
    const res = await this.send(
      this.fnPath(functionName, `/proxy${path}`),
      {
        method: request.method,
        headers: request.headers,
        body: request.body && request.body.length > 0 ? new Uint8Array(request.body) : undefined,
      },
      signal,
      request.signal,
    );
    const runtimeError = res.headers.get(RUNTIME_ERROR_HEADER);
    if (runtimeError === 'function_not_found') {
      await res.body?.cancel();
      throw new FunctionNotFoundError(functionName);
    }
    if (runtimeError === 'unavailable' || runtimeError === 'timeout') {
      throw new FunctionUnavailableError(await fetchErrorText(res));
    }
    const headers: Record<string, string> = {};
    res.headers.forEach((value, key) => {
      headers[key] = value;
    });
    return { status: res.status, headers, body: Buffer.from(await res.arrayBuffer()) };
  }

  async listFunctions(): Promise<RuntimeFunction[]> {
    return (await this.call('GET', `${this.url}/functions`, undefined)) as RuntimeFunction[];
  }

  async deleteFunction(functionName: string): Promise<void> {
    try {
      await this.call('DELETE', this.fnPath(functionName), undefined, functionName);
    } catch (err) {
      // Deleting a function that does not exist leaves the wanted state: no such function.
      if (!(err instanceof FunctionNotFoundError)) throw err;
    }
  }

  async restartInstances(functionName?: string): Promise<void> {
    const url = functionName === undefined ? `${this.url}/restart` : this.fnPath(functionName, '/restart');
    await this.call('POST', url, undefined, functionName);
  }

  async prewarm(functionName: string, instances: number): Promise<void> {
    await this.call('POST', this.fnPath(functionName, '/prewarm'), { instances }, functionName);
  }
}
