import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import type { MetaStore } from './platform/meta-store/port.js';
import { controlPrefix, inputPrefix, isOutputOf, previewPrefix } from './platform/object-store/keys.js';
import type { ObjectStore } from './platform/object-store/port.js';
import type { TaskRecord } from './records.js';
import { isOpen } from './types.js';

// Retention: a final task's images, inputs, previews and control requests are removed and its record is kept as
// `deleted`. DELETE /tasks/{id} does it for one task; the retention workflow for final tasks past an age. The
// objects go first and the record after, so a deletion cut short is finished by the next attempt.

export interface RetentionDeps {
  meta: MetaStore;
  store: ObjectStore;
  temporal: Client;
}

/** `deleted` with the stored record, or `open`: the task (or its workflow, writing its last words) still runs. */
export type DeletionResult = { outcome: 'deleted'; task: TaskRecord } | { outcome: 'open'; task: TaskRecord };

/** Whether the task's workflow may still write: a final record is written just before the workflow closes. */
async function workflowRunning(temporal: Client, taskId: string): Promise<boolean> {
  try {
    return (await temporal.workflow.getHandle(taskId).describe()).status.name === 'RUNNING';
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}

/** Every object of the task: its record's images, its outputs, inputs, previews and control requests. */
async function taskObjectKeys(store: ObjectStore, task: TaskRecord): Promise<string[]> {
  const { user, taskId } = task;
  const [outputs, ...rest] = await Promise.all(
    [
      `images/${user}/${taskId}_`,
      inputPrefix(user, taskId),
      previewPrefix(user, taskId),
      controlPrefix(user, taskId),
    ].map((prefix) => store.list(prefix)),
  );
  const keys = new Set(task.images);
  for (const o of outputs) if (isOutputOf(o.key, user, taskId)) keys.add(o.key);
  for (const o of rest.flat()) keys.add(o.key);
  return [...keys];
}

/** Removes a final task's objects and keeps its record as `deleted`. Idempotent. */
export async function deleteTaskData(deps: RetentionDeps, task: TaskRecord): Promise<DeletionResult> {
  if (isOpen(task.status) || (task.status !== 'deleted' && (await workflowRunning(deps.temporal, task.taskId)))) {
    return { outcome: 'open', task };
  }
  for (const key of await taskObjectKeys(deps.store, task)) await deps.store.delete(key);
  const stored = await deps.meta.markTaskDeleted(task.taskId);
  return { outcome: 'deleted', task: stored ?? task };
}

/**
 * Deletes the data of final tasks created more than `maxAgeS` ago (their creation bounds their end: a task ends
 * within its deadline), a page at a time; answers how many it deleted.
 */
export async function sweepOldTasks(deps: RetentionDeps, maxAgeS: number, pageSize = 200): Promise<number> {
  const createdBefore = new Date(Date.now() - maxAgeS * 1000).toISOString();
  let deleted = 0;
  let cursor: string | undefined;
  do {
    const page = await deps.meta.listTasks({
      status: ['succeeded', 'failed', 'cancelled'],
      createdBefore,
      cursor,
      limit: pageSize,
    });
    for (const task of page.items) {
      if ((await deleteTaskData(deps, task)).outcome === 'deleted') deleted++;
    }
    cursor = page.cursor;
  } while (cursor);
  return deleted;
}
