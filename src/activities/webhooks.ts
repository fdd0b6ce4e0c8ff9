import { ApplicationFailure } from '@temporalio/activity';
import type { TaskRecord, WebhookAttempt } from '../records.js';
import { runningProgressView, taskResultView } from '../task-views.js';
import type { WebhookEvent } from '../types.js';
import { postWebhook } from '../webhooks/send.js';
import { webhookHeaders } from '../webhooks/signing.js';
import { resolveTarget, type TargetPolicy, TargetRefusedError } from '../webhooks/targets.js';
import type { ActivityDeps } from './index.js';

/** What the worker needs to deliver webhooks. */
export interface WebhookDeps {
  /** The signing key of the webhook secret. */
  key: Buffer;
  targets: TargetPolicy;
  timeoutS: number;
  /** How long signed links in a body live. */
  urlTtlS: number;
}

export interface Delivery {
  taskId: string;
  event: WebhookEvent;
  webhookId: string;
}

/** A failed attempt the workflow's retry policy tries again; anything else ends the event's delivery. */
const RETRYABLE = 'WebhookRetryable';
const FINAL = 'WebhookRefused';

/** Network errors, timeouts, 5xx and 429 may pass; any other answer outside 2xx is the receiver's final word. */
const retryableStatus = (status: number) => status >= 500 || status === 429;

export function createWebhookActivities(deps: ActivityDeps) {
  const { meta, store, webhooks, logger } = deps;

  /** The `data` of one attempt, made now: the task's result view for `completed`, else its progress view. */
  function dataOf(task: TaskRecord, event: WebhookEvent) {
    if (event.type === 'completed') return taskResultView(task, store, webhooks.urlTtlS);
    return runningProgressView(task.taskId, event.progress, store, webhooks.urlTtlS);
  }

  return {
    /**
     * One delivery attempt of one webhook event, logged in the meta store: the body and its signature are made now,
     * so its links are fresh and its timestamp is the attempt's. Throws a retryable failure when the receiver may
     * take it later, a final one when it refused it (or the target is not allowed).
     */
    async deliverWebhook(delivery: Delivery): Promise<void> {
      const { taskId, event, webhookId } = delivery;
      const task = await meta.getTask(taskId);
      if (!task?.webhook) return;
      const body = JSON.stringify({ type: event.type, taskId, data: await dataOf(task, event) });
      const started = Date.now();
      const attempt: WebhookAttempt = {
        event: event.type,
        webhookId,
        at: new Date(started).toISOString(),
        durationMs: 0,
      };
      let failure: ApplicationFailure | undefined;
      try {
        const target = await resolveTarget(task.webhook.url, webhooks.targets);
        const headers = webhookHeaders(webhooks.key, webhookId, body);
        attempt.statusCode = await postWebhook(target, body, headers, webhooks.timeoutS * 1000);
        if (attempt.statusCode < 200 || attempt.statusCode >= 300) {
          const message = `${task.webhook.url} answered ${attempt.statusCode}`;
          failure = retryableStatus(attempt.statusCode)
            ? ApplicationFailure.retryable(message, RETRYABLE)
            : ApplicationFailure.nonRetryable(message, FINAL);
        }
      } catch (err) {
        attempt.error = err instanceof Error ? err.message : String(err);
        failure =
          err instanceof TargetRefusedError
            ? ApplicationFailure.nonRetryable(attempt.error, FINAL)
            : ApplicationFailure.retryable(attempt.error, RETRYABLE);
      }
      attempt.durationMs = Date.now() - started;
      await meta
        .recordWebhookAttempt(taskId, attempt)
        .catch((err) => logger.warn({ err, taskId, webhookId }, 'could not log a webhook attempt'));
      if (failure) throw failure;
    },
  };
}
