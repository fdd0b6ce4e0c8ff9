import { continueAsNew, log, proxyActivities, sleep } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';

// The periodic reconciler (docs/ARCHITECTURE.md, "Durability"): a task row still open whose workflow is closed is
// marked failed, and one whose workflow never started is started. It is a workflow so it survives restarts and shows
// in the Web UI.

export interface ReconcilerInput {
  periodS: number;
  graceS: number;
}

const { reconcileOpenTasks } = proxyActivities<Activities>({
  startToCloseTimeout: '5m',
  retry: { initialInterval: '5s', maximumInterval: '1m', maximumAttempts: 3 },
});

const ROUNDS_PER_RUN = 100;

export async function reconcilerWorkflow(input: ReconcilerInput): Promise<void> {
  for (let round = 0; round < ROUNDS_PER_RUN; round++) {
    await sleep(input.periodS * 1000);
    try {
      const report = await reconcileOpenTasks({ graceS: input.graceS });
      if (report.failed + report.started > 0) log.info('reconciled open tasks', { ...report });
    } catch (err) {
      log.warn('reconcile round failed; next round retries', { error: String(err) });
    }
  }
  await continueAsNew<typeof reconcilerWorkflow>(input);
}
