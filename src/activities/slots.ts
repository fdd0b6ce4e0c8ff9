import { type Client, WithStartWorkflowOperation, WorkflowNotFoundError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import {
  emptySemaphoreState,
  type LeaseOutcome,
  type LeaseRef,
  NON_RETRYABLE,
  type SlotAnswer,
  type SlotRequest,
  type TaskPolicy,
} from '../types.js';
import { acquireSignal, acquireUpdate, releaseSignal } from '../workflows/definitions.js';
import type { semaphoreWorkflow } from '../workflows/semaphore.js';
import type { ActivityDeps } from './index.js';

// The client side of the semaphore (docs/ARCHITECTURE.md, "The cap"): acquire by update, which answers once the
// lease is granted, and release by signal. The invoke activity holds its task's slot with these, and so do the
// benchmark's bare acquire/release cycles.

/** Which semaphore, and what to start it with should it not be running. */
export interface SemaphoreRef {
  id: string;
  taskQueue: string;
  policy: TaskPolicy['semaphore'];
}

/** How long to wait before asking again a semaphore run that was handing over to its successor. */
const ASK_AGAIN_MS = 20;
/**
 * How often an acquire the server refused is asked again before the caller sees the error. An update that arrives
 * while the semaphore's run hands over to its successor can be failed by the server ("unexpected workflow task
 * failure"); asked again, it reaches the new run.
 */
const REFUSED_ATTEMPTS = 10;

function startOperation(semaphore: SemaphoreRef) {
  return new WithStartWorkflowOperation<typeof semaphoreWorkflow>('semaphoreWorkflow', {
    workflowId: semaphore.id,
    taskQueue: semaphore.taskQueue,
    workflowIdConflictPolicy: 'USE_EXISTING',
    args: [
      {
        state: emptySemaphoreState(semaphore.policy.initialLimit),
        leaseCheckS: semaphore.policy.leaseCheckS,
        continueAsNewAfterGrants: semaphore.policy.continueAsNewAfterGrants,
        priorityAgingS: semaphore.policy.priorityAgingS,
        ...(semaphore.policy.breaker ? { breaker: semaphore.policy.breaker } : {}),
      },
    ],
  });
}

/**
 * Waits until the lease is granted, or `signal` aborts. Granting a lease that already holds a slot (a retried
 * attempt of the same task) answers at once: the slot stays the task's across attempts. A request whose deadline
 * passed while it waited fails for good (`TaskDeadline`): it never takes a slot.
 */
export async function acquireSlot(
  temporal: Client,
  semaphore: SemaphoreRef,
  request: SlotRequest,
  signal: AbortSignal,
): Promise<void> {
  const handle = temporal.workflow.getHandle(semaphore.id);
  const ask = async () => {
    try {
      return await temporal.connection.withAbortSignal(signal, () =>
        handle.executeUpdate(acquireUpdate, { args: [request] }),
      );
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
      // Not running (never started in this namespace, or terminated by hand): start it with the request.
      return temporal.connection.withAbortSignal(signal, () =>
        temporal.workflow.executeUpdateWithStart(acquireUpdate, {
          args: [request],
          startWorkflowOperation: startOperation(semaphore),
        }),
      );
    }
  };
  let refused = 0;
  for (;;) {
    signal.throwIfAborted();
    let answer: SlotAnswer;
    try {
      answer = await ask();
      refused = 0;
    } catch (err) {
      if (signal.aborted || ++refused >= REFUSED_ATTEMPTS) throw err;
      await new Promise((resolve) => setTimeout(resolve, ASK_AGAIN_MS * (refused + 1)));
      continue;
    }
    if (answer.granted) return;
    if (answer.expired) {
      throw ApplicationFailure.create({
        type: NON_RETRYABLE.taskDeadline,
        message: 'Task-Deadline passed while the task waited for a GPU slot; it never started',
        nonRetryable: true,
      });
    }
    await new Promise((resolve) => setTimeout(resolve, ASK_AGAIN_MS * (refused + 1)));
  }
}

/**
 * Frees a held slot or withdraws a queued request. Idempotent: a lease already released is no one's slot. A holder's
 * `outcome` (its GPU part succeeded, or an instance failed it) counts toward its checkpoint's circuit breaker.
 */
export async function releaseSlot(
  temporal: Client,
  semaphoreId: string,
  lease: LeaseRef,
  outcome?: LeaseOutcome,
): Promise<void> {
  const { workflowId, runId, leaseId } = lease;
  await temporal.workflow
    .getHandle(semaphoreId)
    .signal(releaseSignal, { workflowId, runId, leaseId, ...(outcome ? { outcome } : {}) });
}

export function createSlotActivities({ temporal, taskQueue }: ActivityDeps) {
  return {
    /** The first version's acquire: queues a lease by signal, starting the semaphore if it is not running. */
    async requestSlot(input: { semaphoreId: string; lease: LeaseRef; policy: TaskPolicy['semaphore'] }) {
      await temporal.workflow.signalWithStart<typeof semaphoreWorkflow, [LeaseRef]>('semaphoreWorkflow', {
        workflowId: input.semaphoreId,
        taskQueue,
        args: [
          {
            state: emptySemaphoreState(input.policy.initialLimit),
            leaseCheckS: input.policy.leaseCheckS,
            continueAsNewAfterGrants: input.policy.continueAsNewAfterGrants,
          },
        ],
        signal: acquireSignal,
        signalArgs: [input.lease],
      });
    },

    /** The leases whose workflow run is closed (or gone). Any other error fails the check: nothing is freed on doubt. */
    async findClosedWorkflows(leases: LeaseRef[]): Promise<LeaseRef[]> {
      const closed: LeaseRef[] = [];
      for (const lease of leases) {
        try {
          const d = await temporal.workflow.getHandle(lease.workflowId, lease.runId).describe();
          if (d.status.name !== 'RUNNING') closed.push(lease);
        } catch (err) {
          if (err instanceof WorkflowNotFoundError) closed.push(lease);
          else throw err;
        }
      }
      return closed;
    },
  };
}
