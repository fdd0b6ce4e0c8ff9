import type { Client } from '@temporalio/client';
import type { SemaphoreState } from '../types.js';
import { semaphoreStateQuery } from '../workflows/definitions.js';
import { grantOrder, grantPolicyOf } from '../workflows/grant-order.js';

/** The semaphore's state as the API last read it, or undefined when it did not answer. */
export interface SemaphoreStateOf {
  /** A read at most `maxAgeMs` old (waiting for one when the last is older). */
  (): Promise<SemaphoreState | undefined>;
  /**
   * The last state read, at once, a newer read starting behind it when it is stale; only the very first call waits.
   * For answers that must not wait on the semaphore's query (an async submit under load would).
   */
  latest(): Promise<SemaphoreState | undefined>;
}

/**
 * 1-based place of a waiting task in the order the semaphore will grant (lanes, fair share, arrival: the grant
 * order's own rule), or undefined when it is not queued (or unknown).
 */
export type QueuePositionOf = (taskId: string) => Promise<number | undefined>;

/**
 * Reads the semaphore's state query. One query answers every caller for `maxAgeMs`, so many clients polling many
 * waiting tasks cost the semaphore one query per period, not one each. A failed query answers "unknown" for that
 * period rather than failing the read that asked.
 */
export function semaphoreStateReader(
  temporal: Client,
  semaphoreId: string,
  opts: { maxAgeMs: number; queryTimeoutMs: number },
): SemaphoreStateOf {
  let cached: { at: number; state: Promise<SemaphoreState | undefined> } | undefined;
  let settled: SemaphoreState | undefined;
  const load = () =>
    temporal.connection.withDeadline(Date.now() + opts.queryTimeoutMs, () =>
      temporal.workflow.getHandle(semaphoreId).query(semaphoreStateQuery),
    );
  const read = () => {
    const now = Date.now();
    if (!cached || now - cached.at >= opts.maxAgeMs) {
      const state = load().then(
        (s) => {
          settled = s;
          return s;
        },
        () => undefined,
      );
      cached = { at: now, state };
    }
    return cached.state;
  };
  return Object.assign(read, {
    latest() {
      const fresh = read();
      return settled ? Promise.resolve(settled) : fresh;
    },
  });
}

/** Every waiting task's 1-based place in the grant order of `state`, computed once per state read. */
export function grantPositions(): (state: SemaphoreState) => Map<string, number> {
  let computed: { state: SemaphoreState; positions: Map<string, number> } | undefined;
  return (state) => {
    if (computed?.state !== state) {
      const positions = new Map<string, number>();
      grantOrder(state, Date.now(), grantPolicyOf(state)).forEach((waiter, i) => {
        if (!positions.has(waiter.workflowId)) positions.set(waiter.workflowId, i + 1);
      });
      computed = { state, positions };
    }
    return computed.positions;
  };
}

/** Queue positions from the state `stateOf` reads, in grant order. */
export function queuePositions(stateOf: SemaphoreStateOf): QueuePositionOf {
  const positionsIn = grantPositions();
  return async (taskId) => {
    const state = await stateOf();
    return state ? positionsIn(state).get(taskId) : undefined;
  };
}
