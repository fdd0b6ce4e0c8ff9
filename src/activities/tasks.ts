import { ApplicationFailure } from '@temporalio/activity';
import { functionNameFor } from '../platform/functions/naming.js';
import { NON_RETRYABLE, type TaskOutcome } from '../types.js';
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
    async finalizeTask(outcome: TaskOutcome): Promise<TaskOutcome> {
      const { taskId, ...final } = outcome;
      const stored = await meta.finalizeTask(taskId, final);
      if (!stored || stored.status === 'waiting' || stored.status === 'running') return outcome;
      return {
        taskId,
        status: stored.status,
        images: stored.images,
        info: stored.info,
        parameters: stored.parameters,
        message: stored.message,
        errorKind: stored.errorKind,
      };
    },
  };
}
