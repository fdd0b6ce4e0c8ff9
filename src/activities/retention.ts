import { sweepOldTasks } from '../retention.js';
import type { ActivityDeps } from './index.js';

export function createRetentionActivities({ meta, store, temporal }: ActivityDeps) {
  return {
    /** Deletes the data of final tasks created more than `maxAgeS` ago; answers how many. */
    async deleteOldTasks({ maxAgeS }: { maxAgeS: number }): Promise<number> {
      return sweepOldTasks({ meta, store, temporal }, maxAgeS);
    },
  };
}
