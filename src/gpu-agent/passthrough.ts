import { errorMessage } from '../http-util.js';
import { isJsonObject } from '../json.js';
import { assertSafeKey, objectKeyForOutput } from '../platform/object-store/keys.js';
import { a1111ErrorDetail } from '../protocol/a1111-error.js';
import { type AgentEvent, LOADING_CHECKPOINT_JOB, startingEvent } from '../protocol/events.js';
import { classifyImageRef, startsWithImageSignature } from '../protocol/image-refs.js';
import { type PassthroughRequest, passthroughRequestSchema } from '../protocol/invoke.js';
import {
  asPng,
  type InvokeDeps,
  InvokeFailure,
  parsePinnedRequest,
  readCallersObject,
  toErrorEvent,
} from './invoke.js';
import { SdHttpError } from './sd-client.js';

// A `passthrough` invoke: one A1111 request the API accepted as a task (any method but a plain GET on an allowed prefix),
// forwarded to SD. SD's 2xx and 4xx answers are the result, recorded as they are; a 5xx is a retryable failure.
// Base64 images in a JSON answer go to the object store under the task's output keys, so the recorded answer stays small.

/** How often SD's progress is relayed while a passthrough request runs; it also keeps the worker's idle timer fed. */
const KEEPALIVE_MS = 1000;
/** Strings shorter than this are never taken for images: a real image's base64 is far longer. */
const MIN_IMAGE_CHARS = 64;
/** The answer, images offloaded, is recorded in Temporal's history and the task row: it must stay small. */
const MAX_PASSTHROUGH_INFO_BYTES = 512 * 1024;

export type PassthroughDeps = Pick<InvokeDeps, 'sd' | 'store' | 'ensureCheckpoint' | 'model' | 'logger'>;

/** Whether a JSON string holds an image: base64 (or a data URL) starting with an image format's signature. */
export function imageBase64(value: string): string | undefined {
  if (value.length < MIN_IMAGE_CHARS) return undefined;
  const ref = classifyImageRef(value);
  return ref.kind === 'base64' && startsWithImageSignature(ref.base64) ? ref.base64 : undefined;
}

/**
 * Replaces every image string in a JSON value (top-level `images` and `image`, and any other string field that holds
 * base64 image data, at any depth) with what `save` answers for it, numbering them from 1 in document order.
 */
export async function offloadImages(
  value: unknown,
  save: (base64: string, n: number) => Promise<string>,
): Promise<{ body: unknown; keys: string[] }> {
  const keys: string[] = [];
  const walk = async (v: unknown): Promise<unknown> => {
    if (typeof v === 'string') {
      const base64 = imageBase64(v);
      if (base64 === undefined) return v;
      const key = await save(base64, keys.length + 1);
      keys.push(key);
      return key;
    }
    if (Array.isArray(v)) {
      const out: unknown[] = [];
      for (const item of v) out.push(await walk(item));
      return out;
    }
    if (isJsonObject(v)) {
      const out: Record<string, unknown> = {};
      for (const [k, item] of Object.entries(v)) out[k] = await walk(item);
      return out;
    }
    return v;
  };
  return { body: await walk(value), keys };
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

export class PassthroughRunner {
  constructor(private readonly deps: PassthroughDeps) {}

  /** Runs one passthrough invoke, emitting progress and then exactly one result or error, unless `cancel` fires. */
  async run(body: unknown, emit: (event: AgentEvent) => void, cancel: AbortSignal): Promise<void> {
    try {
      const request = this.parse(body);
      // The instance stays on its checkpoint, so routes that use the model see the pinned one.
      await this.deps.ensureCheckpoint(() => emit(startingEvent(LOADING_CHECKPOINT_JOB)));
      if (cancel.aborted) return;
      const answer = await this.forward(request, await this.requestBody(request), emit, cancel);
      if (cancel.aborted) return;
      const text = answer.body.toString('utf8');
      if (answer.status >= 500) throw new SdHttpError(answer.status, a1111ErrorDetail(text));
      emit({ ...startingEvent(), phase: 'uploading', progress: 1 });
      const json = parseJson(text);
      const { body: rewritten, keys } = json.ok
        ? await offloadImages(json.value, (base64, n) => this.save(request, base64, n))
        : { body: text, keys: [] };
      if (cancel.aborted) return;
      const info = JSON.stringify({ status: answer.status, body: rewritten });
      if (Buffer.byteLength(info) > MAX_PASSTHROUGH_INFO_BYTES) {
        throw new InvokeFailure(
          'sd_error',
          `SD's answer to ${request.params.method} ${request.params.path} is ${Buffer.byteLength(info)} bytes ` +
            `without its images; a recorded passthrough answer is at most ${MAX_PASSTHROUGH_INFO_BYTES} bytes`,
          false,
        );
      }
      emit({
        type: 'result',
        images: keys,
        info,
        parameters: { method: request.params.method, path: request.params.path },
      });
    } catch (err) {
      if (cancel.aborted) return;
      const event = toErrorEvent(err);
      this.deps.logger.warn({ kind: event.kind, status: event.status, message: event.message }, 'passthrough failed');
      emit(event);
    }
  }

  private parse(body: unknown): PassthroughRequest {
    return parsePinnedRequest(passthroughRequestSchema, body, this.deps.model, 'passthrough');
  }

  /** The JSON body to send: inline, or read back from the caller's own input key. */
  private async requestBody(request: PassthroughRequest): Promise<Buffer | undefined> {
    const { body, bodyKey } = request.params;
    if (bodyKey === undefined) return body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return readCallersObject(this.deps.store, request, bodyKey, 'bodyKey');
  }

  /**
   * Sends the request and waits for SD's answer, relaying SD's progress about once a second. A cancel closes the
   * request and interrupts SD, so a long extension job stops too.
   */
  private async forward(
    request: PassthroughRequest,
    body: Buffer | undefined,
    emit: (event: AgentEvent) => void,
    cancel: AbortSignal,
  ) {
    const { method, path } = request.params;
    const interrupt = () => {
      this.deps.logger.info({ taskId: request.taskId, path }, 'passthrough cancelled: interrupting SD');
      this.deps.sd.interrupt().catch((err) => this.deps.logger.warn({ err: errorMessage(err) }, 'interrupt failed'));
    };
    cancel.addEventListener('abort', interrupt, { once: true });
    let polling = false;
    const keepalive = setInterval(() => {
      if (polling) return;
      polling = true;
      this.deps.sd
        .progress()
        .then(
          (p) => (Number.isFinite(p.progress) ? Math.min(1, Math.max(0, p.progress)) : 0),
          () => 0,
        )
        .then((progress) => {
          polling = false;
          if (!cancel.aborted) {
            emit({ ...startingEvent(), phase: 'sampling', progress });
          }
        });
    }, KEEPALIVE_MS);
    try {
      return await this.deps.sd.passthrough(method, path, body ? 'application/json' : undefined, body, cancel);
    } finally {
      clearInterval(keepalive);
      cancel.removeEventListener('abort', interrupt);
    }
  }

  /** `images/<user>/<taskId>_<n>.png`: a retried task writes the same keys. */
  private async save(request: PassthroughRequest, base64: string, n: number): Promise<string> {
    const key = assertSafeKey(objectKeyForOutput(request.user, request.taskId, n));
    await (await this.deps.store()).put(key, await asPng(base64), { contentType: 'image/png' });
    return key;
  }
}
