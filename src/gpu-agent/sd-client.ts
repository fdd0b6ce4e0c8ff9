import { type HttpAnswer, type HttpRequestOptions, sendRequest } from '../http-client.js';
import { networkReason } from '../http-util.js';
import { a1111ErrorDetail } from '../protocol/a1111-error.js';
import type { SdState } from '../types.js';

// A small client for the AUTOMATIC1111 HTTP API (or the simulator). Every call carries an explicit timeout.

export type SdRoute = 'txt2img' | 'img2img' | 'extra-single-image';

export interface SdProgress {
  progress: number;
  eta_relative: number;
  state: SdState;
  current_image: string | null;
  textinfo?: string | null;
}

export interface SdGenerationResponse {
  images?: string[];
  /** txt2img/img2img: the info JSON string. */
  info?: string;
  parameters?: Record<string, unknown>;
  /** extra-single-image */
  image?: string;
  html_info?: string;
}

export interface SdTimeouts {
  /** Quick reads: options, progress, interrupt. */
  quickMs: number;
  /** Setting options, which may load a checkpoint. */
  optionsMs: number;
  /** One generation, from request to response. */
  generateMs: number;
  /** Passthrough requests. */
  passthroughMs: number;
}

/** SD answered with a non-2xx status. */
export class SdHttpError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
  ) {
    super(`SD answered ${status}: ${detail}`);
    this.name = 'SdHttpError';
  }
}

/** SD could not be reached, or did not answer in time. */
export class SdUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SdUnavailableError';
  }
}

function unavailable(path: string, err: unknown, timeout: AbortSignal): SdUnavailableError {
  if (timeout.aborted) return new SdUnavailableError(`SD did not answer ${path} in time`, { cause: err });
  return new SdUnavailableError(`SD unreachable at ${path}: ${networkReason(err)}`, { cause: err });
}

export interface PassthroughResult {
  status: number;
  contentType: string | null;
  body: Buffer;
}

/** One call to SD's JSON API, its timeout aside. */
type SdRequest = Omit<HttpRequestOptions, 'signal'>;

export class SdClient {
  constructor(
    /** The base URL, read at each call: a restarted simulator listens on a new port. */
    private readonly baseUrl: () => string,
    private readonly timeouts: SdTimeouts,
  ) {}

  /**
   * Sends one request and reads its whole answer, over a pooled connection (an agent polls SD several times a
   * second). `timeout` covers both; a failure to get an answer is SdUnavailableError.
   */
  private async send(path: string, init: SdRequest, timeout: AbortSignal): Promise<HttpAnswer> {
    try {
      return await sendRequest(`${this.baseUrl()}${path}`, { ...init, signal: timeout });
    } catch (err) {
      throw unavailable(path, err, timeout);
    }
  }

  private async json<T>(path: string, init: SdRequest, timeoutMs: number): Promise<T> {
    const res = await this.send(path, init, AbortSignal.timeout(timeoutMs));
    const text = res.body.toString('utf8');
    if (res.status < 200 || res.status >= 300) throw new SdHttpError(res.status, a1111ErrorDetail(text));
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new SdHttpError(502, `SD answered ${path} with something other than JSON`);
    }
  }

  private post<T>(path: string, body: unknown, timeoutMs: number): Promise<T> {
    return this.json<T>(
      path,
      { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) },
      timeoutMs,
    );
  }

  getOptions(): Promise<Record<string, unknown>> {
    return this.json('/sdapi/v1/options', { method: 'GET' }, this.timeouts.quickMs);
  }

  setOptions(options: Record<string, unknown>): Promise<unknown> {
    return this.post('/sdapi/v1/options', options, this.timeouts.optionsMs);
  }

  /** SD's progress; with `withPreview`, also its live preview (A1111 encodes one only when asked). */
  progress(withPreview = false): Promise<SdProgress> {
    const path = `/sdapi/v1/progress?skip_current_image=${withPreview ? 'false' : 'true'}`;
    return this.json(path, { method: 'GET' }, this.timeouts.quickMs);
  }

  async interrupt(): Promise<void> {
    await this.post('/sdapi/v1/interrupt', {}, this.timeouts.quickMs);
  }

  generate(route: SdRoute, body: Record<string, unknown>): Promise<SdGenerationResponse> {
    return this.post(`/sdapi/v1/${route}`, body, this.timeouts.generateMs);
  }

  /**
   * Forwards one request verbatim and answers SD's status and body, whatever they are. Not a hot path: it stays on
   * fetch, which follows SD's redirects (FastAPI's trailing-slash ones) as passthrough callers have always seen.
   */
  async passthrough(
    method: string,
    pathAndQuery: string,
    contentType: string | undefined,
    body: Buffer | undefined,
    signal?: AbortSignal,
  ): Promise<PassthroughResult> {
    const headers: Record<string, string> = {};
    if (contentType) headers['content-type'] = contentType;
    const hasBody = body !== undefined && body.length > 0 && method !== 'GET' && method !== 'HEAD';
    const timeout = AbortSignal.timeout(this.timeouts.passthroughMs);
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl()}${pathAndQuery}`, {
        method,
        headers,
        body: hasBody ? new Uint8Array(body) : undefined,
        signal: signal ? AbortSignal.any([timeout, signal]) : timeout,
      });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw unavailable(pathAndQuery, err, timeout);
    }
    let answer: Buffer;
    try {
      answer = Buffer.from(await res.arrayBuffer());
    } catch (err) {
      if (signal?.aborted) throw err;
      throw unavailable(pathAndQuery, err, timeout);
    }
    return {
      status: res.status,
      contentType: res.headers.get('content-type'),
      body: answer,
    };
  }
}

/** Whether A1111's `sd_model_checkpoint` (a title like `name [hash]`, or a plain name) names `model`. */
export function checkpointMatches(current: unknown, model: string): boolean {
  if (typeof current !== 'string') return false;
  const name = current.replace(/\s*\[[0-9a-f]+\]$/i, '');
  return name === model || name.split(/[\\/]/).pop() === model;
}
