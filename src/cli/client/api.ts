import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { ExtraImagesRequest, Img2ImgRequest, Txt2ImgRequest } from '../../api/schemas.js';
import { networkReason } from '../../http-util.js';
import type { TaskCost, TaskPhase, TaskProgress, TaskStatus } from '../../types.js';
import { readEventStream } from './event-stream.js';

// A typed client of the sdflow HTTP API (docs/ARCHITECTURE.md, "The HTTP contract"), shared by the client commands
// and the benchmark.

/** An error the CLI reports as one line and an exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** The API answered with an error status; `message` is the API's own. */
export class ApiError extends CliError {
  constructor(
    readonly status: number,
    message: string,
    readonly body: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The API could not be reached or did not answer in time. */
export class ConnectionError extends CliError {
  constructor(message: string) {
    super(message);
    this.name = 'ConnectionError';
  }
}

export type GenerationKind = 'txt2img' | 'img2img' | 'extra_images';
export type GenerationBody = Txt2ImgRequest | Img2ImgRequest | ExtraImagesRequest;

/** The answer of an async submit; a sync submit also carries the outcome. */
export interface SubmitAnswer {
  status: TaskStatus;
  taskId: string;
  images?: string[];
  ossUrl?: string[];
  message?: string;
  /** While the task waits: seconds until it starts and until it ends, as estimated at the answer. */
  estimatedStartS?: number;
  estimatedFinishS?: number;
}

export interface TaskResult {
  taskId: string;
  status: TaskStatus;
  images: string[];
  ossUrl: string[];
  /** A1111's info: a JSON string. */
  info: string | null;
  parameters: Record<string, unknown> | null;
  message?: string;
  retryOf?: string;
}

/** One task as GET /tasks lists it. */
export interface TaskSummary {
  taskId: string;
  user: string;
  kind: string;
  model: string;
  status: TaskStatus;
  images: string[];
  createdAt: string;
  updatedAt: string;
  startedAt?: string;
  finishedAt?: string;
  message?: string;
  retryOf?: string;
  /** What a succeeded task used, in seconds (docs: README, "Cost and usage"). */
  cost?: TaskCost;
}

export interface TaskPage {
  tasks: TaskSummary[];
  /** Present when there may be more: pass it back for the next page. */
  cursor?: string;
}

export interface TaskFilter {
  status?: string;
  user?: string;
  limit?: number;
  cursor?: string;
}

export interface ProgressAnswer extends TaskProgress {
  queuePosition?: number;
}

/** An event of a task's event stream (`GET /tasks/{id}/events`). */
export type TaskEvent =
  | {
      event: 'status';
      id?: string;
      data: { status: TaskStatus; phase: TaskPhase; coldStart?: boolean; queuePosition?: number };
    }
  | { event: 'progress'; id?: string; data: Pick<TaskProgress, 'progress' | 'etaRelative' | 'state'> }
  | { event: 'preview'; id?: string; data: { currentImage: string; currentImageUrl: string } }
  | { event: 'completed'; id?: string; data: TaskResult };

export interface CancelAnswer {
  taskId: string;
  status: TaskStatus;
}

export interface ModelView {
  type: string;
  name: string;
  ossPath: string;
  etag: string;
  status: string;
  registeredTime: string;
  lastModificationTime: string;
  message?: string;
}

export interface ModelFilter {
  type?: string;
  status?: string;
}

export interface FunctionList {
  status: string;
  functions: { functionName: string; model: string }[];
}

export interface SubmitOptions {
  /** `Request-Type: async`: answer at once with the taskId. */
  async: boolean;
  /** A client-chosen taskId, sent in the `taskId` header. */
  taskId?: string;
}

export interface ApiAnswer<T> {
  status: number;
  body: T;
}

const DEFAULT_TIMEOUT_MS = 30_000;
/** The server sends a heartbeat every 15 s: a stream silent for this long has lost its connection. */
const STREAM_SILENCE_MS = 45_000;

export class SdflowClient {
  readonly baseUrl: string;

  constructor(
    baseUrl: string,
    private readonly key?: string,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  /**
   * One JSON call. Error statuses throw an ApiError carrying the API's message, unless `accept` lists them.
   * `timeoutMs: null` waits as long as the API takes (a sync submit).
   */
  async call<T>(
    method: string,
    path: string,
    init: { body?: unknown; headers?: Record<string, string>; timeoutMs?: number | null; accept?: number[] } = {},
  ): Promise<ApiAnswer<T>> {
    const headers: Record<string, string> = { accept: 'application/json', ...init.headers };
    if (this.key) headers.authorization = `Bearer ${this.key}`;
    if (init.body !== undefined) headers['content-type'] = 'application/json';
    const timeoutMs = init.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : init.timeoutMs;
    let res: Response;
    try {
      res = await fetch(this.baseUrl + path, {
        method,
        headers,
        body: init.body === undefined ? undefined : JSON.stringify(init.body),
        signal: timeoutMs === null ? undefined : AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') {
        throw new ConnectionError(`${method} ${path}: no answer from ${this.baseUrl} within ${timeoutMs} ms`);
      }
      throw new ConnectionError(`cannot reach the API at ${this.baseUrl}: ${networkReason(err)}`);
    }
    const text = await res.text();
    let body: unknown = text;
    if (text && (res.headers.get('content-type') ?? '').includes('json')) {
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
    }
    if (res.status >= 400 && !init.accept?.includes(res.status)) {
      const message =
        typeof body === 'object' && body !== null && typeof (body as { message?: unknown }).message === 'string'
          ? (body as { message: string }).message
          : `${method} ${path} answered HTTP ${res.status}${typeof body === 'string' && body ? `: ${body}` : ''}`;
      throw new ApiError(res.status, message, body);
    }
    return { status: res.status, body: body as T };
  }

  /** Submits a generation or upscale. A sync submit waits for the outcome, so it has no client-side timeout. */
  async submit(kind: GenerationKind, body: GenerationBody, options: SubmitOptions): Promise<ApiAnswer<SubmitAnswer>> {
    const headers: Record<string, string> = {};
    if (options.async) headers['Request-Type'] = 'async';
    if (options.taskId) headers.taskId = options.taskId;
    return this.call<SubmitAnswer>('POST', `/${kind}`, {
      body,
      headers,
      timeoutMs: options.async ? DEFAULT_TIMEOUT_MS : null,
    });
  }

  /** A new task with a failed or cancelled task's request (`POST /tasks/{id}/retry`), answered at once. */
  async retry(taskId: string, options: { taskId?: string } = {}): Promise<SubmitAnswer & { retryOf: string }> {
    const headers: Record<string, string> = { 'Request-Type': 'async' };
    if (options.taskId) headers.taskId = options.taskId;
    const path = `/tasks/${encodeURIComponent(taskId)}/retry`;
    return (await this.call<SubmitAnswer & { retryOf: string }>('POST', path, { headers })).body;
  }

  async tasks(filter: TaskFilter = {}): Promise<TaskPage> {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(filter)) if (value !== undefined) query.set(name, String(value));
    const qs = query.size > 0 ? `?${query}` : '';
    return (await this.call<TaskPage>('GET', `/tasks${qs}`)).body;
  }

  async result(taskId: string): Promise<TaskResult> {
    return (await this.call<TaskResult>('GET', `/tasks/${encodeURIComponent(taskId)}/result`)).body;
  }

  async progress(taskId: string): Promise<ProgressAnswer> {
    return (await this.call<ProgressAnswer>('GET', `/tasks/${encodeURIComponent(taskId)}/progress`)).body;
  }

  /**
   * The task's events as they happen, from after `lastEventId` (the id of the last status event received) when
   * resuming; ends when the server ends the stream, after `completed`. A silent or broken stream is a ConnectionError.
   */
  async *events(taskId: string, lastEventId?: string): AsyncGenerator<TaskEvent> {
    const path = `/tasks/${encodeURIComponent(taskId)}/events`;
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (this.key) headers.authorization = `Bearer ${this.key}`;
    if (lastEventId !== undefined) headers['last-event-id'] = lastEventId;
    const silence = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const heard = () => {
      clearTimeout(timer);
      timer = setTimeout(() => silence.abort(), STREAM_SILENCE_MS);
    };
    heard();
    try {
      let res: Response;
      try {
        res = await fetch(this.baseUrl + path, { headers, signal: silence.signal });
      } catch (err) {
        throw new ConnectionError(`cannot reach the API at ${this.baseUrl}: ${networkReason(err)}`);
      }
      if (res.status >= 400 || !res.body) {
        const text = await res.text().catch(() => '');
        let message = `GET ${path} answered HTTP ${res.status}`;
        try {
          message = (JSON.parse(text) as { message?: string }).message ?? message;
        } catch {
          // Not JSON: keep the status line.
        }
        throw new ApiError(res.status, message, text);
      }
      try {
        for await (const e of readEventStream(res.body as unknown as AsyncIterable<Uint8Array>, heard)) {
          yield { event: e.event, ...(e.id === undefined ? {} : { id: e.id }), data: JSON.parse(e.data) } as TaskEvent;
        }
      } catch (err) {
        const why = silence.signal.aborted ? `silent for ${STREAM_SILENCE_MS / 1000} s` : networkReason(err);
        throw new ConnectionError(`the event stream of task ${taskId} broke off: ${why}`);
      }
    } finally {
      clearTimeout(timer);
      silence.abort();
    }
  }

  async cancel(taskId: string): Promise<CancelAnswer> {
    return (await this.call<CancelAnswer>('POST', `/tasks/${encodeURIComponent(taskId)}/cancellation`)).body;
  }

  async models(filter: ModelFilter = {}): Promise<ModelView[]> {
    const query = new URLSearchParams();
    if (filter.type) query.set('type', filter.type);
    if (filter.status) query.set('status', filter.status);
    const qs = query.size > 0 ? `?${query}` : '';
    return (await this.call<ModelView[]>('GET', `/models${qs}`)).body;
  }

  async model(name: string): Promise<ModelView> {
    return (await this.call<ModelView>('GET', `/models/${encodeURIComponent(name)}`)).body;
  }

  async functions(): Promise<FunctionList> {
    return (await this.call<FunctionList>('GET', '/list/sdapi/functions')).body;
  }

  /**
   * Saves a signed URL's object to `file`, through a temporary name so a broken download leaves no partial file.
   * Signed URLs authorize themselves: the API key is never sent with them (they may point at OSS).
   */
  async download(url: string, file: string): Promise<void> {
    let res: Response;
    try {
      res = await fetch(url, { signal: AbortSignal.timeout(120_000) });
    } catch (err) {
      throw new ConnectionError(`cannot download ${url}: ${networkReason(err)}`);
    }
    if (res.status !== 200 || !res.body) {
      const text = await res.text().catch(() => '');
      let message = text;
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? text;
      } catch {
        // Not JSON: keep the text.
      }
      throw new ApiError(res.status, `download of ${url} answered HTTP ${res.status}: ${message}`, text);
    }
    const partial = `${file}.part`;
    try {
      await pipeline(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), createWriteStream(partial));
      await rename(partial, file);
    } catch (err) {
      await rm(partial, { force: true });
      throw new ConnectionError(`download of ${url} broke off: ${networkReason(err)}`);
    }
  }
}
