import {
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  proxyActivities,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { LeaseRef, SemaphoreHolder, SemaphoreInput, SemaphoreState } from '../types.js';
import { acquireSignal, releaseSignal, semaphoreStateQuery, setLimitSignal, slotGrantedSignal } from './definitions.js';

// The deployment's one global semaphore (docs/ARCHITECTURE.md, "The cap"): FIFO grants by signal, leases keyed by
// (workflowId, runId, leaseId), idempotent release, and a slot freed only by its holder's release or by the holder's
// workflow being found closed. Its state crosses continue-as-new intact.

const { findClosedWorkflows } = proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', maximumInterval: '10s', maximumAttempts: 3 },
});

const sameLease = (a: LeaseRef, b: LeaseRef) =>
  a.workflowId === b.workflowId && a.runId === b.runId && a.leaseId === b.leaseId;

export async function semaphoreWorkflow(input: SemaphoreInput): Promise<void> {
  const state: SemaphoreState = { ...input.state, grantsThisRun: 0 };
  let changed = true;
  let grantsInFlight = 0;

  setHandler(acquireSignal, (lease) => {
    const known = state.holders.some((h) => sameLease(h, lease)) || state.queue.some((w) => sameLease(w, lease));
    if (!known) state.queue.push({ ...lease, requestedAt: Date.now() });
    changed = true;
  });
  setHandler(releaseSignal, (lease) => {
    state.holders = state.holders.filter((h) => !sameLease(h, lease));
    state.queue = state.queue.filter((w) => !sameLease(w, lease));
    changed = true;
  });
  setHandler(setLimitSignal, (limit) => {
    if (Number.isInteger(limit) && limit >= 1) state.limit = limit;
    changed = true;
  });
  setHandler(semaphoreStateQuery, () => state);

  /** Signals the grant; a holder that cannot receive it (closed, not found) has released at once. */
  const sendGrant = async (holder: SemaphoreHolder) => {
    grantsInFlight++;
    try {
      await getExternalWorkflowHandle(holder.workflowId, holder.runId).signal(slotGrantedSignal, {
        leaseId: holder.leaseId,
      });
    } catch (err) {
      log.warn('grant not delivered; slot freed', { workflowId: holder.workflowId, error: String(err) });
      state.holders = state.holders.filter((h) => !sameLease(h, holder));
      changed = true;
    } finally {
      grantsInFlight--;
    }
  };

  const grantWhilePossible = () => {
    while (state.holders.length < state.limit && state.queue.length > 0) {
      const next = state.queue.shift()!;
      const holder: SemaphoreHolder = {
        workflowId: next.workflowId,
        runId: next.runId,
        leaseId: next.leaseId,
        grantedAt: Date.now(),
      };
      state.holders.push(holder);
      state.totalGrants++;
      state.grantsThisRun++;
      void sendGrant(holder);
    }
  };

  const shouldContinueAsNew = () =>
    workflowInfo().continueAsNewSuggested || state.grantsThisRun >= input.continueAsNewAfterGrants;

  // One standing timer per lease-check period: a steady stream of signals neither postpones the check nor adds a
  // timer to the history at every wake-up.
  let leaseCheckDue = false;
  let leaseTimerArmed = false;
  const armLeaseCheck = () => {
    if (leaseTimerArmed) return;
    leaseTimerArmed = true;
    void sleep(input.leaseCheckS * 1000).then(() => {
      leaseTimerArmed = false;
      leaseCheckDue = true;
    });
  };

  while (!shouldContinueAsNew()) {
    changed = false;
    grantWhilePossible();
    if (shouldContinueAsNew()) break;
    if (state.holders.length > 0) armLeaseCheck();
    await condition(() => changed || leaseCheckDue);
    if (leaseCheckDue) {
      leaseCheckDue = false;
      if (state.holders.length > 0) await freeSlotsOfClosedHolders(state);
    }
  }

  // Outstanding grant signals must settle before the state moves on: a failed one frees its slot.
  await condition(() => grantsInFlight === 0 && allHandlersFinished());
  await continueAsNew<typeof semaphoreWorkflow>({ ...input, state });
}

/** Time alone never frees a slot; a holder whose workflow is closed (terminated, timed out) does. */
async function freeSlotsOfClosedHolders(state: SemaphoreState): Promise<void> {
  const checked = state.holders.map(({ workflowId, runId, leaseId }) => ({ workflowId, runId, leaseId }));
  let closed: LeaseRef[];
  try {
    closed = await findClosedWorkflows(checked);
  } catch (err) {
    // Not knowing is not a reason to free anything: keep the slots and check again next period.
    log.warn('lease check failed; holders kept', { error: String(err) });
    return;
  }
  if (closed.length === 0) return;
  log.info('freeing slots of closed holders', { closed: closed.map((c) => c.workflowId) });
  state.holders = state.holders.filter((h) => !closed.some((c) => sameLease(c, h)));
}
