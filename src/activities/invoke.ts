import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import { FunctionNotFoundError } from '../platform/functions/port.js';
import { type ErrorEvent, type ProgressEvent, readInvoke } from '../protocol/events.js';
import type { InvokeRequest } from '../protocol/invoke.js';
import { NON_RETRYABLE } from '../types.js';
import { progressSignal } from '../workflows/definitions.js';
import type { ActivityDeps } from './index.js';
import { provideFunction } from './tasks.js';

export interface InvokeResult {
  images: string[];
  info: string;
  parameters: Record<string, unknown>;
}

const INVOKE_FAILED = 'InvokeFailed';

/** The failure type the workflow reads a final agent error by: only SD's rejection of the input is the caller's. */
function nonRetryableType(kind: ErrorEvent['kind']): string {
  if (kind === 'bad_input') return NON_RETRYABLE.badInput;
  if (kind === 'not_found') return NON_RETRYABLE.modelNotFound;
  return INVOKE_FAILED;
}

export function createInvokeActivities(deps: ActivityDeps) {
  const { functions, temporal, progressSignalMs, invokeIdleTimeoutS, logger } = deps;

  return {
    /**
     * Sends the task to its function in one streamed request and returns the result. Heartbeats every second
     * so a cancel reaches it quickly; forwards numbers-only progress to the workflow about once a second.
     */
    async invokeFunction(input: { functionName: string; request: InvokeRequest }): Promise<InvokeResult> {
      const ctx = Context.current();
      const workflow = temporal.workflow.getHandle(ctx.info.workflowExecution!.workflowId);
      const abort = new AbortController();
      const onCancel = () => abort.abort(ctx.cancellationSignal.reason);
      ctx.cancellationSignal.addEventListener('abort', onCancel);

      let last: ProgressEvent | undefined;
      let lastSentAt = 0;
      let lastSentPhase: string | undefined;
      const heartbeat = setInterval(() => ctx.heartbeat(last && { phase: last.phase, progress: last.progress }), 1000);
      let idle: NodeJS.Timeout | undefined;
      const resetIdle = () => {
        clearTimeout(idle);
        idle = setTimeout(
          () => abort.abort(new Error(`no word from the function for ${invokeIdleTimeoutS}s`)),
          invokeIdleTimeoutS * 1000,
        );
      };

      const forward = (event: ProgressEvent) => {
        const now = Date.now();
        if (now - lastSentAt < progressSignalMs && event.phase === lastSentPhase) return;
        lastSentAt = now;
        lastSentPhase = event.phase;
        const { type: _type, ...snapshot } = event;
        workflow.signal(progressSignal, snapshot).catch((err) => {
          logger.debug({ err, taskId: input.request.taskId }, 'progress signal not delivered');
        });
      };

      try {
        resetIdle();
        const stream = functions.invoke(input.functionName, input.request, { signal: abort.signal });
        const end = await readInvoke(stream, (event) => {
          resetIdle();
          last = event;
          forward(event);
        });
        if (end.type === 'result') return { images: end.images, info: end.info, parameters: end.parameters };
        if (end.retryable) throw ApplicationFailure.retryable(end.message, INVOKE_FAILED, { kind: end.kind });
        throw ApplicationFailure.nonRetryable(end.message, nonRetryableType(end.kind), {
          kind: end.kind,
          status: end.status,
        });
      } catch (err) {
        if (err instanceof FunctionNotFoundError) {
          // The function vanished (deleted by an admin, or lost by the runtime): recreate it for the retry, with
          // the resources its record holds (and the record, when that is gone too).
          await provideFunction(deps, input.request.model, true);
        }
        throw explain(err, ctx, input.functionName);
      } finally {
        clearInterval(heartbeat);
        clearTimeout(idle);
        ctx.cancellationSignal.removeEventListener('abort', onCancel);
        if (!abort.signal.aborted) abort.abort();
      }
    },
  };

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
    return ApplicationFailure.retryable(`invoke failed: ${message}`, INVOKE_FAILED);
  }
}
