import type Router from '@koa/router';
import type { Context } from 'koa';
import type { z } from 'zod';
import type { TaskRecord } from '../../platform/meta-store/port.js';
import type { SdParams, TaskKind } from '../../types.js';
import { principalOf } from '../auth.js';
import { badRequest } from '../errors.js';
import { type GenerationSchemas, TASK_ID } from '../schemas.js';
import { resultView, submitTask, type TaskDeps, waitForTask } from '../tasks.js';
import { optionsVersionHeader } from './options.js';

// POST /txt2img, /img2img, /extra_images: sync by default, async with `Request-Type: async`.

export function clientTaskId(ctx: Context): string | undefined {
  const id = ctx.get('taskId');
  if (!id) return undefined;
  if (!TASK_ID.test(id)) throw badRequest('taskId header: must match ^[A-Za-z0-9_-]{1,64}$');
  return id;
}

export function idempotencyKey(ctx: Context): string | undefined {
  const key = ctx.get('Idempotency-Key');
  if (!key) return undefined;
  if (key.length > 200) throw badRequest('Idempotency-Key header: must be at most 200 characters');
  return key;
}

export const isAsync = (ctx: Context) =>
  ctx.get('Request-Type').toLowerCase() === 'async' || /respond-async/i.test(ctx.get('Prefer'));

/** The sync answer for a task as it stands after the wait (DESIGN.md section 5, status codes). */
export async function syncAnswer(deps: TaskDeps, task: TaskRecord): Promise<{ status: number; body: object }> {
  switch (task.status) {
    case 'succeeded': {
      const view = await resultView(deps, task);
      return {
        status: 200,
        body: { status: task.status, taskId: task.taskId, images: view.images, ossUrl: view.ossUrl },
      };
    }
    case 'cancelled':
      return { status: 200, body: { status: task.status, taskId: task.taskId, message: task.message ?? 'cancelled' } };
    case 'failed':
      return {
        status: task.errorKind === 'bad_input' ? 422 : 500,
        body: { status: task.status, taskId: task.taskId, message: task.message ?? 'failed' },
      };
    default:
      return { status: 202, body: { status: task.status, taskId: task.taskId } };
  }
}

/** Answers an accepted task: at once with `Request-Type: async`, else once it is final or the sync cap passes. */
export async function answerSubmission(ctx: Context, deps: TaskDeps, task: TaskRecord): Promise<void> {
  ctx.set('taskId', task.taskId);
  if (isAsync(ctx)) {
    ctx.body = { status: task.status, taskId: task.taskId };
    return;
  }
  // A client that goes away stops the wait, never the task.
  const gone = new AbortController();
  ctx.req.once('close', () => gone.abort());
  const done = await waitForTask(deps, task.taskId, deps.config.api.syncTimeoutS * 1000, gone.signal);
  const answer = await syncAnswer(deps, done);
  ctx.status = answer.status;
  ctx.body = answer.body;
}

export function generationRoutes(router: Router, deps: TaskDeps, schemas: GenerationSchemas) {
  const submit = (kind: TaskKind, schema: z.ZodType<SdParams>) => async (ctx: Context) => {
    const body = schema.parse(ctx.request.body ?? {});
    const task = await submitTask(deps, {
      kind,
      principal: principalOf(ctx),
      body,
      taskId: clientTaskId(ctx),
      idempotencyKey: idempotencyKey(ctx),
      optionsVersion: optionsVersionHeader(ctx),
    });
    await answerSubmission(ctx, deps, task);
  };

  router.post('/txt2img', submit('txt2img', schemas.txt2img));
  router.post('/img2img', submit('img2img', schemas.img2img));
  router.post('/extra_images', submit('extra', schemas.extraImages));
}
