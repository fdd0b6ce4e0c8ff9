import { WorkflowNotFoundError } from '@temporalio/client';
import { emptySemaphoreState, type LeaseRef, type TaskPolicy } from '../types.js';
import { acquireSignal } from '../workflows/definitions.js';
import type { semaphoreWorkflow } from '../workflows/semaphore.js';
import type { ActivityDeps } from './index.js';

export function createSlotActivities({ temporal, taskQueue }: ActivityDeps) {
  return {
    /** Queues a lease at the semaphore, starting the semaphore if it is not running (workflows cannot do this). */
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
