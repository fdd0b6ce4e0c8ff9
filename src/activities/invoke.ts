import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import { FunctionNotFoundError, FunctionUnavailableError } from '../platform/functions/port.js';
import { type ErrorEvent, type ProgressEvent, readInvoke, type TerminalEvent } from '../protocol/events.js';
import type { InvokeRequest } from '../protocol/invoke.js';
import type { FunctionRecord, TaskRecord } from '../records.js';
import { announceTaskEnd } from '../task-endings.js';
import {
  EMPTY_SD_STATE,
  INSTANCE_FAULTS,
  type InstanceFault,
  isFinal,
  type LeaseOutcome,
  type LeaseRef,
  NON_RETRYABLE,
  type ProgressSnapshot,
  type SlotOwner,
  type TaskCost,
  type TaskPolicy,
  type TaskSummary,
} from '../types.js';
import { progressSignal } from '../workflows/definitions.js';
import { billingRateFor, type CostInput, taskCost } from './cost.js';
import type { ActivityDeps } from './index.js';
import { acquireSlot, releaseSlot } from './slots.js';
import { taskReporter } from './task-reporter.js';
import { checkpointFunction, provideFunction } from './tasks.js';
import { invokeTimer } from './timings.js';

export interface InvokeResult {
  images: string[];
  info: string;
  parameters: Record<string, unknown>;
}

/** What the GPU part of a task needs: its request (which names its checkpoint), and the slot it runs under. */
export interface RunTaskInput {
  request: InvokeRequest;
  lease: LeaseRef;
  owner: SlotOwner;
  /** Epoch ms by which the slot must be granted (the request's Task-Deadline); past it, the task never starts. */
  deadlineAt?: number;
  /** Epoch ms of the task's submission: its place in its user's lane at the semaphore. */
  submittedAt?: number;
  semaphore: { id: string; policy: TaskPolicy['semaphore'] };
}

const INVOKE_FAILED = 'InvokeFailed';

const QUEUED: ProgressSnapshot = {
  phase: 'queued',
  progress: 0,
  etaRelative: 0,
  state: EMPTY_SD_STATE,
  currentImage: null,
};

/** The failure type the workflow reads a final agent error by: only SD's rejection of the input is the caller's. */
function nonRetryableType(kind: ErrorEvent['kind']): string {
  if (kind === 'bad_input') return NON_RETRYABLE.badInput;
  if (kind === 'not_found') return NON_RETRYABLE.modelNotFound;
  return INVOKE_FAILED;
}

/** The instance failure a failed attempt carries, which its checkpoint's circuit breaker counts; else undefined. */
function instanceFault(failure: unknown): LeaseOutcome | undefined {
  if (!(failure instanceof ApplicationFailure) || failure.nonRetryable) return undefined;
  const fault = (failure.details?.[0] as { fault?: InstanceFault } | undefined)?.fault;
  if (fault === undefined || !INSTANCE_FAULTS.includes(fault)) return undefined;
  return { ok: false, fault, message: failure.message };
}

/** The workflow's view of a final task row. */
const summaryOf = (task: TaskRecord): TaskSummary => ({
  taskId: task.taskId,
  status: isFinal(task.status) ? task.status : 'failed',
  images: task.images,
  ...(task.message ? { message: task.message } : {}),
  ...(task.errorKind ? { errorKind: task.errorKind } : {}),
});

export function createInvokeActivities(deps: ActivityDeps) {
  const { functions, temporal, meta, taskQueue, progressSignalMs, invokeIdleTimeoutS, logger } = deps;

  /**
   * One invoke on the function, as an activity runs it: cancelled with the activity, ended by the idle timeout when
   * the function goes quiet, and its final event turned into the activity's result or failure.
   */
  async function invoke(
    ctx: Context,
    functionName: string,
    request: InvokeRequest,
    onProgress: (event: ProgressEvent) => void,
  ): Promise<Extract<TerminalEvent, { type: 'result' }>> {
    const abort = new AbortController();
    const onCancel = () => abort.abort(ctx.cancellationSignal.reason);
    ctx.cancellationSignal.addEventListener('abort', onCancel);
    let idle: NodeJS.Timeout | undefined;
    const resetIdle = () => {
      clearTimeout(idle);
      idle = setTimeout(
        () => abort.abort(new Error(`no word from the function for ${invokeIdleTimeoutS}s`)),
        invokeIdleTimeoutS * 1000,
      );
    };
    try {
      resetIdle();
      const end = await readInvoke(functions.invoke(functionName, request, { signal: abort.signal }), (event) => {
        resetIdle();
        onProgress(event);
      });
      if (end.type === 'result') return end;
      if (end.retryable) {
        throw ApplicationFailure.retryable(end.message, INVOKE_FAILED, { kind: end.kind, fault: end.fault });
      }
      throw ApplicationFailure.nonRetryable(end.message, nonRetryableType(end.kind), {
        kind: end.kind,
        status: end.status,
      });
    } catch (err) {
      if (err instanceof FunctionNotFoundError) {
        // The function vanished (deleted by an admin, or lost by the runtime): recreate it for the retry, with
        // the resources its record holds (and the record, when that is gone too).
        await provideFunction(deps, request.model, true);
      }
      throw explain(err, ctx, functionName);
    } finally {
      clearTimeout(idle);
      ctx.cancellationSignal.removeEventListener('abort', onCancel);
      if (!abort.signal.aborted) abort.abort();
    }
  }

  return {
    /**
     * The GPU part of a task, in one activity: find (or create) its checkpoint's function, wait for a slot, mark the
     * task running, invoke the function, give the slot back the moment SD is done (before the images are uploaded),
     * and write the success record, SD's info included, so that it never passes through the workflow's history.
     * Progress is the heartbeat's details, and each change of phase a status event. A checkpoint being re-registered
     * fails it at once with ModelBusy: the workflow waits and runs it again.
     */
    async runTask(input: RunTaskInput): Promise<TaskSummary> {
      const ctx = Context.current();
      const { taskId } = input.request;
      const row = meta.getTask(taskId);
      if (ctx.info.attempt > 1) {
        // An earlier attempt may have written the success record and then lost its worker.
        const stored = await row;
        if (stored && isFinal(stored.status)) {
          await announceTaskEnd(deps, stored);
          return summaryOf(stored);
        }
      }
      const webhook = row.then((task) => task?.webhook).catch(() => undefined);
      const report = taskReporter(deps, taskId, webhook, { sendStart: ctx.info.attempt === 1 });
      let progress = QUEUED;
      report.queued();
      // Heartbeats come from this ticker only (each is a write at the Temporal server; a short task ends before its
      // first). Every queued task beats, and hundreds may queue: while queued there is nothing new to say, so it beats
      // only as often as its heartbeat timeout needs. Once running, every second, as progress moves.
      const queuedBeatMs = (ctx.info.heartbeatTimeoutMs ?? 2000) / 2;
      let lastBeat = Date.now();
      const heartbeat = setInterval(() => {
        if (progress.phase === 'queued' && Date.now() - lastBeat < queuedBeatMs) return;
        lastBeat = Date.now();
        ctx.heartbeat(progress);
      }, 1000);
      const slot = { id: input.semaphore.id, taskQueue, policy: input.semaphore.policy };
      // Released once, and only when asked for: a task that fails before it queues has nothing to give back. The
      // release says how the checkpoint did (success, or an instance failure), for its circuit breaker.
      let asked = false;
      let released = false;
      const release = async (outcome?: LeaseOutcome) => {
        if (!asked || released) return;
        released = true;
        await releaseSlot(temporal, slot.id, input.lease, outcome);
      };
      const succeeded: LeaseOutcome = { ok: true };
      let failedOn: LeaseOutcome | undefined;
      let keepSlot = false;
      let functionName = '';
      try {
        functionName = await checkpointFunction(deps, input.request.model);
        // Read while the task waits and runs, so that pricing its cost adds no store read after SD returns.
        const functionRecord = meta.getFunction(functionName);
        functionRecord.catch(() => undefined);
        asked = true;
        await acquireSlot(
          temporal,
          slot,
          {
            lease: input.lease,
            ...input.owner,
            model: input.request.model,
            ...(input.deadlineAt !== undefined ? { deadlineAt: input.deadlineAt } : {}),
            ...(input.submittedAt !== undefined ? { submittedAt: input.submittedAt } : {}),
          },
          ctx.cancellationSignal,
        );
        const timer = invokeTimer();
        progress = { ...progress, phase: 'starting' };
        report.started(progress);
        meta.markTaskRunning(taskId).catch((err) => logger.warn({ err, taskId }, 'could not mark the task running'));
        const result = await invoke(ctx, functionName, input.request, (event) => {
          timer.see(event);
          const { type: _type, ...snapshot } = event;
          progress = snapshot;
          report.progressed(progress);
          // SD has returned: the GPU is free while the agent uploads the images.
          if (event.phase === 'uploading') {
            release(succeeded).catch((err) => logger.warn({ err, taskId }, 'early release failed'));
          }
        });
        const resultAt = Date.now();
        await release(succeeded);
        const { images, info, parameters } = result;
        const cost = await costOf(input, functionRecord, {
          submittedAt:
            input.submittedAt ?? (await row.then((task) => Date.parse(task?.createdAt ?? '')).catch(() => NaN)),
          grantedAt: timer.grantedAt,
          usage: result.usage ?? timer.usage(resultAt),
          images: images.length,
        });
        await report.flushed();
        const stored = await meta.finalizeTask(taskId, {
          status: 'succeeded',
          images,
          info,
          parameters,
          timings: timer.timings(),
          ...(cost ? { cost } : {}),
        });
        if (stored) await announceTaskEnd(deps, stored);
        return stored ? summaryOf(stored) : { taskId, status: 'succeeded', images };
      } catch (err) {
        const failure = explain(err, ctx, functionName);
        failedOn = instanceFault(failure);
        // A retryable failure keeps the slot for the next attempt, as a task keeps it between attempts; any other
        // ending gives it back (the workflow sends the release again, idempotently, whatever happens here). An
        // instance failure gives it back too, so that the next attempt queues behind the checkpoint's breaker.
        keepSlot =
          failure instanceof ApplicationFailure &&
          !failure.nonRetryable &&
          !ctx.cancellationSignal.aborted &&
          !failedOn;
        throw failure;
      } finally {
        clearInterval(heartbeat);
        if (!keepSlot) await release(failedOn).catch((err) => logger.warn({ err, taskId }, 'release failed'));
        // The workflow records any other ending once this returns: after the status events of this attempt.
        await report.flushed();
      }
    },

    /**
     * The first version's invoke, for tasks started before runTask: the invoke alone, with numbers-only progress
     * forwarded to the workflow about once a second.
     */
    async invokeFunction(input: { functionName: string; request: InvokeRequest }): Promise<InvokeResult> {
      const ctx = Context.current();
      const workflow = temporal.workflow.getHandle(ctx.info.workflowExecution!.workflowId);
      let last: ProgressEvent | undefined;
      let lastSentAt = 0;
      let lastSentPhase: string | undefined;
      const heartbeat = setInterval(() => ctx.heartbeat(last && { phase: last.phase, progress: last.progress }), 1000);
      try {
        const end = await invoke(ctx, input.functionName, input.request, (event) => {
          last = event;
          const now = Date.now();
          if (now - lastSentAt < progressSignalMs && event.phase === lastSentPhase) return;
          lastSentAt = now;
          lastSentPhase = event.phase;
          const { type: _type, ...snapshot } = event;
          workflow.signal(progressSignal, snapshot).catch((err) => {
            logger.debug({ err, taskId: input.request.taskId }, 'progress signal not delivered');
          });
        });
        return { images: end.images, info: end.info, parameters: end.parameters };
      } finally {
        clearInterval(heartbeat);
      }
    },
  };

  /**
   * The task's cost, priced by its function's instance type. A task whose submission time is unknown, or whose price
   * cannot be read, is recorded without one rather than failed: its images are made.
   */
  async function costOf(
    input: RunTaskInput,
    functionRecord: Promise<FunctionRecord | null>,
    part: Pick<CostInput, 'submittedAt' | 'grantedAt' | 'usage' | 'images'>,
  ): Promise<TaskCost | undefined> {
    try {
      if (!Number.isFinite(part.submittedAt)) throw new Error('its submission time is unknown');
      const fn = await functionRecord;
      return taskCost({ ...part, ...billingRateFor(deps.billingRates, fn?.resources.instanceType) });
    } catch (err) {
      logger.warn({ err, taskId: input.request.taskId }, 'could not price the task; it is recorded without a cost');
      return undefined;
    }
  }

  /**
   * Only a cancel the workflow asked for is reported as a cancellation. A worker shutdown is a retryable failure,
   * so the task runs again and is never recorded as cancelled.
   */
  function explain(err: unknown, ctx: Context, functionName: string): unknown {
    if (err instanceof ApplicationFailure) return err;
    const details = ctx.cancellationDetails;
    if (ctx.cancellationSignal.aborted) {
      if (details?.cancelRequested) return new CancelledFailure('cancelled by the workflow');
      const reason = details?.workerShutdown ? 'the worker is shutting down' : String(ctx.cancellationSignal.reason);
      return ApplicationFailure.retryable(`invoke interrupted: ${reason}`, INVOKE_FAILED);
    }
    if (err instanceof FunctionNotFoundError) {
      return ApplicationFailure.retryable(`function ${functionName} was missing and has been recreated`, INVOKE_FAILED);
    }
    const message = err instanceof Error ? err.message : String(err);
    const fault = err instanceof FunctionUnavailableError ? err.fault : undefined;
    return ApplicationFailure.retryable(`invoke failed: ${message}`, INVOKE_FAILED, ...(fault ? [{ fault }] : []));
  }
}
