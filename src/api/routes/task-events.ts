import type Router from '@koa/router';
import { eventWebhookId } from '../../records.js';
import { isFinal } from '../../types.js';
import { principalOf } from '../auth.js';
import { conflict } from '../errors.js';
import { streamTaskEvents } from '../event-stream.js';
import { type TaskDeps, taskFor } from '../tasks.js';
import { taskIdParam } from './tasks.js';

// GET /tasks/{id}/events (Server-Sent Events), GET /tasks/{id}/webhooks, POST /tasks/{id}/webhooks/redeliver. The
// ownership rules are those of /progress and /result: another user's task is unknown.

export function taskEventRoutes(router: Router, deps: TaskDeps) {
  router.get('/tasks/:taskId/events', async (ctx) => {
    const task = await taskFor(deps, taskIdParam(ctx.params.taskId), principalOf(ctx));
    streamTaskEvents(ctx, deps, task);
  });

  router.get('/tasks/:taskId/webhooks', async (ctx) => {
    const task = await taskFor(deps, taskIdParam(ctx.params.taskId), principalOf(ctx));
    ctx.body = {
      taskId: task.taskId,
      webhook: task.webhook ?? null,
      attempts: await deps.meta.listWebhookAttempts(task.taskId),
    };
  });

  router.post('/tasks/:taskId/webhooks/redeliver', async (ctx) => {
    const task = await taskFor(deps, taskIdParam(ctx.params.taskId), principalOf(ctx));
    if (!task.webhook) throw conflict(`task ${task.taskId} has no webhook`, { taskId: task.taskId });
    if (!isFinal(task.status)) {
      throw conflict(`task ${task.taskId} is ${task.status}: completed goes out when it ends`, {
        taskId: task.taskId,
        status: task.status,
      });
    }
    await deps.notifyWebhook(task.taskId, { type: 'completed', redeliver: true });
    ctx.status = 202;
    ctx.body = { taskId: task.taskId, event: 'completed', webhookId: eventWebhookId(task.taskId, 'completed') };
  });
}
