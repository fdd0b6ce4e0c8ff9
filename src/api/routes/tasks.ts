import type Router from '@koa/router';
import { principalOf } from '../auth.js';
import { badRequest } from '../errors.js';
import { TASK_ID } from '../schemas.js';
import { cancelTask, progressView, resultView, type TaskDeps, taskFor } from '../tasks.js';

// GET /tasks/{id}/result, GET /tasks/{id}/progress, POST /tasks/{id}/cancellation.

function taskIdParam(value: string | undefined): string {
  if (!value || !TASK_ID.test(value)) throw badRequest('taskId: must match ^[A-Za-z0-9_-]{1,64}$');
  return value;
}

export function taskRoutes(router: Router, deps: TaskDeps) {
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
}
