import { type Client, ServiceError, WorkflowUpdateFailedError } from '@temporalio/client';
import { acquireSlot, releaseSlot, type SemaphoreRef } from '../../activities/slots.js';
import { maxOverlap } from '../../sim/stats.js';
import type { LeaseRef } from '../../types.js';
import { LeaseRecorder } from './leases.js';
import type { SemaphoreResult } from './report.js';
import { round3 } from './stats.js';

// The semaphore alone: no task workflow, no instance. Concurrent loops each acquire a slot (by update, as a task's
// activity does) and release it at once, against a semaphore of the benchmark's own. The holders' workflow ids are
// made up, so its lease check, which would free them as closed, runs only once an hour.

/** Attempts of one acquire before the scenario fails. */
const MAX_ATTEMPTS = 5;

export interface SemaphoreInput {
  temporal: Client;
  /** A task queue a worker polls: the semaphore workflow runs there. */
  taskQueue: string;
  limit: number;
  loops: number;
  durationS: number;
}

export async function runSemaphore(o: SemaphoreInput): Promise<SemaphoreResult> {
  const semaphore: SemaphoreRef = {
    id: `sdflow-semaphore-bench-${Date.now().toString(36)}`,
    taskQueue: o.taskQueue,
    policy: { leaseCheckS: 3600, continueAsNewAfterGrants: 300, initialLimit: o.limit },
  };
  let retries = 0;
  const acquire = async (lease: LeaseRef) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await acquireSlot(o.temporal, semaphore, { lease }, new AbortController().signal);
      } catch (err) {
        // An update the server aborted (its workflow task failed) is asked again, as a task's activity retry would;
        // the acquire of a lease already queued or held is idempotent.
        if (!(err instanceof WorkflowUpdateFailedError || err instanceof ServiceError) || attempt >= MAX_ATTEMPTS) {
          throw err;
        }
        retries++;
      }
    }
  };
  const cycle = async (holder: number, n: number) => {
    const lease = { workflowId: `sdflow-bench-holder-${holder}`, runId: 'bench', leaseId: String(n) };
    await acquire(lease);
    const grantedAt = performance.now();
    await releaseSlot(o.temporal, semaphore.id, lease);
    return grantedAt;
  };
  // The first acquire starts the semaphore.
  await cycle(0, 0);

  const recorder = new LeaseRecorder(o.temporal, semaphore.id);
  let grants = 0;
  recorder.start();
  const end = performance.now() + o.durationS * 1000;
  try {
    await Promise.all(
      Array.from({ length: o.loops }, async (_, i) => {
        for (let n = 1; performance.now() < end; n++) if ((await cycle(i + 1, n)) <= end) grants++;
      }),
    );
  } finally {
    await recorder.stop();
    await o.temporal.workflow
      .getHandle(semaphore.id)
      .terminate('benchmark done')
      .catch(() => undefined);
  }
  const ended = recorder.leases().map((l) => ({ start: l.grantedAt, end: l.releasedAt }));
  return {
    grants_per_s: round3(grants / o.durationS),
    max_granted: Math.max(recorder.maxHolders, maxOverlap(ended)),
    limit: recorder.limit,
    grants,
    duration_s: o.durationS,
    loops: o.loops,
    acquire_retries: retries,
  };
}
