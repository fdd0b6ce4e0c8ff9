import type { ErrorKind, SdParams, TaskKind, TaskOutcome, TaskStatus, TaskTimings } from './types.js';

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
  retryOf?: string;
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
  'status' | 'images' | 'timings' | 'createdAt' | 'updatedAt' | 'startedAt' | 'finishedAt'
>;

/** The row a new task is, once inserted at `createdAt`. */
export function insertedTask(task: NewTask, createdAt: string): TaskRecord {
  return { ...task, status: 'waiting', images: [], createdAt, updatedAt: createdAt };
}

/** What finalizeTask writes into a task's row: the generation workflow's outcome. */
export type TaskFinal = Omit<TaskOutcome, 'taskId'>;

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
