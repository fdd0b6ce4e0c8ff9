import type {
  FunctionRecord,
  ModelRecord,
  ModelStatus,
  ModelType,
  NewTask,
  TaskFinal,
  TaskRecord,
  UserOptions,
} from '../../records.js';
import type { TaskStatus } from '../../types.js';

export interface TaskQuery {
  user?: string;
  status?: TaskStatus[];
  /** Only tasks created before this instant (ISO). */
  createdBefore?: string;
  limit?: number;
  /** Opaque cursor from a previous page. */
  cursor?: string;
}

/** How many task rows have one status and checkpoint. */
export interface TaskCount {
  status: TaskStatus;
  model: string;
  count: number;
}

export interface Page<T> {
  items: T[];
  cursor?: string;
}

/**
 * The meta store port: task rows, the model registry, function records, user options, rate windows, leases and small
 * config values.
 */
export interface MetaStore {
  /**
   * Conditional insert: the stored row; null when a task with this taskId exists (a taskId is unique forever, not
   * only within Temporal's window), or when the user already has a task with this idempotency key (a concurrent
   * submit won the race), which the caller tells apart with findTaskByIdempotencyKey.
   */
  insertTask(task: NewTask): Promise<TaskRecord | null>;
  getTask(taskId: string): Promise<TaskRecord | null>;
  findTaskByIdempotencyKey(user: string, idempotencyKey: string): Promise<TaskRecord | null>;
  /** Moves an open task to `running`; no-op on a final task. */
  markTaskRunning(taskId: string): Promise<void>;
  /**
   * Writes the final record if the task is still open. Idempotent: returns the stored record, which is the first
   * final record written (a later, different one never overwrites it).
   */
  finalizeTask(taskId: string, final: TaskFinal): Promise<TaskRecord | null>;
  listTasks(query: TaskQuery): Promise<Page<TaskRecord>>;
  /**
   * Moves a final task to `deleted` with no images (its objects are the caller's to remove); returns the stored
   * record. Idempotent: a task already deleted is returned as it is; an open task is left open.
   */
  markTaskDeleted(taskId: string): Promise<TaskRecord | null>;
  /** Task rows by status and checkpoint. It may read every row (Tablestore has no aggregate): callers cache it. */
  countTasks(): Promise<TaskCount[]>;

  putModel(model: ModelRecord): Promise<void>;
  /** Conditional insert: false when a model of that name exists (and is not deleted). */
  insertModel(model: ModelRecord): Promise<boolean>;
  getModel(name: string): Promise<ModelRecord | null>;
  /**
   * Removes the row of a registration that never got going (its upload failed), and only while it is still that
   * registration's row: same registeredTime and still `registering`. Returns whether it removed it.
   */
  removeModel(name: string, registeredTime: string): Promise<boolean>;
  listModels(filter?: { type?: ModelType; status?: ModelStatus }): Promise<ModelRecord[]>;

  putFunction(fn: FunctionRecord): Promise<void>;
  getFunction(functionName: string): Promise<FunctionRecord | null>;
  listFunctions(): Promise<FunctionRecord[]>;
  deleteFunction(functionName: string): Promise<void>;

  /** Stores a new version of the user's options; returns its version (the user's previous latest + 1). */
  putUserOptions(user: string, data: Record<string, unknown>): Promise<number>;
  /** The user's options at `version`, or the latest when no version is given; null when there is none. */
  getUserOptions(user: string, version?: number): Promise<UserOptions | null>;

  /**
   * Counts one hit for `subject` (an API key) in fixed `window` (a window number, e.g. the minute since the epoch)
   * and returns the hits counted in that window so far. Shared by every API replica: the per-key rate limit.
   */
  hitRateWindow(subject: string, window: number): Promise<number>;

  /**
   * Leases: one holder at a time per resource, shared by every process of the deployment (the static GPU pool holds
   * each WebUI with one). Expiry times come from the caller's clock, so the processes' clocks must agree to well
   * within the TTL.
   *
   * Takes `resource` for `holder` until ttlMs from now. True when it was free, had expired, or was already this
   * holder's (its expiry is then extended); false while another holder's lease runs.
   */
  tryAcquireLease(resource: string, holder: string, ttlMs: number): Promise<boolean>;
  /** Extends the holder's lease to ttlMs from now; false when the holder no longer holds it (another one took it). */
  renewLease(resource: string, holder: string, ttlMs: number): Promise<boolean>;
  /** Frees the resource if `holder` holds it; anyone else's release does nothing. Idempotent. */
  releaseLease(resource: string, holder: string): Promise<void>;

  getConfigValue(key: string): Promise<string | null>;
  /** Sets the value only if none is set; returns the stored value (so concurrent first writers agree). */
  setConfigValueOnce(key: string, value: string): Promise<string>;

  close(): Promise<void>;
}
