import { WorkflowNotFoundError } from '@temporalio/client';
import type { TaskRecord } from '../records.js';
import { announceTaskEnd } from '../task-endings.js';
import type { ActivityDeps } from './index.js';

/** Starts the generation workflow for a task row (idempotent: an existing workflow id is left alone). */
export type GenerationStarter = (task: TaskRecord) => Promise<void>;

/**
 * Model rows left `registering` or `loading` with nothing to settle them are marked failed with the reason: a
 * registration workflow that closed without settling its row (terminated, timed out), or an upload that ended
 * without ever starting one (the API stopped mid-upload). A failed model can then be registered again.
 */
async function reconcileStuckModels(
  { meta, temporal, registrationWorkflowId, uploadTimeoutS, logger }: ActivityDeps,
  graceS: number,
): Promise<number> {
  const now = Date.now();
  let failed = 0;
  const busy = (await meta.listModels()).filter((m) => m.status === 'registering' || m.status === 'loading');
  for (const model of busy) {
    const idleS = (now - Date.parse(model.lastModificationTime)) / 1000;
    if (idleS < graceS) continue;
    let reason: string;
    try {
      const d = await temporal.workflow.getHandle(registrationWorkflowId(model.name)).describe();
      if (d.status.name === 'RUNNING') continue;
      // A closed earlier registration (this row's may not have started yet) only counts once the upload is surely over.
      if (Date.parse(model.lastModificationTime) > d.closeTime!.getTime() && idleS < uploadTimeoutS + graceS) continue;
      reason = `its registration workflow ended as ${d.status.name.toLowerCase()} without settling it`;
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
      if (idleS < uploadTimeoutS + graceS) continue;
      reason = 'its registration never started (the upload was cut off, or the API stopped mid-upload)';
    }
    const current = await meta.getModel(model.name);
    if (current?.status !== model.status || current.lastModificationTime !== model.lastModificationTime) continue;
    await meta.putModel({
      ...current,
      status: 'failed',
      message: `${reason}; register it again with PUT /models/${model.name}`,
      lastModificationTime: new Date().toISOString(),
    });
    logger.warn({ model: model.name, reason }, 'marked a stuck model registration failed');
    failed++;
  }
  return failed;
}

export function createReconcileActivities(deps: ActivityDeps) {
  const { meta, temporal, startGeneration, logger } = deps;
  return {
    /**
     * Looks at every task row still open after a grace period. A closed workflow means the final record was never
     * written (terminated, timed out): the row is marked failed with the reason. A workflow that never started (the
     * API stopped between the row and the start) is started now, so an accepted task is never lost. Stuck model
     * registrations are settled in the same round (`reconcileStuckModels`).
     */
    async reconcileOpenTasks({
      graceS,
    }: {
      graceS: number;
    }): Promise<{ checked: number; failed: number; started: number; modelsFailed: number }> {
      const createdBefore = new Date(Date.now() - graceS * 1000).toISOString();
      const report = { checked: 0, failed: 0, started: 0, modelsFailed: 0 };
      let cursor: string | undefined;
      do {
        const page = await meta.listTasks({ status: ['waiting', 'running'], createdBefore, cursor, limit: 200 });
        for (const task of page.items) {
          report.checked++;
          try {
            const d = await temporal.workflow.getHandle(task.taskId).describe();
            if (d.status.name === 'RUNNING') continue;
            const stored = await meta.finalizeTask(task.taskId, {
              status: 'failed',
              images: [],
              message: `the task's workflow ended as ${d.status.name.toLowerCase()} without a final record`,
              errorKind: 'internal',
            });
            if (stored) await announceTaskEnd(deps, stored);
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
      report.modelsFailed = await reconcileStuckModels(deps, graceS);
      return report;
    },
  };
}
