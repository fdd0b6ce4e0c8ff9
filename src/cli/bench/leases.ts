import type { Client } from '@temporalio/client';
import type { LeaseInterval, SemaphoreState } from '../../types.js';
import { semaphoreStateQuery } from '../../workflows/definitions.js';

// The semaphore's own record of its leases. Its state keeps the latest ended leases (`recent`, at most 512), so it
// is queried every half second while the load runs and the leases are merged by (workflowId, leaseId). Times are
// workflow time: ms since the epoch when the grant or release was processed.

const POLL_MS = 500;

export class LeaseRecorder {
  private readonly ended = new Map<string, LeaseInterval>();
  private timer?: NodeJS.Timeout;
  private polling: Promise<void> = Promise.resolve();
  /** The most leases seen held at once in a polled state. */
  maxHolders = 0;
  limit = 0;
  failedPolls = 0;

  constructor(
    private readonly temporal: Client,
    readonly semaphoreId: string,
  ) {}

  /** One query of the semaphore's state, merged into what was seen before. */
  async poll(): Promise<SemaphoreState> {
    const state = await this.temporal.workflow.getHandle(this.semaphoreId).query(semaphoreStateQuery);
    this.limit = state.limit;
    this.maxHolders = Math.max(this.maxHolders, state.holders.length);
    for (const lease of state.recent ?? []) this.ended.set(`${lease.workflowId}\0${lease.leaseId}`, lease);
    return state;
  }

  start(): void {
    this.timer = setInterval(() => {
      this.polling = this.polling.then(() =>
        this.poll().then(
          () => undefined,
          () => {
            // The semaphore may be handing over to its next run; the next poll sees the merged state.
            this.failedPolls++;
          },
        ),
      );
    }, POLL_MS);
  }

  /** Stops polling after one last poll. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.polling;
    await this.poll();
  }

  /** The ended leases seen, by grant time. */
  leases(): LeaseInterval[] {
    return [...this.ended.values()].sort((a, b) => a.grantedAt - b.grantedAt);
  }
}
