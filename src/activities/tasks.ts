import { ApplicationFailure } from '@temporalio/activity';
import { provideCheckpointFunction } from '../platform/functions/checkpoint-function.js';
import { CheckpointNotServedError } from '../platform/functions/port.js';
import { announceTaskEnd } from '../task-endings.js';
import { isFinal, NON_RETRYABLE, type TaskOutcome, type TaskSummary } from '../types.js';
import type { ActivityDeps } from './index.js';

/**
 * The checkpoint's function for activities: the shared `provideCheckpointFunction` with the activities' ports. A
 * checkpoint the runtime can never serve fails the task at once rather than being retried.
 */
export async function provideFunction(
  { meta, functions, functionPrefix }: Pick<ActivityDeps, 'meta' | 'functions' | 'functionPrefix'>,
  model: string,
  refresh = false,
): Promise<string> {
  try {
    return await provideCheckpointFunction(meta, functions, model, functionPrefix, refresh);
  } catch (err) {
    if (err instanceof CheckpointNotServedError) {
      throw ApplicationFailure.nonRetryable(err.message, NON_RETRYABLE.modelNotFound);
    }
    throw err;
  }
}

/**
 * The function a task's checkpoint runs on, created (with its record) when missing. A checkpoint being re-registered
 * is ModelBusy (the workflow waits for the new weights); one no longer registered or servable is ModelNotFound.
 */
export async function checkpointFunction(deps: ActivityDeps, model: string): Promise<string> {
  const record = await deps.meta.getModel(model);
  if (record?.type === 'stableDiffusion' && (record.status === 'registering' || record.status === 'loading')) {
    // Accepted while loaded, then caught by an update: the workflow waits for the new weights.
    throw ApplicationFailure.nonRetryable(`checkpoint ${model} is ${record.status}`, NON_RETRYABLE.modelBusy);
  }
  // A delete is soft: tasks accepted before it still run (the file stays); only new requests are refused.
  if (record?.type !== 'stableDiffusion' || (record.status !== 'loaded' && record.status !== 'deleted')) {
    const why = record ? `is ${record.status}` : 'is not registered';
    throw ApplicationFailure.nonRetryable(`checkpoint ${model} ${why}`, NON_RETRYABLE.modelNotFound);
  }
  return provideFunction(deps, model);
}

export function createTaskActivities(deps: ActivityDeps) {
  const { meta } = deps;
  return {
    /** The first version's step: resolves the checkpoint's function, creating it (and its record) when missing. */
    async ensureFunction({ model }: { model: string }): Promise<{ functionName: string }> {
      return { functionName: await checkpointFunction(deps, model) };
    },

    async markRunning(taskId: string): Promise<void> {
      await meta.markTaskRunning(taskId);
    },

    /** Writes the final record once; returns the stored one, which wins over a later, different outcome. */
    async finalizeTask(outcome: TaskOutcome): Promise<TaskSummary> {
      const { taskId, ...final } = outcome;
      // The row after the write: final, either with this outcome or with one written earlier. Null if no row exists.
      const stored = await meta.finalizeTask(taskId, final);
      if (stored) await announceTaskEnd(deps, stored);
      const record = stored ?? outcome;
      return {
        taskId,
        status: isFinal(record.status) ? record.status : outcome.status,
        images: record.images,
        ...(record.message ? { message: record.message } : {}),
        ...(record.errorKind ? { errorKind: record.errorKind } : {}),
      };
    },
  };
}
