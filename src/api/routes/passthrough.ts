import type { Context, Next } from 'koa';
import { sdErrorDetail } from '../../gpu-agent/sd-client.js';
import { errorMessage } from '../../http-util.js';
import {
  CheckpointNotServedError,
  FunctionNotFoundError,
  FunctionUnavailableError,
} from '../../platform/functions/port.js';
import { provideCheckpointFunction } from '../../platform/functions/records.js';
import type { ModelRecord, TaskRecord } from '../../platform/meta-store/port.js';
import type { ApiDeps } from '../app.js';
import { principalOf, requireAdmin } from '../auth.js';
import { callersCheckpoint } from '../drop-in.js';
import { badRequest, HttpError } from '../errors.js';
import { answerStatus, changesInstance, failedStatus, isPassthroughPath, normalizedPath } from '../passthrough.js';
import { resolveCheckpoint, submitTask, type TaskDeps, waitForTask } from '../tasks.js';
import { clientTaskId, idempotencyKey, isAsync, syncAnswer } from './generation.js';

// The passthrough: A1111 routes under the allowed prefixes that no platform or drop-in route claimed go to an agent of
// the named (or the caller's, or the default) checkpoint. A GET is a cheap read, forwarded at once, unless it carries
// `Task-Flag: true`. Any other method may use the GPU, so it runs as a task through the queue and the global cap; its
// answer is SD's own.

const TASK_METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']);

const taskFlag = (ctx: Context) => ctx.get('Task-Flag').toLowerCase() === 'true';

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const nonEmpty = (v: unknown): string | undefined => (typeof v === 'string' && v.trim() ? v.trim() : undefined);

/** The recorded answer of a passthrough task: SD's status and its body, images replaced by keys. */
function recordedAnswer(task: TaskRecord): { status: number; body: unknown } {
  try {
    const info = JSON.parse(task.info ?? '') as { status?: unknown; body?: unknown };
    if (typeof info.status === 'number') return { status: info.status, body: info.body };
  } catch {
    // fall through: a task recorded without SD's answer
  }
  throw new HttpError(502, `task ${task.taskId} recorded no answer from SD`, { taskId: task.taskId });
}

/** SD's body as it was: JSON for JSON values (`null` included), text for a text answer. */
function sendRecorded(ctx: Context, body: unknown): void {
  if (typeof body === 'string' || (typeof body === 'object' && body !== null)) {
    ctx.body = body;
  } else {
    ctx.type = 'application/json';
    ctx.body = JSON.stringify(body ?? null);
  }
}

/**
 * `claimed(path, method)` tells whether a platform or drop-in route serves that path: a percent-encoded spelling of
 * one (`/sdapi/v1/txt%32img`) must not reach SD around that route's validation and limits.
 */
export function passthroughRoute(deps: ApiDeps & TaskDeps, claimed: (path: string, method: string) => boolean) {
  const prefixes = deps.config.api.passthroughPrefixes;

  /**
   * 1. `stable_diffusion_model`, 2. `override_settings.sd_model_checkpoint`, 3. for a GET `?model=`, 4. the caller's
   * checkpoint (their options' `sd_model_checkpoint`), 5. the default.
   */
  async function modelFor(ctx: Context, body: unknown): Promise<ModelRecord> {
    const fromBody = isRecord(body) ? nonEmpty(body.stable_diffusion_model) : undefined;
    if (fromBody) return resolveCheckpoint(deps.meta, fromBody, 'stable_diffusion_model');
    const settings = isRecord(body) && isRecord(body.override_settings) ? body.override_settings : undefined;
    const fromSettings = nonEmpty(settings?.sd_model_checkpoint);
    if (fromSettings) return resolveCheckpoint(deps.meta, fromSettings, 'override_settings.sd_model_checkpoint');
    const fromQuery = ctx.method === 'GET' || ctx.method === 'HEAD' ? nonEmpty(ctx.query.model) : undefined;
    if (fromQuery) return resolveCheckpoint(deps.meta, fromQuery, 'model');
    return callersCheckpoint(deps, principalOf(ctx).user);
  }

  /** A GET goes straight to an instance of the checkpoint's function: no task, no slot. */
  async function read(ctx: Context, pathAndQuery: string): Promise<void> {
    const model = await modelFor(ctx, undefined);
    const prefix = deps.config.functions.prefix;
    const gone = new AbortController();
    ctx.res.once('close', () => {
      if (!ctx.res.writableFinished) gone.abort();
    });
    const send = async (functionName: string) =>
      deps.functions.passthrough(functionName, { method: 'GET', path: pathAndQuery, signal: gone.signal });
    let answer: Awaited<ReturnType<typeof send>>;
    try {
      const functionName = await provideCheckpointFunction(deps.meta, deps.functions, model.name, prefix);
      try {
        answer = await send(functionName);
      } catch (err) {
        if (!(err instanceof FunctionNotFoundError)) throw err;
        // Recorded but gone from the runtime: recreate it with its recorded resources, once.
        answer = await send(await provideCheckpointFunction(deps.meta, deps.functions, model.name, prefix, true));
      }
    } catch (err) {
      if (err instanceof FunctionUnavailableError || err instanceof FunctionNotFoundError) {
        throw new HttpError(502, `the function of ${model.name} is unavailable: ${errorMessage(err)}`);
      }
      // Registered, but no GPU of this deployment serves it: nothing the client can fix by retrying now.
      if (err instanceof CheckpointNotServedError) throw new HttpError(503, err.message);
      throw err;
    }
    if (answer.status >= 500) {
      throw new HttpError(
        answerStatus(answer.status),
        `SD answered ${answer.status}: ${sdErrorDetail(answer.body.toString('utf8'))}`,
      );
    }
    ctx.status = answer.status;
    ctx.type = answer.headers['content-type'] ?? 'application/octet-stream';
    ctx.body = answer.body;
  }

  /** Any other method runs as a task: recorded, queued behind the global cap, retried on an upstream failure. */
  async function run(ctx: Context, pathAndQuery: string): Promise<void> {
    if (ctx.is('multipart/*')) throw new HttpError(415, 'passthrough bodies are JSON');
    const raw = (ctx.request as { rawBody?: string }).rawBody;
    const hasBody = typeof raw === 'string' && raw.trim() !== '';
    const body: unknown = hasBody ? ctx.request.body : undefined;
    const model = await modelFor(ctx, body);
    const forwarded = isRecord(body) ? { ...body } : body;
    // The platform's own field: it chose the function, SD has no use for it.
    if (isRecord(forwarded)) delete forwarded.stable_diffusion_model;
    const task = await submitTask(deps, {
      kind: 'passthrough',
      principal: principalOf(ctx),
      body: {
        stable_diffusion_model: model.name,
        method: ctx.method,
        path: pathAndQuery,
        ...(hasBody ? { body: forwarded } : {}),
      },
      taskId: clientTaskId(ctx),
      idempotencyKey: idempotencyKey(ctx),
    });
    if (taskFlag(ctx) || isAsync(ctx)) ctx.set('taskId', task.taskId);
    if (isAsync(ctx)) {
      ctx.body = { status: task.status, taskId: task.taskId };
      return;
    }
    // A client that goes away stops the wait, never the task.
    const gone = new AbortController();
    ctx.res.once('close', () => {
      if (!ctx.res.writableFinished) gone.abort();
    });
    const done = await waitForTask(deps, task.taskId, deps.config.api.syncTimeoutS * 1000, gone.signal);
    if (done.status === 'succeeded') {
      const recorded = recordedAnswer(done);
      const ossUrl = await Promise.all(done.images.map((key) => deps.store.signedUrl(key, deps.config.stores.urlTtlS)));
      ctx.status = answerStatus(recorded.status);
      sendRecorded(ctx, isRecord(recorded.body) && ossUrl.length > 0 ? { ...recorded.body, ossUrl } : recorded.body);
    } else if (done.status === 'failed') {
      ctx.status = failedStatus(done.errorKind);
      ctx.body = { status: done.status, taskId: done.taskId, message: done.message ?? 'failed' };
    } else {
      const answer = await syncAnswer(deps, done);
      ctx.status = answer.status;
      ctx.body = answer.body;
    }
  }

  return async (ctx: Context, next: Next) => {
    if (!isPassthroughPath(ctx.path, prefixes)) return next();
    const method = ctx.method.toUpperCase();
    const normalized = normalizedPath(ctx.path);
    if (claimed(normalized, method)) throw badRequest(`path: ${ctx.path} is another spelling of ${normalized}`);
    if (changesInstance(normalized)) requireAdmin(ctx);
    const pathAndQuery = `${ctx.path}${ctx.search}`;
    if (method === 'HEAD' || (method === 'GET' && !taskFlag(ctx))) return read(ctx, pathAndQuery);
    if (!TASK_METHODS.has(method)) throw new HttpError(405, `${method} is not passed through`);
    return run(ctx, pathAndQuery);
  };
}
