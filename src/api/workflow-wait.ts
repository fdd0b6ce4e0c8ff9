import type { Client } from '@temporalio/client';
import protos from '@temporalio/proto';

/** How a wait for a workflow ended: it closed (with its failure, if it did not succeed), or the wait ended first. */
export type WorkflowWait = { closed: true; failure?: unknown } | { closed: false };

/**
 * Waits until a workflow closes, `timeoutMs` passes, or `signal` aborts (a client that went away). The API's one
 * wait: sync submits, cancellations and model registrations all follow the workflow, then read their record.
 */
export async function waitForWorkflow(
  temporal: Client,
  workflowId: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<WorkflowWait> {
  // A controller and a plain timer, held here until the wait ends: a signal composed with AbortSignal.any() from
  // AbortSignal.timeout() can be collected before it fires, and the wait would then never time out.
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), timeoutMs);
  const onAbort = () => stop.abort();
  signal?.addEventListener('abort', onAbort);
  try {
    await temporal.connection.withAbortSignal(stop.signal, () => temporal.workflow.getHandle(workflowId).result());
    return { closed: true };
  } catch (failure) {
    return stop.signal.aborted ? { closed: false } : { closed: true, failure };
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

// A CommonJS package: its namespace is reached through the default export.
const proto = protos.temporal;

const CLOSE_EVENTS = new Set([
  proto.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
  proto.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
  proto.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
  proto.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
  proto.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
  proto.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
]);

/**
 * Waits until a task's record is final: its workflow closed, or its runTask activity completed, which writes the
 * success record itself before it completes, one workflow task before the workflow closes. Returns whether it got
 * there before `timeoutMs` passed or `signal` aborted. Follows the workflow's history as it grows (a long poll).
 */
export async function waitForTaskEnd(
  temporal: Client,
  taskId: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<boolean> {
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), timeoutMs);
  const onAbort = () => stop.abort();
  signal?.addEventListener('abort', onAbort);
  const runTaskEvents = new Set<string>();
  let nextPageToken: Uint8Array | undefined;
  try {
    for (;;) {
      const page = await temporal.connection.withAbortSignal(stop.signal, () =>
        temporal.workflowService.getWorkflowExecutionHistory({
          namespace: temporal.options.namespace,
          execution: { workflowId: taskId },
          nextPageToken,
          waitNewEvent: true,
          historyEventFilterType: proto.api.enums.v1.HistoryEventFilterType.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT,
        }),
      );
      for (const event of page.history?.events ?? []) {
        if (event.eventType && CLOSE_EVENTS.has(event.eventType)) return true;
        const scheduled = event.activityTaskScheduledEventAttributes;
        if (scheduled?.activityType?.name === 'runTask') runTaskEvents.add(String(event.eventId));
        const completed = event.activityTaskCompletedEventAttributes;
        if (completed && runTaskEvents.has(String(completed.scheduledEventId))) return true;
      }
      if (!page.nextPageToken?.length) return true;
      nextPageToken = page.nextPageToken;
    }
  } catch {
    // Timed out, aborted, or the workflow is gone: the record says where the task stands.
    return !stop.signal.aborted;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}
