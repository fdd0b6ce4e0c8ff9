import type { z } from 'zod';
import { errorMessage } from '../http-util.js';
import { isJsonObject } from '../json.js';
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
import {
  type AgentEvent,
  type ErrorEvent,
  LOADING_CHECKPOINT_JOB,
  type ProgressEvent,
  startingEvent,
} from '../protocol/events.js';
import { classifyImageRef, imageBytes, imageFieldNames, mapImageRefs } from '../protocol/image-refs.js';
import { type GenerationRequest, generationRequestSchema, type InvokeRequest } from '../protocol/invoke.js';
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

/** How A1111 reports torch's out-of-memory error: a 500 naming `OutOfMemoryError`, or CUDA's own message. */
const OUT_OF_MEMORY = /OutOfMemoryError|out of memory/i;

export function toErrorEvent(err: unknown): ErrorEvent {
  if (err instanceof InvokeFailure) {
    return { type: 'error', kind: err.kind, message: err.message, retryable: err.retryable, status: err.status };
  }
  if (err instanceof SdHttpError) {
    if (err.status >= 400 && err.status < 500) {
      return { type: 'error', kind: 'bad_input', status: err.status, message: err.detail, retryable: false };
    }
    const oom = OUT_OF_MEMORY.test(err.message) ? { fault: 'oom' as const } : {};
    return { type: 'error', kind: 'sd_error', status: err.status, message: err.message, retryable: true, ...oom };
  }
  if (err instanceof SdUnavailableError) {
    // SD died or stopped answering mid-job: the instance's failure, not the request's.
    return { type: 'error', kind: 'sd_error', message: err.message, retryable: true, fault: 'crash' };
  }
  return { type: 'error', kind: 'internal', message: errorMessage(err), retryable: true };
}

/** A1111's state, reduced to the fields the protocol carries (backends add their own). */
function sdState(state: unknown): SdState {
  const from = isJsonObject(state) ? state : {};
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
    private readonly deps: InvokeDeps,
    private readonly request: GenerationRequest,
  ) {}

  /** True when this progress read should also fetch the preview. */
  due(): boolean {
    if (this.deps.previewIntervalMs <= 0 || Date.now() - this.readAt < this.deps.previewIntervalMs) return false;
    this.readAt = Date.now();
    return true;
  }

  async store(image: string | null | undefined): Promise<void> {
    if (typeof image !== 'string' || image.length === 0 || image === this.lastImage) return;
    this.lastImage = image;
    try {
      const store = await this.deps.store();
      const key = objectKeyForPreview(this.request.user, this.request.taskId, ++this.count);
      await store.put(key, await asPreviewJpeg(image), { contentType: 'image/jpeg' });
      this.kept.push(key);
      while (this.kept.length > 2) await store.delete(this.kept.shift()!);
    } catch (err) {
      this.deps.logger.debug({ err: errorMessage(err) }, 'live preview not stored');
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
        await (await this.deps.store()).delete(key);
      } catch (err) {
        this.deps.logger.debug({ err: errorMessage(err), key }, 'live preview not removed');
      }
    }
  }
}

/**
 * Reads an object the request names by key (an input image, a large passthrough body): a safe key of the caller's
 * own, or any key for an admin. Anything else, or a missing object, is the caller's bad input, named by `field`.
 */
export async function readCallersObject(
  store: () => Promise<ObjectStore>,
  request: InvokeRequest,
  key: string,
  field: string,
): Promise<Buffer> {
  try {
    assertSafeKey(key);
  } catch (err) {
    if (err instanceof ObjectKeyError) throw new InvokeFailure('bad_input', `${field}: ${err.message}`, false);
    throw err;
  }
  if (!mayReference(key, request.user, request.admin === true)) {
    throw new InvokeFailure('bad_input', `${field}: object key ${key} is not one of the caller's own`, false);
  }
  try {
    return await (await store()).get(key);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) {
      throw new InvokeFailure('bad_input', `${field}: object not found: ${key}`, false);
    }
    throw err;
  }
}

/** A job SD runs: its answer, and whether it has come. */
class SdJob {
  private settled = false;
  readonly answer: Promise<SdGenerationResponse>;
  private readonly returned: Promise<void>;

  constructor(call: Promise<SdGenerationResponse>) {
    this.answer = call.finally(() => {
      this.settled = true;
    });
    this.returned = this.answer.then(
      () => undefined,
      () => undefined,
    );
  }

  get running(): boolean {
    return !this.settled;
  }

  /** Waits `ms`, or until SD returns if that comes first; true while SD still runs the job. */
  async runsAfter(ms: number): Promise<boolean> {
    await Promise.race([new Promise((resolve) => setTimeout(resolve, ms)), this.returned]);
    return this.running;
  }
}

/**
 * A1111's interrupt of a task, which the API asks for by writing the task's interrupt key: the job ends early but
 * keeps what SD made so far, as A1111 does. The key is looked for every `interruptPollMs`.
 */
class InterruptRequest {
  private checkedAt = 0;
  private requested = false;

  constructor(
    private readonly deps: InvokeDeps,
    private readonly request: GenerationRequest,
  ) {}

  /** Looks for the key when due; once it was there, interrupts SD (again: SD forgets one before the job starts). */
  async check(): Promise<void> {
    if (!this.requested && Date.now() - this.checkedAt >= this.deps.interruptPollMs) {
      this.checkedAt = Date.now();
      const key = objectKeyForInterrupt(this.request.user, this.request.taskId);
      this.requested = (await (await this.deps.store()).head(key)) !== null;
      if (this.requested) {
        this.deps.logger.info({ taskId: this.request.taskId }, 'interrupt requested: ending the job early');
      }
    }
    if (this.requested) await this.deps.sd.interrupt();
  }
}

export class InvokeRunner {
  constructor(private readonly deps: InvokeDeps) {}

  /**
   * Runs one invoke, emitting progress and then exactly one result or error, unless `cancel` fires: then it
   * interrupts SD, waits for SD to return, uploads nothing and emits nothing more.
   */
  async run(body: unknown, emit: (event: AgentEvent) => void, cancel: AbortSignal): Promise<void> {
    try {
      const request = this.parse(body);
      const sdBody = await this.prepare(request, () => emit(startingEvent(LOADING_CHECKPOINT_JOB)));
      if (cancel.aborted) return;
      const outcome = await this.generate(request, sdBody, emit, cancel);
      if (!outcome || cancel.aborted) return;
      emit({ ...outcome.last, phase: 'uploading', progress: 1, etaRelative: 0, currentImage: null });
      const images = await this.upload(request, outcome.images, cancel);
      if (!images || cancel.aborted) return;
      emit({ type: 'result', images, info: outcome.info, parameters: outcome.parameters });
    } catch (err) {
      if (cancel.aborted) return;
      const event = toErrorEvent(err);
      this.deps.logger.warn({ kind: event.kind, status: event.status, message: event.message }, 'invoke failed');
      emit(event);
    }
  }

  private parse(body: unknown): GenerationRequest {
    return parsePinnedRequest(generationRequestSchema, body, this.deps.model, 'invoke');
  }

  /**
   * SD's request body: the request's images read from their keys, and for a generation the pinned checkpoint, loaded
   * first if SD holds another (`onLoad` announces the load).
   */
  private async prepare(request: GenerationRequest, onLoad: () => void): Promise<Record<string, unknown>> {
    const resolved = await mapImageRefs(request.kind, request.params, async (value, field) => {
      const ref = classifyImageRef(value);
      if (ref.kind === 'invalid') throw new InvokeFailure('bad_input', `${field}: ${ref.reason}`, false);
      if (ref.kind === 'base64') return ref.base64;
      return (await readCallersObject(this.deps.store, request, ref.key, field)).toString('base64');
    });
    if (request.kind === 'extra') return resolved;
    await this.deps.ensureCheckpoint(() => {
      this.deps.logger.info({ model: this.deps.model }, 'loading the pinned checkpoint before generating');
      onLoad();
    });
    return {
      ...resolved,
      override_settings: {
        ...(isJsonObject(resolved.override_settings) ? resolved.override_settings : {}),
        sd_model_checkpoint: this.deps.model,
      },
      // Restored after the job, so one request's settings (a user's options) never carry over to the next request on
      // this instance. The checkpoint is the pinned one before and after, so nothing reloads.
      override_settings_restore_afterwards: true,
    };
  }

  /**
   * Runs the job on SD, relaying its progress, until SD returns. The caller's cancel interrupts SD and keeps nothing
   * (undefined); A1111's interrupt request ends the job early and keeps what SD made.
   */
  private async generate(
    request: GenerationRequest,
    sdBody: Record<string, unknown>,
    emit: (event: AgentEvent) => void,
    cancel: AbortSignal,
  ) {
    const job = new SdJob(this.deps.sd.generate(ROUTES[request.kind], sdBody));
    const interruptRequest = new InterruptRequest(this.deps, request);
    const previews = new LivePreviews(this.deps, request);
    const onCancel = () => this.interruptSd(request, 'no longer waiting for SD: interrupting it');
    cancel.addEventListener('abort', onCancel, { once: true });
    let last = startingEvent();
    try {
      while (await job.runsAfter(this.deps.progressPollMs)) {
        // SD forgets an interrupt that reaches it before the job starts: a cancel interrupts it again at every poll.
        if (cancel.aborted) onCancel();
        else last = await this.poll(job, interruptRequest, previews, last, emit, cancel);
      }
      const answer = await job.answer.catch((err) => {
        // Stopped waiting without SD's own answer (a timeout, a broken connection): SD must not keep the job.
        if (!(err instanceof SdHttpError)) this.interruptSd(request, 'no answer from SD: interrupting it');
        throw err;
      });
      if (cancel.aborted) {
        this.deps.logger.info({ taskId: request.taskId }, 'invoke cancelled; SD returned and nothing is uploaded');
        return undefined;
      }
      return { last, ...this.shape(request, answer) };
    } finally {
      cancel.removeEventListener('abort', onCancel);
      // The result (or the failure) supersedes the preview.
      await previews.discard();
    }
  }

  /**
   * One poll while the job runs: A1111's interrupt request, then SD's progress (with its preview when one is due),
   * emitted unless the job ended meanwhile. Answers the latest progress event. A failed poll is only logged.
   */
  private async poll(
    job: SdJob,
    interruptRequest: InterruptRequest,
    previews: LivePreviews,
    last: ProgressEvent,
    emit: (event: AgentEvent) => void,
    cancel: AbortSignal,
  ): Promise<ProgressEvent> {
    try {
      await interruptRequest.check();
      const withPreview = previews.due();
      const progress = await this.deps.sd.progress(withPreview);
      if (withPreview) await previews.store(progress.current_image);
      const event = samplingEvent(progress, last, previews.current);
      if (!event || !job.running || cancel.aborted) return last;
      emit(event);
      return event;
    } catch (err) {
      this.deps.logger.debug({ err: errorMessage(err) }, 'progress poll failed');
      return last;
    }
  }

  /** Tells SD to stop the job; a failure is logged (a cancel tries again at the next poll). */
  private interruptSd(request: GenerationRequest, why: string): void {
    this.deps.logger.info({ taskId: request.taskId }, why);
    this.deps.sd.interrupt().catch((err) => this.deps.logger.warn({ err: errorMessage(err) }, 'interrupt failed'));
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
    const store = await this.deps.store();
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
