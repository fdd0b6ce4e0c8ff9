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
