import TableStore from 'tablestore';
import type {
  FunctionRecord,
  ModelRecord,
  ModelStatus,
  ModelType,
  NewStatusEvent,
  NewTask,
  StatusEvent,
  TaskFinal,
  TaskRecord,
  UserOptions,
  WebhookAttempt,
  WebhookEventType,
} from '../../../records.js';
import type { ErrorKind, TaskKind, TaskPhase, TaskStatus } from '../../../types.js';

// How meta-store records map to Tablestore rows, and back. Every row the Tablestore adapter writes or reads goes
// through here. Times are ISO strings (UTC, milliseconds, so string order is time order, as in SQLite); params,
// images, parameters, webhook, scheduling, resources and option data are JSON strings. Absent optional fields are absent columns.

/** Tablestore refuses a column value over 2 MB. Payloads stay far below it: images travel as object keys. */
export const MAX_COLUMN_BYTES = 2 * 1024 * 1024;

export type Columns = Record<string, TableStore.CellValue>;

export interface TableSchema {
  /** The table's name without the deployment's prefix. */
  name: string;
  primaryKey: TableStore.PrimaryKeySchema[];
}

/** The adapter's tables. task_index is the listing index of tasks (see task-index.ts). */
export const TABLES = {
  tasks: { name: 'tasks', primaryKey: [{ name: 'taskId', type: 'STRING' }] },
  taskIndex: {
    name: 'task_index',
    primaryKey: [
      { name: 'scope', type: 'STRING' },
      { name: 'createdAt', type: 'STRING' },
      { name: 'taskId', type: 'STRING' },
    ],
  },
  idempotency: {
    name: 'idempotency',
    primaryKey: [
      { name: 'user', type: 'STRING' },
      { name: 'idempotencyKey', type: 'STRING' },
    ],
  },
  models: { name: 'models', primaryKey: [{ name: 'name', type: 'STRING' }] },
  functions: { name: 'functions', primaryKey: [{ name: 'functionName', type: 'STRING' }] },
  config: { name: 'config', primaryKey: [{ name: 'key', type: 'STRING' }] },
  rateWindows: { name: 'rate_windows', primaryKey: [{ name: 'subject', type: 'STRING' }] },
  leases: { name: 'leases', primaryKey: [{ name: 'resource', type: 'STRING' }] },
  userOptions: {
    name: 'user_options',
    primaryKey: [
      { name: 'user', type: 'STRING' },
      { name: 'version', type: 'INTEGER' },
    ],
  },
  taskEvents: {
    name: 'task_events',
    primaryKey: [
      { name: 'taskId', type: 'STRING' },
      { name: 'id', type: 'INTEGER' },
    ],
  },
  webhookAttempts: {
    name: 'webhook_attempts',
    primaryKey: [
      { name: 'taskId', type: 'STRING' },
      { name: 'seq', type: 'INTEGER' },
    ],
  },
} as const satisfies Record<string, TableSchema>;

/** A row's primary-key and attribute columns in one record; null for the empty row of a missing key. */
export function columnsOf(row: {
  primaryKey?: Array<{ name: string; value: TableStore.CellValue }> | null;
  attributes?: Array<{ columnName: string; columnValue: TableStore.CellValue }> | null;
}): Columns | null {
  if (!row.primaryKey || row.primaryKey.length === 0) return null;
  const columns: Columns = {};
  for (const pk of row.primaryKey) columns[pk.name] = pk.value;
  for (const attr of row.attributes ?? []) columns[attr.columnName] = attr.columnValue;
  return columns;
}

/** Columns in the SDK's attribute form, refusing a value Tablestore would refuse. */
export function attributeColumns(table: string, columns: Columns): TableStore.AttributeInput {
  return Object.entries(columns).map(([name, value]) => {
    const bytes = typeof value === 'string' ? Buffer.byteLength(value) : Buffer.isBuffer(value) ? value.length : 0;
    if (bytes > MAX_COLUMN_BYTES) {
      throw new RangeError(`${table}.${name} is ${bytes} bytes; Tablestore takes at most ${MAX_COLUMN_BYTES} a column`);
    }
    return { [name]: value };
  });
}

function text(columns: Columns, name: string, what: string): string {
  const value = columns[name];
  if (typeof value !== 'string') throw new Error(`${what} row has no string column ${name}`);
  return value;
}

function optionalText(columns: Columns, name: string, what: string): string | undefined {
  return columns[name] === undefined ? undefined : text(columns, name, what);
}

/** An INTEGER column's value as a number. */
export function numberOf(columns: Columns, name: string, what: string): number {
  const value = columns[name];
  if (typeof value === 'object' && value !== null && 'toNumber' in value) return value.toNumber();
  throw new Error(`${what} row has no integer column ${name}`);
}

function json<T>(columns: Columns, name: string, what: string): T {
  return JSON.parse(text(columns, name, what)) as T;
}

/** Copies the defined entries, so absent optional fields become absent columns. */
function defined(entries: Record<string, TableStore.CellValue | undefined>): Columns {
  const columns: Columns = {};
  for (const [name, value] of Object.entries(entries)) if (value !== undefined) columns[name] = value;
  return columns;
}

const jsonOrUndefined = (value: unknown) => (value === undefined ? undefined : JSON.stringify(value));

// ---- tasks ----

/** The optional columns a final record sets or clears. */
const FINAL_OPTIONAL = ['info', 'parameters', 'message', 'errorKind', 'timings', 'cost'] as const;

/**
 * The attribute columns of a new task row. `writeId` names this insert, so a retried insert can tell its own row
 * (written by an attempt whose response was lost) from another writer's.
 */
export function newTaskColumns(task: NewTask, now: string, writeId: string): Columns {
  return defined({
    user: task.user,
    kind: task.kind,
    model: task.model,
    status: 'waiting',
    params: JSON.stringify(task.params),
    images: '[]',
    info: task.info,
    parameters: jsonOrUndefined(task.parameters),
    message: task.message,
    errorKind: task.errorKind,
    retryOf: task.retryOf,
    webhook: jsonOrUndefined(task.webhook),
    scheduling: jsonOrUndefined(task.scheduling),
    idempotencyKey: task.idempotencyKey,
    requestHash: task.requestHash,
    createdAt: now,
    updatedAt: now,
    writeId,
  });
}

export function taskFromColumns(columns: Columns): TaskRecord {
  const what = 'tasks';
  const task: TaskRecord = {
    taskId: text(columns, 'taskId', what),
    user: text(columns, 'user', what),
    kind: text(columns, 'kind', what) as TaskKind,
    model: text(columns, 'model', what),
    status: text(columns, 'status', what) as TaskStatus,
    params: json(columns, 'params', what),
    images: json(columns, 'images', what),
    createdAt: text(columns, 'createdAt', what),
    updatedAt: text(columns, 'updatedAt', what),
  };
  const info = optionalText(columns, 'info', what);
  if (info !== undefined) task.info = info;
  if (columns.parameters !== undefined) task.parameters = json(columns, 'parameters', what);
  const message = optionalText(columns, 'message', what);
  if (message !== undefined) task.message = message;
  const errorKind = optionalText(columns, 'errorKind', what);
  if (errorKind !== undefined) task.errorKind = errorKind as ErrorKind;
  const retryOf = optionalText(columns, 'retryOf', what);
  if (retryOf !== undefined) task.retryOf = retryOf;
  if (columns.webhook !== undefined) task.webhook = json(columns, 'webhook', what);
  if (columns.scheduling !== undefined) task.scheduling = json(columns, 'scheduling', what);
  const idempotencyKey = optionalText(columns, 'idempotencyKey', what);
  if (idempotencyKey !== undefined) task.idempotencyKey = idempotencyKey;
  const requestHash = optionalText(columns, 'requestHash', what);
  if (requestHash !== undefined) task.requestHash = requestHash;
  const startedAt = optionalText(columns, 'startedAt', what);
  if (startedAt !== undefined) task.startedAt = startedAt;
  const finishedAt = optionalText(columns, 'finishedAt', what);
  if (finishedAt !== undefined) task.finishedAt = finishedAt;
  if (columns.timings !== undefined) task.timings = json(columns, 'timings', what);
  if (columns.cost !== undefined) task.cost = json(columns, 'cost', what);
  return task;
}

export interface ColumnUpdate {
  put: Columns;
  /** Columns to remove (all versions). */
  remove: string[];
}

export function runningUpdate(now: string): ColumnUpdate {
  return { put: { status: 'running', startedAt: now, updatedAt: now }, remove: [] };
}

/** The final record's columns; an optional field the record lacks is removed, as SQLite sets it to NULL. */
export function finalUpdate(final: TaskFinal, now: string): ColumnUpdate {
  const optional = defined({
    info: final.info,
    parameters: jsonOrUndefined(final.parameters),
    message: final.message,
    errorKind: final.errorKind,
    timings: jsonOrUndefined(final.timings),
    cost: jsonOrUndefined(final.cost),
  });
  return {
    put: { status: final.status, images: JSON.stringify(final.images), updatedAt: now, finishedAt: now, ...optional },
    remove: FINAL_OPTIONAL.filter((name) => optional[name] === undefined),
  };
}

/** A final task's move to `deleted`: its images are gone, the rest of its record stays. */
export function deletedUpdate(now: string): ColumnUpdate {
  return { put: { status: 'deleted', images: '[]', updatedAt: now }, remove: [] };
}

/** The SDK's form of a column update. */
export function updateOf(table: string, update: ColumnUpdate): TableStore.UpdateOfAttributeColumns[] {
  const changes: TableStore.UpdateOfAttributeColumns[] = [{ PUT: attributeColumns(table, update.put) }];
  if (update.remove.length > 0) changes.push({ DELETE_ALL: update.remove });
  return changes;
}

// ---- models, functions, user options ----

/** A model row; `writeId` (when given) marks the row as this writer's, for telling a lost response from a rival. */
export function modelColumns(model: ModelRecord, writeId?: string): Columns {
  return defined({
    type: model.type,
    ossPath: model.ossPath,
    etag: model.etag,
    status: model.status,
    message: model.message,
    registeredTime: model.registeredTime,
    lastModificationTime: model.lastModificationTime,
    writeId,
  });
}

export function modelFromColumns(columns: Columns): ModelRecord {
  const what = 'models';
  const model: ModelRecord = {
    type: text(columns, 'type', what) as ModelType,
    name: text(columns, 'name', what),
    ossPath: text(columns, 'ossPath', what),
    etag: text(columns, 'etag', what),
    status: text(columns, 'status', what) as ModelStatus,
    registeredTime: text(columns, 'registeredTime', what),
    lastModificationTime: text(columns, 'lastModificationTime', what),
  };
  const message = optionalText(columns, 'message', what);
  if (message !== undefined) model.message = message;
  return model;
}

export function functionColumns(fn: FunctionRecord): Columns {
  return {
    model: fn.model,
    resources: JSON.stringify(fn.resources),
    createdAt: fn.createdAt,
    updatedAt: fn.updatedAt,
  };
}

export function functionFromColumns(columns: Columns): FunctionRecord {
  const what = 'functions';
  return {
    functionName: text(columns, 'functionName', what),
    model: text(columns, 'model', what),
    resources: json(columns, 'resources', what),
    createdAt: text(columns, 'createdAt', what),
    updatedAt: text(columns, 'updatedAt', what),
  };
}

export function userOptionsKey(user: string, version: number): TableStore.PrimaryKeyInput {
  return [{ user }, { version: TableStore.Long.fromNumber(version) }];
}

export function userOptionsColumns(data: Record<string, unknown>, createdAt: string, writeId: string): Columns {
  return { data: JSON.stringify(data), createdAt, writeId };
}

export function userOptionsFromColumns(columns: Columns): UserOptions {
  const what = 'user_options';
  return {
    user: text(columns, 'user', what),
    version: numberOf(columns, 'version', what),
    data: json(columns, 'data', what),
    createdAt: text(columns, 'createdAt', what),
  };
}

// ---- task events and webhook attempts: rows numbered 1, 2, … per task ----

/** The key of a task's numbered row: the task, then its number (`id` of a status event, `seq` of an attempt). */
export function numberedKey(taskId: string, name: 'id' | 'seq', n: number): TableStore.PrimaryKeyInput {
  return [{ taskId }, { [name]: TableStore.Long.fromNumber(n) }];
}

export function statusEventColumns(event: NewStatusEvent, at: string, writeId: string): Columns {
  return defined({ status: event.status, phase: event.phase, coldStart: event.coldStart, at, writeId });
}

export function statusEventFromColumns(columns: Columns): StatusEvent {
  const what = 'task_events';
  const event: StatusEvent = {
    id: numberOf(columns, 'id', what),
    status: text(columns, 'status', what) as TaskStatus,
    phase: text(columns, 'phase', what) as TaskPhase,
    at: text(columns, 'at', what),
  };
  if (typeof columns.coldStart === 'boolean') event.coldStart = columns.coldStart;
  return event;
}

export function webhookAttemptColumns(attempt: WebhookAttempt, writeId: string): Columns {
  return defined({
    event: attempt.event,
    webhookId: attempt.webhookId,
    at: attempt.at,
    statusCode: attempt.statusCode === undefined ? undefined : TableStore.Long.fromNumber(attempt.statusCode),
    error: attempt.error,
    durationMs: TableStore.Long.fromNumber(Math.round(attempt.durationMs)),
    writeId,
  });
}

export function webhookAttemptFromColumns(columns: Columns): WebhookAttempt {
  const what = 'webhook_attempts';
  const attempt: WebhookAttempt = {
    event: text(columns, 'event', what) as WebhookEventType,
    webhookId: text(columns, 'webhookId', what),
    at: text(columns, 'at', what),
    durationMs: numberOf(columns, 'durationMs', what),
  };
  if (columns.statusCode !== undefined) attempt.statusCode = numberOf(columns, 'statusCode', what);
  const error = optionalText(columns, 'error', what);
  if (error !== undefined) attempt.error = error;
  return attempt;
}

// ---- leases ----

export interface LeaseRow {
  holder: string;
  /** The expiry as stored: epoch milliseconds, zero-padded to 16 digits, so string order is time order. */
  expiresAt: string;
}

/** A lease's columns: its holder, and its expiry (epoch ms) in the stored form. */
export function leaseColumns(holder: string, expiresAtMs: number): Columns {
  return { holder, expiresAt: String(Math.ceil(expiresAtMs)).padStart(16, '0') };
}

export function leaseFromColumns(columns: Columns): LeaseRow {
  const what = 'leases';
  return { holder: text(columns, 'holder', what), expiresAt: text(columns, 'expiresAt', what) };
}

/** The writer mark of a row, if any. */
export function writeIdOf(columns: Columns): string | undefined {
  const value = columns.writeId;
  return typeof value === 'string' ? value : undefined;
}
