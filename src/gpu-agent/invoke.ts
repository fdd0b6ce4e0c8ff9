import type { z } from 'zod';
import { errorMessage } from '../http-util.js';
import type { Logger } from '../logging.js';
import {
  assertSafeKey,
  mayReference,
  ObjectKeyError,
  objectKeyForInterrupt,
  objectKeyForOutput,
  objectKeyForPreview,
} from '../platform/object-store/keys.js';
import { ObjectNotFoundError, type ObjectStore } from '../platform/object-store/port.js';
import { type AgentEvent, type ErrorEvent, type ProgressEvent, startingEvent } from '../protocol/events.js';
import { classifyImageRef, imageBytes, imageFieldNames, mapImageRefs } from '../protocol/image-refs.js';
import { type GenerationRequest, generationRequestSchema } from '../protocol/invoke.js';
import { EMPTY_SD_STATE, type ErrorKind, type SdState } from '../types.js';
import {
  type SdClient,
  type SdGenerationResponse,
  SdHttpError,
  type SdProgress,
  type SdRoute,
  SdUnavailableError,
} from './sd-client.js';

// One invoke, from its request to a result: resolve image references, run SD while relaying its progress,
// interrupt SD when the caller goes away, and upload the images under deterministic keys.

/** An invoke failure with the error event it becomes. */
export class InvokeFailure extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly retryable: boolean,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'InvokeFailure';
  }
}

const ROUTES: Record<GenerationRequest['kind'], SdRoute> = {
  txt2img: 'txt2img',
  img2img: 'img2img',
  extra: 'extra-single-image',
};
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export interface InvokeDeps {
  sd: SdClient;
  store: () => Promise<ObjectStore>;
  /** Makes SD load the pinned checkpoint if it has another; calls `onLoad` before a load. */
  ensureCheckpoint: (onLoad: () => void) => Promise<void>;
  /** The pinned checkpoint, which every generation request overrides to. */
  model: string;
  progressPollMs: number;
  /** How often a running job checks for an A1111-style interrupt request (`objectKeyForInterrupt`). */
  interruptPollMs: number;
  /** How often the live preview is read from SD and stored at `objectKeyForPreview` (0: never). */
  previewIntervalMs: number;
  logger: Logger;
}

export function toErrorEvent(err: unknown): ErrorEvent {
  if (err instanceof InvokeFailure) {
    return { type: 'error', kind: err.kind, message: err.message, retryable: err.retryable, status: err.status };
  }
  if (err instanceof SdHttpError) {
    if (err.status >= 400 && err.status < 500) {
      return { type: 'error', kind: 'bad_input', status: err.status, message: err.detail, retryable: false };
    }
    return { type: 'error', kind: 'sd_error', status: err.status, message: err.message, retryable: true };
  }
  if (err instanceof SdUnavailableError) {
    return { type: 'error', kind: 'sd_error', message: err.message, retryable: true };
  }
  return { type: 'error', kind: 'internal', message: errorMessage(err), retryable: true };
}

/** A1111's state, reduced to the fields the protocol carries (backends add their own). */
function sdState(state: unknown): SdState {
  const from = (typeof state === 'object' && state !== null ? state : {}) as Record<string, unknown>;
  const out: Record<string, unknown> = { ...EMPTY_SD_STATE };
  for (const [key, fallback] of Object.entries(EMPTY_SD_STATE)) {
    if (typeof from[key] === typeof fallback) out[key] = from[key];
  }
  return out as unknown as SdState;
}

/**
 * A sampling event from SD's progress, or undefined when SD reports idle after our job made progress (its job ended
 * and the response is on its way). Progress never goes backwards within an invoke (a hires pass restarts A1111's).
 */
function samplingEvent(p: SdProgress, previous: ProgressEvent, currentImage: string | null): ProgressEvent | undefined {
  const reported = Number.isFinite(p.progress) ? Math.min(1, Math.max(0, p.progress)) : 0;
  if (previous.phase === 'sampling' && previous.progress > 0 && reported === 0 && !p.state?.job_count) return undefined;
  const progress = Math.max(reported, previous.phase === 'sampling' ? previous.progress : 0);
  const eta = Number.isFinite(p.eta_relative) ? Math.max(0, p.eta_relative) : 0;
  return {
    type: 'progress',
    phase: 'sampling',
    progress,
    etaRelative: eta,
    state: sdState(p.state),
    currentImage,
  };
}

/** A1111 encodes API images in its configured sample format; outputs are PNG keys, so convert anything else. */
export async function asPng(base64: string): Promise<Buffer> {
  const bytes = imageBytes(base64);
  if (bytes.subarray(0, PNG_SIGNATURE.length).equals(PNG_SIGNATURE)) return bytes;
  const { default: sharp } = await import('sharp');
  return sharp(bytes).png().toBuffer();
}

/** Previews are for watching, not keeping: at most this many pixels a side. */
const PREVIEW_MAX_SIDE = 1024;

/**
 * A live preview as stored: a JPEG, since an unfinished (noisy) image as PNG is several times larger and a preview
 * is written every few seconds while a job runs.
 */
async function asPreviewJpeg(base64: string): Promise<Buffer> {
  const { default: sharp } = await import('sharp');
  return sharp(imageBytes(base64))
    .resize({ width: PREVIEW_MAX_SIDE, height: PREVIEW_MAX_SIDE, fit: 'inside', withoutEnlargement: true })
    .jpeg({ quality: 80 })
    .toBuffer();
}

/**
 * Validates a request body and checks it is for this instance's checkpoint: instances never switch checkpoints, so a
 * request for another one was routed to the wrong function.
 */
export function parsePinnedRequest<T extends { model: string }>(
  schema: z.ZodType<T>,
  body: unknown,
  model: string,
  what: string,
): T {
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ');
    throw new InvokeFailure('bad_input', `invalid ${what} request: ${detail}`, false);
  }
  if (parsed.data.model !== model) {
    throw new InvokeFailure(
      'internal',
      `this instance is pinned to ${model}, not ${parsed.data.model}: the request reached the wrong function`,
      false,
    );
  }
  return parsed.data;
}

/**
 * A running job's live previews: read from SD every `previewIntervalMs` and each new one stored under its own key.
 * The one before the newest is kept too, since the workflow's progress (throttled) may still name it; older ones
 * are deleted, and all of them when the job ends. Failures here never fail the job.
 */
class LivePreviews {
  private kept: string[] = [];
  private readAt = 0;
  private lastImage: string | undefined;
  private count = 0;

  constructor(
    private readonly d: InvokeDeps,
    private readonly request: GenerationRequest,
  ) {}

  /** True when this progress read should also fetch the preview. */
  due(): boolean {
    if (this.d.previewIntervalMs <= 0 || Date.now() - this.readAt < this.d.previewIntervalMs) return false;
    this.readAt = Date.now();
    return true;
  }

  async store(image: string | null | undefined): Promise<void> {
    if (typeof image !== 'string' || image.length === 0 || image === this.lastImage) return;
    this.lastImage = image;
    try {
      const store = await this.d.store();
      const key = objectKeyForPreview(this.request.user, this.request.taskId, ++this.count);
      await store.put(key, await asPreviewJpeg(image), { contentType: 'image/jpeg' });
      this.kept.push(key);
      while (this.kept.length > 2) await store.delete(this.kept.shift()!);
    } catch (err) {
      this.d.logger.debug({ err: errorMessage(err) }, 'live preview not stored');
    }
  }

  /** The key of the newest stored preview, which progress events name. */
  get current(): string | null {
    return this.kept.at(-1) ?? null;
  }

  async discard(): Promise<void> {
    const keys = this.kept;
    this.kept = [];
    for (const key of keys) {
      try {
        await (await this.d.store()).delete(key);
      } catch (err) {
        this.d.logger.debug({ err: errorMessage(err), key }, 'live preview not removed');
      }
    }
  }
}

export class InvokeRunner {
  constructor(private readonly d: InvokeDeps) {}

  /**
   * Runs one invoke, emitting progress and then exactly one result or error, unless `cancel` fires: then it
   * interrupts SD, waits for SD to return, uploads nothing and emits nothing more.
   */
  async run(body: unknown, emit: (event: AgentEvent) => void, cancel: AbortSignal): Promise<void> {
    try {
      const request = this.parse(body);
      const outcome = await this.generate(request, emit, cancel);
      if (!outcome || cancel.aborted) return;
      emit({ ...outcome.last, phase: 'uploading', progress: 1, etaRelative: 0, currentImage: null });
      const images = await this.upload(request, outcome.images, cancel);
      if (!images || cancel.aborted) return;
      emit({ type: 'result', images, info: outcome.info, parameters: outcome.parameters });
    } catch (err) {
      if (cancel.aborted) return;
      const event = toErrorEvent(err);
      this.d.logger.warn({ kind: event.kind, status: event.status, message: event.message }, 'invoke failed');
      emit(event);
    }
  }

  private parse(body: unknown): GenerationRequest {
    return parsePinnedRequest(generationRequestSchema, body, this.d.model, 'invoke');
  }

  private async resolveRefs(request: GenerationRequest): Promise<Record<string, unknown>> {
    return mapImageRefs(request.kind, request.params, async (value, field) => {
      const ref = classifyImageRef(value);
      if (ref.kind === 'invalid') throw new InvokeFailure('bad_input', `${field}: ${ref.reason}`, false);
      if (ref.kind === 'base64') return ref.base64;
      try {
        assertSafeKey(ref.key);
      } catch (err) {
        if (err instanceof ObjectKeyError) throw new InvokeFailure('bad_input', `${field}: ${err.message}`, false);
        throw err;
      }
      if (!mayReference(ref.key, request.user, request.admin === true)) {
        throw new InvokeFailure('bad_input', `${field}: object key ${ref.key} is not one of the caller's own`, false);
      }
      try {
        return (await (await this.d.store()).get(ref.key)).toString('base64');
      } catch (err) {
        if (err instanceof ObjectNotFoundError) {
          throw new InvokeFailure('bad_input', `${field}: object not found: ${ref.key}`, false);
        }
        throw err;
      }
    });
  }

  private async generate(request: GenerationRequest, emit: (event: AgentEvent) => void, cancel: AbortSignal) {
    const resolved = await this.resolveRefs(request);
    let last: ProgressEvent = startingEvent();
    if (request.kind !== 'extra') {
      await this.d.ensureCheckpoint(() => {
        this.d.logger.info({ model: this.d.model }, 'loading the pinned checkpoint before generating');
        emit(last);
      });
    }
    if (cancel.aborted) return undefined;

    const sdBody: Record<string, unknown> =
      request.kind === 'extra'
        ? resolved
        : {
            ...resolved,
            override_settings: {
              ...(typeof resolved.override_settings === 'object' ? resolved.override_settings : {}),
              sd_model_checkpoint: this.d.model,
            },
            // Restored after the job, so one request's settings (a user's options) never carry over to the next
            // request on this instance. The checkpoint is the pinned one before and after, so nothing reloads.
            override_settings_restore_afterwards: true,
          };

    let settled = false;
    const call = this.d.sd.generate(ROUTES[request.kind], sdBody).finally(() => {
      settled = true;
    });
    const callDone = call.then(
      () => undefined,
      () => undefined,
    );
    const interrupt = () => {
      this.d.logger.info({ taskId: request.taskId }, 'no longer waiting for SD: interrupting it');
      this.d.sd.interrupt().catch((err) => this.d.logger.warn({ err: errorMessage(err) }, 'interrupt failed'));
    };
    cancel.addEventListener('abort', interrupt, { once: true });
    // An interrupt (not a cancel) ends the job early but keeps what SD made so far, as A1111 does.
    const interruptKey = objectKeyForInterrupt(request.user, request.taskId);
    let interruptCheckedAt = 0;
    let interruptRequested = false;
    const checkInterrupt = async () => {
      if (!interruptRequested && Date.now() - interruptCheckedAt >= this.d.interruptPollMs) {
        interruptCheckedAt = Date.now();
        interruptRequested = (await (await this.d.store()).head(interruptKey)) !== null;
        if (interruptRequested)
          this.d.logger.info({ taskId: request.taskId }, 'interrupt requested: ending the job early');
      }
      // Repeated until SD returns: an interrupt that reaches SD before the job starts is forgotten when it starts.
      if (interruptRequested) await this.d.sd.interrupt();
    };
    const previews = new LivePreviews(this.d, request);
    try {
      while (!settled) {
        await Promise.race([new Promise((r) => setTimeout(r, this.d.progressPollMs)), callDone]);
        if (settled) break;
        // An interrupt that reached SD before the job started is forgotten when it starts: repeat it until SD returns.
        if (cancel.aborted) {
          interrupt();
          continue;
        }
        try {
          await checkInterrupt();
          const withPreview = previews.due();
          const progress = await this.d.sd.progress(withPreview);
          if (withPreview) await previews.store(progress.current_image);
          const event = samplingEvent(progress, last, previews.current);
          if (event && !settled && !cancel.aborted) {
            last = event;
            emit(event);
          }
        } catch (err) {
          this.d.logger.debug({ err: errorMessage(err) }, 'progress poll failed');
        }
      }
      const response = await call.catch((err) => {
        // Stopped waiting without SD's own answer (a timeout, a broken connection): SD must not keep the job.
        if (!(err instanceof SdHttpError)) interrupt();
        throw err;
      });
      if (cancel.aborted) {
        this.d.logger.info({ taskId: request.taskId }, 'invoke cancelled; SD returned and nothing is uploaded');
        return undefined;
      }
      return { last, ...this.shape(request, response) };
    } finally {
      cancel.removeEventListener('abort', interrupt);
      // The result (or the failure) supersedes the preview.
      await previews.discard();
    }
  }

  /** The images, info and parameters of SD's answer, with the request's references in place of image data. */
  private shape(request: GenerationRequest, response: SdGenerationResponse) {
    if (request.kind === 'extra') {
      if (typeof response.image !== 'string') throw new InvokeFailure('sd_error', 'SD answered without an image', true);
      return {
        images: [response.image],
        info: JSON.stringify({ html_info: response.html_info ?? '' }),
        parameters: { ...request.params },
      };
    }
    const parameters: Record<string, unknown> = { ...(response.parameters ?? request.params) };
    for (const field of imageFieldNames(request.kind)) {
      if (field in request.params) parameters[field] = request.params[field];
    }
    return {
      images: (response.images ?? []).filter((i): i is string => typeof i === 'string'),
      info: typeof response.info === 'string' ? response.info : JSON.stringify(response.info ?? {}),
      parameters,
    };
  }

  /** Uploads to `images/<user>/<taskId>_<n>.png`: a retry with the same seeds overwrites the same keys. */
  private async upload(
    request: GenerationRequest,
    images: string[],
    cancel: AbortSignal,
  ): Promise<string[] | undefined> {
    const store = await this.d.store();
    const keys: string[] = [];
    for (const [i, image] of images.entries()) {
      if (cancel.aborted) return undefined;
      const key = assertSafeKey(objectKeyForOutput(request.user, request.taskId, i + 1));
      await store.put(key, await asPng(image), { contentType: 'image/png' });
      keys.push(key);
    }
    return keys;
  }
}
