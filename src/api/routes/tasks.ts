import type Router from '@koa/router';
import { z } from 'zod';
import { InvalidCursorError, MAX_PAGE_LIMIT } from '../../platform/meta-store/cursor.js';
import { TASK_ID, TASK_ID_RULE } from '../../protocol/invoke.js';
import { TASK_STATUSES, type TaskStatus } from '../../types.js';
import { type Answer, answerTask, openAnswer, platformAnswer } from '../answers.js';
import { principalOf } from '../auth.js';
import { badRequest, forbidden } from '../errors.js';
import { clientTaskId, idempotencyKey, slotOwnerOf } from '../request-headers.js';
import { retryBody } from '../schemas.js';
import {
  cancelTask,
  deleteTask,
  progressView,
  resultView,
  retryTask,
  type TaskDeps,
  taskFor,
  taskSummary,
  webhookOf,
} from '../tasks.js';

// GET /tasks, GET /tasks/{id}/result, GET /tasks/{id}/progress, POST /tasks/{id}/cancellation, POST /tasks/{id}/retry,
// DELETE /tasks/{id}.

export function taskIdParam(value: string | undefined): string {
  if (!value || !TASK_ID.test(value)) throw badRequest(`taskId: ${TASK_ID_RULE}`);
  return value;
}

/** GET /tasks query: newest first, a page at a time; `status` takes one status or several, comma-separated. */
export const taskListQuery = z.object({
  status: z
    .string()
    .transform((value) => value.split(',').map((s) => s.trim()))
    .pipe(
      z.array(z.enum(TASK_STATUSES as [TaskStatus, ...TaskStatus[]], { error: `must be ${TASK_STATUSES.join(', ')}` })),
    )
    .optional(),
  user: z.string().min(1).max(200).optional(),
  limit: z.coerce.number().int().min(1).max(MAX_PAGE_LIMIT).optional(),
  cursor: z.string().min(1).max(1000).optional(),
  createdBefore: z.iso.datetime({ error: 'must be an ISO 8601 instant, e.g. 2026-01-31T12:00:00Z' }).optional(),
});

export function taskRoutes(router: Router, deps: TaskDeps) {
  router.get('/tasks', async (ctx) => {
    const query = taskListQuery.parse(ctx.query);
    const principal = principalOf(ctx);
    // A user lists only their own tasks; an admin lists everyone's, or one user's.
    if (principal.role !== 'admin' && query.user !== undefined && query.user !== principal.user) {
      throw forbidden("user: only an admin may list another user's tasks");
    }
    const user = principal.role === 'admin' ? query.user : principal.user;
    try {
      const page = await deps.meta.listTasks({ ...query, user });
      ctx.body = { tasks: page.items.map(taskSummary), ...(page.cursor ? { cursor: page.cursor } : {}) };
    } catch (err) {
      if (err instanceof InvalidCursorError)
        throw badRequest('cursor: not a cursor from an earlier page of GET /tasks');
      throw err;
    }
  });

  router.get('/tasks/:taskId/result', async (ctx) => {
    const task = await taskFor(deps, taskIdParam(ctx.params.taskId), principalOf(ctx));
    ctx.body = await resultView(deps, task);
  });

  router.get('/tasks/:taskId/progress', async (ctx) => {
    const task = await taskFor(deps, taskIdParam(ctx.params.taskId), principalOf(ctx));
    ctx.body = await progressView(deps, task);
  });

  router.post('/tasks/:taskId/cancellation', async (ctx) => {
    const task = await taskFor(deps, taskIdParam(ctx.params.taskId), principalOf(ctx));
    const after = await cancelTask(deps, task);
    ctx.body = { taskId: after.taskId, status: after.status };
  });

  // The owner's or an admin's: another user's task is missing (404), as for every task route.
  router.delete('/tasks/:taskId', async (ctx) => {
    const task = await taskFor(deps, taskIdParam(ctx.params.taskId), principalOf(ctx));
    const deleted = await deleteTask(deps, task);
    ctx.body = { taskId: deleted.taskId, status: deleted.status };
  });

  router.post('/tasks/:taskId/retry', async (ctx) => {
    const principal = principalOf(ctx);
    const original = await taskFor(deps, taskIdParam(ctx.params.taskId), principal);
    const webhook = webhookOf(retryBody.parse(ctx.request.body ?? {}));
    const task = await retryTask(deps, original, principal, {
      taskId: clientTaskId(ctx),
      idempotencyKey: idempotencyKey(ctx),
      scheduling: slotOwnerOf(ctx, principal),
      ...(webhook ? { webhook } : {}),
    });
    const retryOf = (answer: Answer): Answer => ({
      ...answer,
      body: { ...(answer.body as object), retryOf: original.taskId },
    });
    await answerTask(ctx, deps, task, {
      waitMs: deps.config.api.syncTimeoutS * 1000,
      final: async (done) => retryOf(await platformAnswer(deps, done)),
      open: (open, accepted) => retryOf(openAnswer(open, accepted)),
    });
  });
}
