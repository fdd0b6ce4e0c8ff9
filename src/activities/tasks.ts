import { ApplicationFailure } from '@temporalio/activity';
import { functionNameFor } from '../platform/functions/naming.js';
import { isFinal, NON_RETRYABLE, type TaskOutcome, type TaskSummary } from '../types.js';
import type { ActivityDeps } from './index.js';

export function createTaskActivities({ meta, functions, functionPrefix }: ActivityDeps) {
  return {
    /** Resolves the checkpoint's function, creating it (and its record) when missing. */
    async ensureFunction({ model }: { model: string }): Promise<{ functionName: string }> {
      const record = await meta.getModel(model);
      if (record?.type !== 'stableDiffusion' || record.status !== 'loaded') {
        const why = record ? `is ${record.status}` : 'is not registered';
        throw ApplicationFailure.nonRetryable(`checkpoint ${model} ${why}`, NON_RETRYABLE.modelNotFound);
      }
      const functionName = functionNameFor(model, functionPrefix);
      if (await meta.getFunction(functionName)) return { functionName };
      await functions.ensureFunction({ functionName, model });
      const now = new Date().toISOString();
      await meta.putFunction({ functionName, model, resources: {}, createdAt: now, updatedAt: now });
      return { functionName };
    },

    async markRunning(taskId: string): Promise<void> {
      await meta.markTaskRunning(taskId);
    },

    /** Writes the final record once; returns the stored one, which wins over a later, different outcome. */
    async finalizeTask(outcome: TaskOutcome): Promise<TaskSummary> {
      const { taskId, ...final } = outcome;
      // The row after the write: final, either with this outcome or with one written earlier. Null if no row exists.
      const record = (await meta.finalizeTask(taskId, final)) ?? outcome;
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
