import type { Client } from '@temporalio/client';
import { semaphoreStateQuery } from '../workflows/definitions.js';
import { grantOrder } from '../workflows/grant-order.js';

/**
 * 1-based place of a waiting task in the order the semaphore will grant (lanes, fair share, arrival: the grant
 * order's own rule), or undefined when it is not queued (or unknown).
 */
export type QueuePositionOf = (taskId: string) => Promise<number | undefined>;

/**
 * Reads queue positions from the semaphore's state query. One query answers every caller for `maxAgeMs`, so many
 * clients polling many waiting tasks cost the semaphore one query per period, not one each.
 */
export function queuePositions(
  temporal: Client,
  semaphoreId: string,
  opts: { maxAgeMs: number; queryTimeoutMs: number },
): QueuePositionOf {
  let cached: { at: number; positions: Promise<Map<string, number>> } | undefined;

  const load = async () => {
    const deadline = Date.now() + opts.queryTimeoutMs;
    const state = await temporal.connection.withDeadline(deadline, () =>
      temporal.workflow.getHandle(semaphoreId).query(semaphoreStateQuery),
    );
    const positions = new Map<string, number>();
    const order = grantOrder(state, Date.now(), { agingMs: (state.priorityAgingS ?? 0) * 1000 });
    order.forEach((waiter, i) => {
      if (!positions.has(waiter.workflowId)) positions.set(waiter.workflowId, i + 1);
    });
    return positions;
  };

  return async (taskId) => {
    const now = Date.now();
    if (!cached || now - cached.at >= opts.maxAgeMs) {
      // A failed query answers "unknown" for this period rather than failing the progress read.
      cached = { at: now, positions: load().catch(() => new Map<string, number>()) };
    }
    return (await cached.positions).get(taskId);
  };
}
