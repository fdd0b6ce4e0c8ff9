import type { Client } from '@temporalio/client';

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
  const stop = AbortSignal.any(signal ? [AbortSignal.timeout(timeoutMs), signal] : [AbortSignal.timeout(timeoutMs)]);
  try {
    await temporal.connection.withAbortSignal(stop, () => temporal.workflow.getHandle(workflowId).result());
    return { closed: true };
  } catch (failure) {
    return stop.aborted ? { closed: false } : { closed: true, failure };
  }
}
