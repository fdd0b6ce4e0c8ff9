import type { Context, Next } from 'koa';
import { errorMessage } from '../../http-util.js';
import { isJsonObject } from '../../json.js';
import { provideCheckpointFunction } from '../../platform/functions/checkpoint-function.js';
import {
  CheckpointNotServedError,
  FunctionNotFoundError,
  FunctionUnavailableError,
} from '../../platform/functions/port.js';
import { a1111ErrorDetail } from '../../protocol/a1111-error.js';
import { answerTask, clientGone } from '../answers.js';
import type { ApiDeps } from '../app.js';
import { principalOf, requireAdmin } from '../auth.js';
import { requestCheckpoint } from '../checkpoints.js';
import { badRequest, HttpError } from '../errors.js';
import { answerStatus, changesInstance, isPassthroughPath, normalizedPath, passthroughAnswer } from '../passthrough.js';
import { clientTaskId, idempotencyKey, isAsync, slotOwnerOf, taskFlag } from '../request-headers.js';
import { submitTask, type TaskDeps } from '../tasks.js';

// The passthrough: A1111 routes under the allowed prefixes that no platform or drop-in route claimed go to an agent of
// the named (or the caller's, or the default) checkpoint. A GET is a cheap read, forwarded at once, unless it carries
// `Task-Flag: true`. Any other method may use the GPU, so it runs as a task through the queue and the global cap; its
// answer is SD's own.

const TASK_METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * `claimed(path, method)` tells whether a platform or drop-in route serves that path: a percent-encoded spelling of
 * one (`/sdapi/v1/txt%32img`) must not reach SD around that route's validation and limits.
 */
export function passthroughRoute(deps: ApiDeps & TaskDeps, claimed: (path: string, method: string) => boolean) {
  const prefixes = deps.config.api.passthroughPrefixes;

  /** The checkpoint a passthrough request names, or the caller's, or the default; `?model=` only on a read. */
  const modelFor = (ctx: Context, body: unknown) =>
    requestCheckpoint(deps, {
      body,
      query: ctx.method === 'GET' || ctx.method === 'HEAD' ? String(ctx.query.model ?? '') : undefined,
      user: principalOf(ctx).user,
    });

  /** A GET goes straight to an instance of the checkpoint's function: no task, no slot. */
  async function read(ctx: Context, pathAndQuery: string): Promise<void> {
    const model = await modelFor(ctx, undefined);
    const prefix = deps.config.functions.prefix;
    const signal = clientGone(ctx);
    const send = async (functionName: string) =>
      deps.functions.passthrough(functionName, { method: 'GET', path: pathAndQuery, signal });
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
        `SD answered ${answer.status}: ${a1111ErrorDetail(answer.body.toString('utf8'))}`,
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
    const scheduling = slotOwnerOf(ctx, principalOf(ctx));
    const model = await modelFor(ctx, body);
    const forwarded = isJsonObject(body) ? { ...body } : body;
    // The platform's own field: it chose the function, SD has no use for it.
    if (isJsonObject(forwarded)) delete forwarded.stable_diffusion_model;
    const task = await submitTask(deps, {
      kind: 'passthrough',
      principal: principalOf(ctx),
      model,
      body: {
        method: ctx.method,
        path: pathAndQuery,
        ...(hasBody ? { body: forwarded } : {}),
      },
      taskId: clientTaskId(ctx),
      idempotencyKey: idempotencyKey(ctx),
      scheduling,
    });
    await answerTask(ctx, deps, task, {
      waitMs: deps.config.api.syncTimeoutS * 1000,
      final: (done) => passthroughAnswer(deps, done),
      owner: scheduling.owner,
      taskIdHeader: taskFlag(ctx) || isAsync(ctx),
    });
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
