import { condition, continueAsNew, log, proxyActivities, setHandler } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { type RetentionSettings, retentionSettingsSignal } from './definitions.js';

// Retention (SDFLOW_RETENTION_DAYS): every period, the data of final tasks past the age is deleted and their records
// kept as `deleted`. A long-running workflow like the reconciler rather than a Temporal Schedule: one execution per
// deployment, started by every worker with its settings by signal (so a changed setting applies at the next worker
// start, and turning it off stops it), and visible in the Web UI with its last rounds.

const { deleteOldTasks } = proxyActivities<Activities>({
  startToCloseTimeout: '1h',
  retry: { initialInterval: '5s', maximumInterval: '1m', maximumAttempts: 3 },
});

const ROUNDS_PER_RUN = 100;

export async function retentionWorkflow(input: RetentionSettings): Promise<void> {
  let settings: RetentionSettings | null = input;
  setHandler(retentionSettingsSignal, (next) => {
    settings = next;
  });
  for (let round = 0; round < ROUNDS_PER_RUN; round++) {
    const current: RetentionSettings | null = settings;
    if (!current) return;
    try {
      const deleted = await deleteOldTasks({ maxAgeS: current.maxAgeDays * 86_400 });
      if (deleted > 0) log.info('deleted the data of old tasks', { deleted, maxAgeDays: current.maxAgeDays });
    } catch (err) {
      log.warn('retention round failed; the next round retries', { error: String(err) });
    }
    // Wakes early only to stop.
    await condition(() => settings === null, current.periodS * 1000);
  }
  if (settings) await continueAsNew<typeof retentionWorkflow>(settings);
}
