import type { Logger } from './logging.js';
import type { MetaStore } from './platform/meta-store/port.js';
import type { TaskRecord } from './records.js';
import { isFinal } from './types.js';
import type { WebhookNotifier } from './webhooks/notify.js';

// What follows a task's final record, whoever wrote it: the runTask activity (success), the workflow's finalize step
// (failure, cancellation, deadline), the reconciler (a workflow that closed without one), or the API (a cancel of a
// task whose workflow never started). It appends the `finished` status event that ends the task's event stream, then
// hands `completed` to the task's webhook workflow. Both may be done twice (a retried step): the event is appended
// only once, and the webhook workflow sends `completed` once.

export interface TaskEndingDeps {
  meta: MetaStore;
  notifyWebhook: WebhookNotifier;
  logger: Logger;
}

/** Announces a final task. Never throws: the record is written, and nothing here may undo or delay that. */
export async function announceTaskEnd(deps: TaskEndingDeps, task: TaskRecord): Promise<void> {
  if (!isFinal(task.status)) return;
  const { taskId } = task;
  try {
    const last = (await deps.meta.listStatusEvents(taskId)).at(-1);
    if (last?.phase !== 'finished')
      await deps.meta.appendStatusEvent(taskId, { status: task.status, phase: 'finished' });
  } catch (err) {
    deps.logger.warn({ err, taskId }, 'could not record the finished status event');
  }
  if (!task.webhook?.events.includes('completed')) return;
  try {
    await deps.notifyWebhook(taskId, { type: 'completed' });
  } catch (err) {
    deps.logger.error({ err, taskId }, 'could not hand the completed webhook to its workflow');
  }
}
