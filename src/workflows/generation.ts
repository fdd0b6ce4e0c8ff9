import {
  ApplicationFailure,
  CancellationScope,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import {
  EMPTY_SD_STATE,
  type GenerationInput,
  type LeaseRef,
  SEARCH_ATTRIBUTES,
  type TaskOutcome,
  type TaskStatus,
  type TaskSummary,
} from '../types.js';
import { progressQuery, releaseSignal } from './definitions.js';
import { generationWorkflowV1 } from './generation-v1.js';
import { failed, failureOutcome, gpuActivityOptions, resolveSeeds, whenModelReady } from './task-steps.js';

// One task, top to bottom (docs/ARCHITECTURE.md, "The request path"). The workflow id is the taskId.
//
// The workflow does the least that needs a durable decision: it resolves the seeds, hands the whole GPU part to one
// activity (`runTask`: function, slot, invoke, release, success record), and records any other ending itself, in a
// local activity. Progress travels as the activity's heartbeat details and SD's info never passes through the
// history: a task is about 16 history events, and its first workflow task schedules the GPU work at once.

/** The version marker: tasks started before it run the first version to the end. */
export const SLOT_IN_INVOKE = 'slot-in-invoke';

function activitiesFor(input: GenerationInput) {
  const p = input.policy;
  const { finalizeTask } = proxyLocalActivities<Activities>({
    startToCloseTimeout: '30s',
    retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: p.activityMaxAttempts },
  });
  const { runTask } = proxyActivities<Activities>(gpuActivityOptions(input));
  return { finalizeTask, runTask };
}

export async function generationWorkflow(input: GenerationInput): Promise<TaskSummary> {
  if (!patched(SLOT_IN_INVOKE)) return generationWorkflowV1(input);
  // The Web UI's current details: no command, so replay is unaffected. The fine phases are runTask's heartbeat.
  setCurrentDetails(
    "**waiting for a GPU slot, then running**: the runTask activity's heartbeat has the phase and progress",
  );
  const { taskId } = input;
  const acts = activitiesFor(input);
  let status: TaskStatus = 'waiting';
  // Live progress is the runTask activity's heartbeat; the workflow answers for the states it decides itself.
  setHandler(progressQuery, () => ({
    taskId,
    status,
    progress: status === 'waiting' ? 0 : 1,
    etaRelative: 0,
    state: EMPTY_SD_STATE,
    phase: status === 'waiting' ? 'queued' : 'finished',
    currentImage: null,
  }));

  const params = resolveSeeds(input.kind, input.params);
  // One lease for every attempt: a retried attempt takes the slot its predecessor held, never a second one.
  const lease: LeaseRef = { workflowId: taskId, runId: workflowInfo().runId, leaseId: uuid4() };

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

  let outcome: TaskOutcome | undefined;
  let summary: TaskSummary | undefined;
  let cancelledBy: unknown;
  try {
    summary = await work.run(() =>
      whenModelReady(
        () =>
          acts.runTask({
            request: { taskId, user: input.user, kind: input.kind, model: input.model, params, admin: input.admin },
            lease,
            owner: input.owner ?? { user: input.user },
            ...(input.deadlineAt !== undefined ? { deadlineAt: input.deadlineAt } : {}),
            submittedAt: Date.parse(input.submittedAt),
            semaphore: { id: input.semaphoreId, policy: input.policy.semaphore },
          }),
        input.policy.modelBusyRetryS,
      ),
    );
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
  }

  if (outcome) {
    // runTask releases its slot itself; one that did not end normally (a lost worker, a cancel while queued) may not
    // have, so the release is sent again. It is idempotent.
    await CancellationScope.nonCancellable(async () => {
      try {
        await getExternalWorkflowHandle(input.semaphoreId).signal(releaseSignal, lease);
      } catch (err) {
        log.warn('release not delivered', { error: String(err) });
      }
    });
    // The stored record is authoritative: if another writer finalized first, its record stands.
    const finalOutcome = outcome;
    summary = await CancellationScope.nonCancellable(() => acts.finalizeTask(finalOutcome));
  }
  const final = summary!;
  status = final.status;
  setCurrentDetails(final.message ? `**${final.status}**: ${final.message}` : `**${final.status}**`);
  upsertSearchAttributes([{ key: SEARCH_ATTRIBUTES.status, value: final.status }]);

  // The Temporal status mirrors the task's, so the Web UI tells failed and cancelled tasks apart.
  if (final.status === 'cancelled' && cancelledBy) throw cancelledBy;
  if (final.status === 'failed') {
    throw ApplicationFailure.create({ message: final.message ?? 'failed', type: final.errorKind, nonRetryable: true });
  }
  return final;
}
