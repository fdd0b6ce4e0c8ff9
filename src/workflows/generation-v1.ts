import {
  ApplicationFailure,
  CancellationScope,
  condition,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  proxyActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities, InvokeResult } from '../activities/index.js';
import {
  EMPTY_SD_STATE,
  type GenerationInput,
  type LeaseRef,
  type ProgressSnapshot,
  SEARCH_ATTRIBUTES,
  type TaskOutcome,
  type TaskStatus,
  type TaskSummary,
} from '../types.js';
import { progressQuery, progressSignal, releaseSignal, slotGrantedSignal } from './definitions.js';
import { failed, failureOutcome, gpuActivityOptions, resolveSeeds, whenModelReady } from './task-steps.js';

// The generation workflow's first version, kept to finish the tasks started before the slot moved into the invoke
// (docs/ARCHITECTURE.md, "Replay and versioning"): seeds, function, slot by signal, mark running, invoke (progress
// by signal), release, final record. It can go once no task started by that version is open.

function activitiesFor(input: GenerationInput) {
  const p = input.policy;
  const bookkeeping = proxyActivities<Activities>({
    startToCloseTimeout: '30s',
    retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: p.activityMaxAttempts },
  });
  // proxyActivities returns a Proxy: its members are picked one by one, never spread.
  const { invokeFunction } = proxyActivities<Activities>(gpuActivityOptions(input));
  const { ensureFunction, requestSlot, markRunning, finalizeTask } = bookkeeping;
  return { ensureFunction, requestSlot, markRunning, finalizeTask, invokeFunction };
}

export async function generationWorkflowV1(input: GenerationInput): Promise<TaskSummary> {
  const { taskId } = input;
  const acts = activitiesFor(input);
  let status: TaskStatus = 'waiting';
  let snapshot: ProgressSnapshot = {
    progress: 0,
    etaRelative: 0,
    state: EMPTY_SD_STATE,
    phase: 'queued',
    currentImage: null,
  };
  const grants = new Set<string>();

  setHandler(progressQuery, () => ({ taskId, status, ...snapshot }));
  setHandler(progressSignal, (p) => {
    if (status === 'running') snapshot = p;
  });
  setHandler(slotGrantedSignal, ({ leaseId }) => {
    grants.add(leaseId);
  });

  const setStatus = (next: TaskStatus) => {
    status = next;
    upsertSearchAttributes([{ key: SEARCH_ATTRIBUTES.status, value: next }]);
  };

  const params = resolveSeeds(input.kind, input.params);
  const lease: LeaseRef = { workflowId: taskId, runId: workflowInfo().runId, leaseId: uuid4() };
  let slotRequested = false;

  const releaseSlot = async () => {
    if (!slotRequested) return;
    slotRequested = false;
    try {
      await getExternalWorkflowHandle(input.semaphoreId).signal(releaseSignal, lease);
    } catch (err) {
      // A semaphore that is gone holds no lease of ours.
      log.warn('release not delivered', { error: String(err) });
    }
  };

  const run = async (): Promise<InvokeResult> => {
    const { functionName } = await whenModelReady(
      () => acts.ensureFunction({ model: input.model }),
      input.policy.modelBusyRetryS,
    );
    slotRequested = true;
    // Not cancellable: a request still in flight when the release goes out could queue the lease after it.
    await CancellationScope.nonCancellable(() =>
      acts.requestSlot({ semaphoreId: input.semaphoreId, lease, policy: input.policy.semaphore }),
    );
    await condition(() => grants.has(lease.leaseId));
    setStatus('running');
    snapshot = { ...snapshot, phase: 'starting' };
    await acts.markRunning(taskId);
    try {
      return await acts.invokeFunction({
        functionName,
        request: { taskId, user: input.user, kind: input.kind, model: input.model, params, admin: input.admin },
      });
    } finally {
      // The GPU is freed as soon as the invoke ends, before any bookkeeping.
      await CancellationScope.nonCancellable(releaseSlot);
    }
  };

  let deadlineReached = false;
  const work = new CancellationScope();
  const deadline = new CancellationScope();
  deadline
    .run(() => sleep(input.deadlineS * 1000))
    .then(
      () => {
        deadlineReached = true;
        work.cancel();
      },
      () => undefined,
    );

  let outcome: TaskOutcome;
  let cancelledBy: unknown;
  try {
    const result = await work.run(run);
    outcome = { taskId, status: 'succeeded', ...result };
  } catch (err) {
    if (deadlineReached) {
      outcome = failed(taskId, 'deadline', `task deadline of ${input.deadlineS}s exceeded`);
    } else if (isCancellation(err)) {
      cancelledBy = err;
      outcome = { taskId, status: 'cancelled', images: [], message: 'cancelled by request' };
    } else {
      outcome = failureOutcome(taskId, err);
    }
  } finally {
    deadline.cancel();
    await CancellationScope.nonCancellable(releaseSlot);
  }

  // The stored record is authoritative: if another writer finalized first, its record stands.
  const final = await CancellationScope.nonCancellable(() => acts.finalizeTask(outcome));
  status = final.status;
  snapshot = { ...snapshot, progress: 1, etaRelative: 0, phase: 'finished' };
  setStatus(final.status);

  // The Temporal status mirrors the task's, so the Web UI tells failed and cancelled tasks apart.
  if (final.status === 'cancelled' && cancelledBy) throw cancelledBy;
  if (final.status === 'failed') {
    throw ApplicationFailure.create({ message: final.message ?? 'failed', type: final.errorKind, nonRetryable: true });
  }
  return final;
}
