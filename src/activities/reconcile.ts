import { WorkflowNotFoundError } from '@temporalio/client';
import type { TaskRecord } from '../platform/meta-store/port.js';
import type { ActivityDeps } from './index.js';

/** Starts the generation workflow for a task row (idempotent: an existing workflow id is left alone). */
export type GenerationStarter = (task: TaskRecord) => Promise<void>;

export function createReconcileActivities({ meta, temporal, startGeneration, logger }: ActivityDeps) {
  return {
    /**
     * Looks at every task row still open after a grace period. A closed workflow means the final record was never
     * written (terminated, timed out): the row is marked failed with the reason. A workflow that never started (the
     * API stopped between the row and the start) is started now, so an accepted task is never lost.
     */
    async reconcileOpenTasks({
      graceS,
    }: {
      graceS: number;
    }): Promise<{ checked: number; failed: number; started: number }> {
      const createdBefore = new Date(Date.now() - graceS * 1000).toISOString();
      const report = { checked: 0, failed: 0, started: 0 };
      let cursor: string | undefined;
      do {
        const page = await meta.listTasks({ status: ['waiting', 'running'], createdBefore, cursor, limit: 200 });
        for (const task of page.items) {
          report.checked++;
          try {
            const d = await temporal.workflow.getHandle(task.taskId).describe();
            if (d.status.name === 'RUNNING') continue;
            await meta.finalizeTask(task.taskId, {
              status: 'failed',
              images: [],
              message: `the task's workflow ended as ${d.status.name.toLowerCase()} without a final record`,
              errorKind: 'internal',
            });
            report.failed++;
          } catch (err) {
            if (!(err instanceof WorkflowNotFoundError)) throw err;
            await startGeneration(task);
            logger.info({ taskId: task.taskId }, 'started the workflow of an accepted task that had none');
            report.started++;
          }
        }
        cursor = page.cursor;
      } while (cursor);
      return report;
    },
  };
}
