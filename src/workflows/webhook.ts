import { condition, continueAsNew, log, proxyActivities, setHandler, uuid4, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { eventWebhookId } from '../records.js';
import type { WebhookEvent, WebhookInput } from '../types.js';
import { webhookEventSignal } from './definitions.js';

// A task's webhook deliveries, apart from the task (workflow id `sdflow-webhook-<taskId>`), so that a slow or failing
// receiver never holds a task up. Events arrive by signal and go out one at a time, in order: `start` and `completed`
// are retried with exponential backoff on network errors, timeouts, 5xx and 429 for the configured hours; `progress`
// is sent once, and a newer one replaces one still waiting. Each event keeps one webhook-id across its attempts,
// and a redelivered `completed` the id of the first. The workflow ends when it has been idle a while; the next event
// starts it again.

/** How long the workflow waits for another event before it ends. */
const IDLE_END = '1 minute';
/** The longest backoff between attempts of one event. */
const MAX_BACKOFF = '1 hour';

/** The webhook-id of an event: fixed for `start` and `completed`, one of its own for each `progress`. */
function webhookIdOf(taskId: string, event: WebhookEvent): string {
  return event.type === 'progress' ? `msg_${taskId}_progress_${uuid4()}` : eventWebhookId(taskId, event.type);
}

export async function webhookWorkflow(input: WebhookInput): Promise<void> {
  const { taskId, policy } = input;
  const timeouts = { startToCloseTimeout: `${policy.timeoutS + 10}s` };
  const { deliverWebhook: deliverOnce } = proxyActivities<Activities>({ ...timeouts, retry: { maximumAttempts: 1 } });
  const { deliverWebhook: deliverWithRetries } = proxyActivities<Activities>({
    ...timeouts,
    scheduleToCloseTimeout: `${policy.retryHours * 3600}s`,
    retry: { initialInterval: `${policy.retryInitialS}s`, backoffCoefficient: 2, maximumInterval: MAX_BACKOFF },
  });

  const queue: WebhookEvent[] = [...(input.pending ?? [])];
  // Whoever writes the final record signals `completed`, and may do so twice (a retried write): it goes out once.
  let completedQueued = input.completedQueued ?? false;
  setHandler(webhookEventSignal, (event) => {
    if (event.type === 'completed') {
      if (completedQueued && !event.redeliver) return;
      completedQueued = true;
    }
    if (event.type === 'progress') {
      const waiting = queue.findIndex((e) => e.type === 'progress');
      if (waiting >= 0) queue.splice(waiting, 1);
    }
    queue.push(event);
  });

  for (;;) {
    await condition(() => queue.length > 0, IDLE_END);
    if (queue.length === 0) return;
    if (workflowInfo().continueAsNewSuggested) {
      await continueAsNew<typeof webhookWorkflow>({ ...input, pending: queue, completedQueued });
    }
    const event = queue.shift()!;
    const delivery = { taskId, event, webhookId: webhookIdOf(taskId, event) };
    try {
      await (event.type === 'progress' ? deliverOnce(delivery) : deliverWithRetries(delivery));
    } catch (err) {
      log.warn('webhook not delivered', { taskId, event: event.type, error: String(err) });
    }
  }
}
