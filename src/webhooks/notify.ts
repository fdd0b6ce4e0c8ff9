import type { Client } from '@temporalio/client';
import type { Config } from '../config/index.js';
import type { WebhookEvent, WebhookInput } from '../types.js';
import { webhookEventSignal } from '../workflows/definitions.js';
import type { webhookWorkflow } from '../workflows/webhook.js';

// How an event reaches a task's webhook workflow (`sdflow-webhook-<taskId>`): signal it, starting it when it is not
// running. The generation workflow never does this, so its history and a sync wait are the same with or without a
// webhook: the runTask activity signals `start` and `progress`, whoever writes the final record signals `completed`,
// and the API signals a redelivery.

export const webhookWorkflowId = (taskId: string) => `sdflow-webhook-${taskId}`;

/** Hands one event to the task's webhook workflow. */
export type WebhookNotifier = (taskId: string, event: WebhookEvent) => Promise<void>;

export function webhookNotifier(client: Client, config: Pick<Config, 'temporal' | 'webhooks'>): WebhookNotifier {
  const { timeoutS, retryInitialS, retryHours } = config.webhooks;
  return async (taskId, event) => {
    const input: WebhookInput = { taskId, policy: { timeoutS, retryInitialS, retryHours } };
    await client.workflow.signalWithStart<typeof webhookWorkflow, [WebhookEvent]>('webhookWorkflow', {
      workflowId: webhookWorkflowId(taskId),
      taskQueue: config.temporal.taskQueue,
      args: [input],
      signal: webhookEventSignal,
      signalArgs: [event],
    });
  };
}
