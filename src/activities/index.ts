import type { Client } from '@temporalio/client';
import type { BillingRate } from '../config/index.js';
import type { Logger } from '../logging.js';
import type { FunctionRuntime } from '../platform/functions/port.js';
import type { MetaStore } from '../platform/meta-store/port.js';
import type { ObjectStore } from '../platform/object-store/port.js';
import type { WebhookNotifier } from '../webhooks/notify.js';
import { createInvokeActivities } from './invoke.js';
import { createModelActivities } from './models.js';
import { createReconcileActivities, type GenerationStarter } from './reconcile.js';
import { createRetentionActivities } from './retention.js';
import { createSlotActivities } from './slots.js';
import { createTaskActivities } from './tasks.js';
import { createWebhookActivities, type WebhookDeps } from './webhooks.js';

export type { InvokeResult } from './invoke.js';

/** The ports and settings activities work with. Tests pass the local adapters; production the cloud ones. */
export interface ActivityDeps {
  meta: MetaStore;
  store: ObjectStore;
  functions: FunctionRuntime;
  temporal: Client;
  taskQueue: string;
  functionPrefix: string;
  progressSignalMs: number;
  invokeIdleTimeoutS: number;
  /** Price per instance-second by GPU type (SDFLOW_BILLING_RATES), for each task's cost. */
  billingRates: Readonly<Record<string, BillingRate>>;
  startGeneration: GenerationStarter;
  /** The id of a model's registration workflow in this deployment. */
  registrationWorkflowId: (model: string) => string;
  /** Longest an upload may take (the API's receive timeout): a registration not started by then never will be. */
  uploadTimeoutS: number;
  /** Hands a webhook event to the task's webhook workflow. */
  notifyWebhook: WebhookNotifier;
  webhooks: WebhookDeps & { progressIntervalS: number };
  logger: Logger;
}

export function createActivities(deps: ActivityDeps) {
  return {
    ...createTaskActivities(deps),
    ...createSlotActivities(deps),
    ...createInvokeActivities(deps),
    ...createReconcileActivities(deps),
    ...createModelActivities(deps),
    ...createWebhookActivities(deps),
    ...createRetentionActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
