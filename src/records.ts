import type {
  ErrorKind,
  SdParams,
  TaskCost,
  TaskKind,
  TaskOutcome,
  TaskPhase,
  TaskScheduling,
  TaskStatus,
  TaskTimings,
} from './types.js';

// The records sdflow keeps: tasks, models, functions and users' WebUI settings, as the API, the worker and the
// meta-store adapters all see them. Declarations and pure helpers only: workflow code imports this file, so it must
// stay free of I/O and Node built-ins.

export interface TaskRecord {
  taskId: string;
  user: string;
  kind: TaskKind;
  model: string;
  status: TaskStatus;
  params: SdParams;
  images: string[];
  info?: string;
  parameters?: Record<string, unknown>;
  message?: string;
  errorKind?: ErrorKind;
  timings?: TaskTimings;
  cost?: TaskCost;
  retryOf?: string;
  /** Where the task's webhook events go; never part of `params`, so never sent to SD. */
  webhook?: TaskWebhook;
  /**
   * Its lane, its user's share and cap, and its Task-Deadline, as accepted: whoever starts its workflow (the API, or
   * the reconciler after Temporal was down) places it the same way. Absent on tasks from before it was kept.
   */
  scheduling?: TaskScheduling;
  idempotencyKey?: string;
  /** sha256 of the canonical request body, to tell a replayed Idempotency-Key from a conflicting one. */
  requestHash?: string;
  createdAt: string;
  updatedAt: string;
  startedAt?: string;
  finishedAt?: string;
}

export type NewTask = Omit<
  TaskRecord,
  'status' | 'images' | 'timings' | 'cost' | 'createdAt' | 'updatedAt' | 'startedAt' | 'finishedAt'
>;

/** The row a new task is, once inserted at `createdAt`. */
export function insertedTask(task: NewTask, createdAt: string): TaskRecord {
  return { ...task, status: 'waiting', images: [], createdAt, updatedAt: createdAt };
}

/** What finalizeTask writes into a task's row: the generation workflow's outcome. */
export type TaskFinal = Omit<TaskOutcome, 'taskId'>;

/** The events a task's webhook may receive, named as Replicate names them. */
export const WEBHOOK_EVENTS = ['start', 'progress', 'completed'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENTS)[number];

/** Where a task's webhook events go (`webhook`), and which of them (`webhook_events_filter`). */
export interface TaskWebhook {
  url: string;
  events: WebhookEventType[];
}

/**
 * A change of a task's status or phase, kept in the meta store so that every API replica serves the same event
 * stream. Ids count 1, 2, … per task, in the order the changes happened.
 */
export interface StatusEvent {
  id: number;
  status: TaskStatus;
  phase: TaskPhase;
  /** The task waited for an instance or a checkpoint to start. */
  coldStart?: boolean;
  at: string;
}

export type NewStatusEvent = Omit<StatusEvent, 'id' | 'at'>;

/**
 * The webhook-id of a task's `start` or `completed` event: fixed, so that every attempt and every redelivery of the
 * event carries the same one, and receivers can deduplicate.
 */
export const eventWebhookId = (taskId: string, type: 'start' | 'completed') => `msg_${taskId}_${type}`;

/** One attempt to deliver a webhook event: its answer's status code, or the error that stopped it. */
export interface WebhookAttempt {
  event: WebhookEventType;
  /** The `webhook-id` header: the same for every attempt of one event, so receivers can deduplicate. */
  webhookId: string;
  at: string;
  statusCode?: number;
  error?: string;
  durationMs: number;
}

export type ModelType = 'stableDiffusion' | 'sdVae' | 'lora' | 'controlNet';
export const MODEL_TYPES: readonly ModelType[] = ['stableDiffusion', 'sdVae', 'lora', 'controlNet'];

export type ModelStatus = 'registering' | 'loading' | 'loaded' | 'failed' | 'unloaded' | 'deleted';

export interface ModelRecord {
  type: ModelType;
  name: string;
  ossPath: string;
  etag: string;
  status: ModelStatus;
  message?: string;
  registeredTime: string;
  lastModificationTime: string;
}

export interface FunctionRecord {
  functionName: string;
  model: string;
  /** Resource fields set by batch update, recorded for the runtime (env, extraArgs, timeout, limits, gpu...). */
  resources: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

/** One version of a user's WebUI settings (`POST /options`), applied to that user's requests as override_settings. */
export interface UserOptions {
  user: string;
  /** 1, 2, … per user, in the order they were stored. */
  version: number;
  data: Record<string, unknown>;
  createdAt: string;
}
