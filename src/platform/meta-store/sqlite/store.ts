import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
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
  TaskWebhook,
  UserOptions,
  WebhookAttempt,
  WebhookEventType,
} from '../../../records.js';
import { insertedTask } from '../../../records.js';
import { type ErrorKind, isFinal, type TaskKind, type TaskPhase, type TaskStatus } from '../../../types.js';
import { decodeCursor, encodeCursor, isoInstant, pageLimit } from '../cursor.js';
import type { MetaStore, Page, TaskCount, TaskQuery } from '../port.js';

// The embedded meta store. Several processes (API replicas, worker, runtime) open the same file at once, so the
// connection runs in WAL mode with a busy timeout, and every write that must be atomic is one statement or an
// IMMEDIATE transaction (a deferred one could fail to upgrade its lock under contention instead of waiting).

const BUSY_TIMEOUT_MS = 10_000;

/** Schema migrations; the database's user_version is the number applied. Append only, never edit one. */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('waiting', 'running', 'succeeded', 'failed', 'cancelled')),
    params TEXT NOT NULL,
    images TEXT NOT NULL,
    info TEXT,
    parameters TEXT,
    message TEXT,
    error_kind TEXT,
    retry_of TEXT,
    idempotency_key TEXT,
    request_hash TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
  );
  CREATE INDEX tasks_user_created ON tasks (user, created_at, task_id);
  CREATE INDEX tasks_status_created ON tasks (status, created_at, task_id);
  CREATE INDEX tasks_created ON tasks (created_at, task_id);
  CREATE UNIQUE INDEX tasks_user_idempotency ON tasks (user, idempotency_key) WHERE idempotency_key IS NOT NULL;

  CREATE TABLE models (
    name TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    oss_path TEXT NOT NULL,
    etag TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT,
    registered_time TEXT NOT NULL,
    last_modification_time TEXT NOT NULL
  );

  CREATE TABLE functions (
    function_name TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    resources TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
  );

  CREATE TABLE config (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );
  `,
  `
  CREATE TABLE user_options (
    user TEXT NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user, version)
  );
  `,
  `
  CREATE TABLE rate_windows (
    subject TEXT PRIMARY KEY,
    window INTEGER NOT NULL,
    hits INTEGER NOT NULL
  );
  `,
  `
  CREATE TABLE leases (
    resource TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
  );
  `,
  // The status 'deleted' (retention) and the GPU part's timings. SQLite cannot change a CHECK: the table is rebuilt.
  `
  CREATE TABLE tasks_v5 (
    task_id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('waiting', 'running', 'succeeded', 'failed', 'cancelled', 'deleted')),
    params TEXT NOT NULL,
    images TEXT NOT NULL,
    info TEXT,
    parameters TEXT,
    message TEXT,
    error_kind TEXT,
    retry_of TEXT,
    idempotency_key TEXT,
    request_hash TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    timings TEXT
  );
  INSERT INTO tasks_v5 (task_id, user, kind, model, status, params, images, info, parameters, message, error_kind,
                        retry_of, idempotency_key, request_hash, created_at, updated_at, started_at, finished_at)
    SELECT task_id, user, kind, model, status, params, images, info, parameters, message, error_kind,
           retry_of, idempotency_key, request_hash, created_at, updated_at, started_at, finished_at FROM tasks;
  DROP TABLE tasks;
  ALTER TABLE tasks_v5 RENAME TO tasks;
  CREATE INDEX tasks_user_created ON tasks (user, created_at, task_id);
  CREATE INDEX tasks_status_created ON tasks (status, created_at, task_id);
  CREATE INDEX tasks_created ON tasks (created_at, task_id);
  CREATE UNIQUE INDEX tasks_user_idempotency ON tasks (user, idempotency_key) WHERE idempotency_key IS NOT NULL;
  CREATE INDEX tasks_status_model ON tasks (status, model);
  `,
  // Webhooks: a task's subscription, its status events (SSE, webhooks) and its delivery attempts.
  `
  ALTER TABLE tasks ADD COLUMN webhook TEXT;

  CREATE TABLE task_events (
    task_id TEXT NOT NULL,
    id INTEGER NOT NULL,
    status TEXT NOT NULL,
    phase TEXT NOT NULL,
    cold_start INTEGER,
    at TEXT NOT NULL,
    PRIMARY KEY (task_id, id)
  );

  CREATE TABLE webhook_attempts (
    task_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    at TEXT NOT NULL,
    status_code INTEGER,
    error TEXT,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (task_id, seq)
  );
  `,
  // A succeeded task's cost (GET /usage).
  `
  ALTER TABLE tasks ADD COLUMN cost TEXT;
  `,
  // The scheduling a task was accepted with (lane, share, cap, deadline), for a workflow the reconciler starts.
  `
  ALTER TABLE tasks ADD COLUMN scheduling TEXT;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

interface TaskRow {
  task_id: string;
  user: string;
  kind: string;
  model: string;
  status: string;
  params: string;
  images: string;
  info: string | null;
  parameters: string | null;
  message: string | null;
  error_kind: string | null;
  retry_of: string | null;
  webhook: string | null;
  idempotency_key: string | null;
  request_hash: string | null;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  finished_at: string | null;
  timings: string | null;
  cost: string | null;
  scheduling: string | null;
}

interface ModelRow {
  name: string;
  type: string;
  oss_path: string;
  etag: string;
  status: string;
  message: string | null;
  registered_time: string;
  last_modification_time: string;
}

interface FunctionRow {
  function_name: string;
  model: string;
  resources: string;
  created_at: string;
  updated_at: string;
}

interface StatusEventRow {
  id: number;
  status: string;
  phase: string;
  cold_start: number | null;
  at: string;
}

interface WebhookAttemptRow {
  event: string;
  webhook_id: string;
  at: string;
  status_code: number | null;
  error: string | null;
  duration_ms: number;
}

interface UserOptionsRow {
  user: string;
  version: number;
  data: string;
  created_at: string;
}

function toTask(row: TaskRow): TaskRecord {
  const task: TaskRecord = {
    taskId: row.task_id,
    user: row.user,
    kind: row.kind as TaskKind,
    model: row.model,
    status: row.status as TaskStatus,
    params: JSON.parse(row.params),
    images: JSON.parse(row.images),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
  if (row.info !== null) task.info = row.info;
  if (row.parameters !== null) task.parameters = JSON.parse(row.parameters);
  if (row.message !== null) task.message = row.message;
  if (row.error_kind !== null) task.errorKind = row.error_kind as ErrorKind;
  if (row.retry_of !== null) task.retryOf = row.retry_of;
  if (row.webhook !== null) task.webhook = JSON.parse(row.webhook) as TaskWebhook;
  if (row.idempotency_key !== null) task.idempotencyKey = row.idempotency_key;
  if (row.request_hash !== null) task.requestHash = row.request_hash;
  if (row.started_at !== null) task.startedAt = row.started_at;
  if (row.finished_at !== null) task.finishedAt = row.finished_at;
  if (row.timings !== null) task.timings = JSON.parse(row.timings);
  if (row.cost !== null) task.cost = JSON.parse(row.cost);
  if (row.scheduling !== null) task.scheduling = JSON.parse(row.scheduling);
  return task;
}

function toStatusEvent(row: StatusEventRow): StatusEvent {
  const event: StatusEvent = {
    id: row.id,
    status: row.status as TaskStatus,
    phase: row.phase as TaskPhase,
    at: row.at,
  };
  if (row.cold_start !== null) event.coldStart = row.cold_start === 1;
  return event;
}

function toWebhookAttempt(row: WebhookAttemptRow): WebhookAttempt {
  const attempt: WebhookAttempt = {
    event: row.event as WebhookEventType,
    webhookId: row.webhook_id,
    at: row.at,
    durationMs: row.duration_ms,
  };
  if (row.status_code !== null) attempt.statusCode = row.status_code;
  if (row.error !== null) attempt.error = row.error;
  return attempt;
}

function toModel(row: ModelRow): ModelRecord {
  const model: ModelRecord = {
    type: row.type as ModelType,
    name: row.name,
    ossPath: row.oss_path,
    etag: row.etag,
    status: row.status as ModelStatus,
    registeredTime: row.registered_time,
    lastModificationTime: row.last_modification_time,
  };
  if (row.message !== null) model.message = row.message;
  return model;
}

function toFunction(row: FunctionRow): FunctionRecord {
  return {
    functionName: row.function_name,
    model: row.model,
    resources: JSON.parse(row.resources),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

const jsonOrNull = (value: unknown) => (value === undefined ? null : JSON.stringify(value));
const now = () => new Date().toISOString();

function migrate(db: Database.Database): void {
  const version = () => db.pragma('user_version', { simple: true }) as number;
  if (version() === SCHEMA_VERSION) return;
  // IMMEDIATE takes the write lock before reading the version, so of two processes opening a fresh file at once
  // one migrates and the other then sees the new version and does nothing.
  db.transaction(() => {
    const current = version();
    if (current > SCHEMA_VERSION) {
      throw new Error(`meta store schema version ${current} is newer than this build supports (${SCHEMA_VERSION})`);
    }
    for (let v = current; v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v]);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

export class SqliteMetaStore implements MetaStore {
  private readonly stmt;

  private constructor(private readonly db: Database.Database) {
    this.stmt = {
      insertTask: db.prepare(`
        INSERT INTO tasks (task_id, user, kind, model, status, params, images, info, parameters, message, error_kind,
                           retry_of, webhook, scheduling, idempotency_key, request_hash, created_at, updated_at)
        VALUES (@taskId, @user, @kind, @model, 'waiting', @params, '[]', @info, @parameters, @message, @errorKind,
                @retryOf, @webhook, @scheduling, @idempotencyKey, @requestHash, @now, @now)
        ON CONFLICT DO NOTHING`),
      getTask: db.prepare<[string], TaskRow>('SELECT * FROM tasks WHERE task_id = ?'),
      findByIdempotencyKey: db.prepare<[string, string], TaskRow>(
        'SELECT * FROM tasks WHERE user = ? AND idempotency_key = ?',
      ),
      markRunning: db.prepare(`
        UPDATE tasks SET status = 'running', started_at = @now, updated_at = @now
        WHERE task_id = @taskId AND status = 'waiting'`),
      finalize: db.prepare(`
        UPDATE tasks SET status = @status, images = @images, info = @info, parameters = @parameters,
                         message = @message, error_kind = @errorKind, timings = @timings, cost = @cost,
                         updated_at = @now,
                         finished_at = @now
        WHERE task_id = @taskId AND status IN ('waiting', 'running')`),
      // One statement each, so two concurrent writers for one task never take the same id.
      appendStatusEvent: db.prepare<
        [{ taskId: string; status: string; phase: string; coldStart: number | null; at: string }],
        { id: number }
      >(`
        INSERT INTO task_events (task_id, id, status, phase, cold_start, at)
        SELECT @taskId, COALESCE(MAX(id), 0) + 1, @status, @phase, @coldStart, @at FROM task_events
        WHERE task_id = @taskId
        RETURNING id`),
      listStatusEvents: db.prepare<[string, number], StatusEventRow>(
        'SELECT * FROM task_events WHERE task_id = ? AND id > ? ORDER BY id',
      ),
      recordWebhookAttempt: db.prepare(`
        INSERT INTO webhook_attempts (task_id, seq, event, webhook_id, at, status_code, error, duration_ms)
        SELECT @taskId, COALESCE(MAX(seq), 0) + 1, @event, @webhookId, @at, @statusCode, @error, @durationMs
        FROM webhook_attempts WHERE task_id = @taskId`),
      listWebhookAttempts: db.prepare<[string], WebhookAttemptRow>(
        'SELECT * FROM webhook_attempts WHERE task_id = ? ORDER BY seq',
      ),
      markDeleted: db.prepare(`
        UPDATE tasks SET status = 'deleted', images = '[]', updated_at = @now
        WHERE task_id = @taskId AND status IN ('succeeded', 'failed', 'cancelled')`),
      countTasks: db.prepare<[], { status: string; model: string; count: number }>(
        'SELECT status, model, COUNT(*) AS count FROM tasks GROUP BY status, model',
      ),
      putModel: db.prepare(`
        INSERT INTO models (name, type, oss_path, etag, status, message, registered_time, last_modification_time)
        VALUES (@name, @type, @ossPath, @etag, @status, @message, @registeredTime, @lastModificationTime)
        ON CONFLICT (name) DO UPDATE SET type = excluded.type, oss_path = excluded.oss_path, etag = excluded.etag,
          status = excluded.status, message = excluded.message, registered_time = excluded.registered_time,
          last_modification_time = excluded.last_modification_time`),
      insertModel: db.prepare(`
        INSERT INTO models (name, type, oss_path, etag, status, message, registered_time, last_modification_time)
        VALUES (@name, @type, @ossPath, @etag, @status, @message, @registeredTime, @lastModificationTime)
        ON CONFLICT (name) DO UPDATE SET type = excluded.type, oss_path = excluded.oss_path, etag = excluded.etag,
          status = excluded.status, message = excluded.message, registered_time = excluded.registered_time,
          last_modification_time = excluded.last_modification_time
        WHERE models.status = 'deleted'`),
      getModel: db.prepare<[string], ModelRow>('SELECT * FROM models WHERE name = ?'),
      removeModel: db.prepare("DELETE FROM models WHERE name = ? AND registered_time = ? AND status = 'registering'"),
      listModels: db.prepare<{ type: string | null; status: string | null }, ModelRow>(`
        SELECT * FROM models
        WHERE (@type IS NULL OR type = @type) AND (@status IS NULL OR status = @status)
        ORDER BY name`),
      // A re-put keeps the original createdAt: concurrent ensureFunction calls each stamp their own "now".
      putFunction: db.prepare(`
        INSERT INTO functions (function_name, model, resources, created_at, updated_at)
        VALUES (@functionName, @model, @resources, @createdAt, @updatedAt)
        ON CONFLICT (function_name) DO UPDATE SET model = excluded.model, resources = excluded.resources,
          updated_at = excluded.updated_at`),
      getFunction: db.prepare<[string], FunctionRow>('SELECT * FROM functions WHERE function_name = ?'),
      listFunctions: db.prepare<[], FunctionRow>('SELECT * FROM functions ORDER BY function_name'),
      deleteFunction: db.prepare('DELETE FROM functions WHERE function_name = ?'),
      // One statement, so two concurrent writers for one user never compute the same version.
      putUserOptions: db.prepare<[string, string, string, string], { version: number }>(`
        INSERT INTO user_options (user, version, data, created_at)
        SELECT ?, COALESCE(MAX(version), 0) + 1, ?, ? FROM user_options WHERE user = ?
        RETURNING version`),
      getUserOptions: db.prepare<[string, number], UserOptionsRow>(
        'SELECT * FROM user_options WHERE user = ? AND version = ?',
      ),
      latestUserOptions: db.prepare<[string], UserOptionsRow>(
        'SELECT * FROM user_options WHERE user = ? ORDER BY version DESC LIMIT 1',
      ),
      getConfig: db.prepare<[string], { value: string }>('SELECT value FROM config WHERE key = ?'),
      insertConfig: db.prepare('INSERT INTO config (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING'),
      // One atomic statement: a new window restarts the count, the same window adds one.
      hitRateWindow: db.prepare<[{ subject: string; window: number }], { hits: number }>(
        `INSERT INTO rate_windows (subject, window, hits) VALUES (@subject, @window, 1)
         ON CONFLICT (subject) DO UPDATE SET
           hits = CASE WHEN window = excluded.window THEN hits + 1 ELSE 1 END,
           window = excluded.window
         RETURNING hits`,
      ),
      // One atomic statement: the row is taken only when it is missing, expired (expires_at is epoch ms), or ours.
      acquireLease: db.prepare<[{ resource: string; holder: string; now: number; expiresAt: number }]>(
        `INSERT INTO leases (resource, holder, expires_at) VALUES (@resource, @holder, @expiresAt)
         ON CONFLICT (resource) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE leases.expires_at <= @now OR leases.holder = excluded.holder`,
      ),
      renewLease: db.prepare<[{ resource: string; holder: string; expiresAt: number }]>(
        'UPDATE leases SET expires_at = @expiresAt WHERE resource = @resource AND holder = @holder',
      ),
      releaseLease: db.prepare<[string, string]>('DELETE FROM leases WHERE resource = ? AND holder = ?'),
    };
  }

  /** Opens (creating the file and its directory if needed) and migrates the database. */
  static open(file: string): SqliteMetaStore {
    mkdirSync(dirname(file), { recursive: true });
    const db = new Database(file);
    try {
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      migrate(db);
      return new SqliteMetaStore(db);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  async insertTask(task: NewTask): Promise<TaskRecord | null> {
    const createdAt = now();
    const result = this.stmt.insertTask.run({
      taskId: task.taskId,
      user: task.user,
      kind: task.kind,
      model: task.model,
      params: JSON.stringify(task.params),
      info: task.info ?? null,
      parameters: jsonOrNull(task.parameters),
      message: task.message ?? null,
      errorKind: task.errorKind ?? null,
      retryOf: task.retryOf ?? null,
      webhook: jsonOrNull(task.webhook),
      scheduling: jsonOrNull(task.scheduling),
      idempotencyKey: task.idempotencyKey ?? null,
      requestHash: task.requestHash ?? null,
      now: createdAt,
    });
    return result.changes === 1 ? insertedTask(task, createdAt) : null;
  }

  async getTask(taskId: string): Promise<TaskRecord | null> {
    const row = this.stmt.getTask.get(taskId);
    return row ? toTask(row) : null;
  }

  async findTaskByIdempotencyKey(user: string, idempotencyKey: string): Promise<TaskRecord | null> {
    const row = this.stmt.findByIdempotencyKey.get(user, idempotencyKey);
    return row ? toTask(row) : null;
  }

  async markTaskRunning(taskId: string): Promise<void> {
    this.stmt.markRunning.run({ taskId, now: now() });
  }

  async finalizeTask(taskId: string, final: TaskFinal): Promise<TaskRecord | null> {
    if (!isFinal(final.status)) throw new Error(`finalizeTask needs a final status, got ${final.status}`);
    const row = this.db
      .transaction(() => {
        this.stmt.finalize.run({
          taskId,
          status: final.status,
          images: JSON.stringify(final.images),
          info: final.info ?? null,
          parameters: jsonOrNull(final.parameters),
          message: final.message ?? null,
          errorKind: final.errorKind ?? null,
          timings: jsonOrNull(final.timings),
          cost: jsonOrNull(final.cost),
          now: now(),
        });
        return this.stmt.getTask.get(taskId);
      })
      .immediate();
    return row ? toTask(row) : null;
  }

  async markTaskDeleted(taskId: string): Promise<TaskRecord | null> {
    const row = this.db
      .transaction(() => {
        this.stmt.markDeleted.run({ taskId, now: now() });
        return this.stmt.getTask.get(taskId);
      })
      .immediate();
    return row ? toTask(row) : null;
  }

  async countTasks(): Promise<TaskCount[]> {
    return this.stmt.countTasks.all().map((r) => ({ status: r.status as TaskStatus, model: r.model, count: r.count }));
  }

  /** Newest first (createdAt, then taskId, descending). An empty status list means any status. */
  async listTasks(query: TaskQuery): Promise<Page<TaskRecord>> {
    const limit = pageLimit(query.limit);
    const where: string[] = [];
    const args: string[] = [];
    if (query.user !== undefined) {
      where.push('user = ?');
      args.push(query.user);
    }
    if (query.status !== undefined && query.status.length > 0) {
      where.push(`status IN (${query.status.map(() => '?').join(', ')})`);
      args.push(...query.status);
    }
    if (query.createdBefore !== undefined) {
      where.push('created_at < ?');
      args.push(isoInstant(query.createdBefore));
    }
    if (query.cursor !== undefined) {
      const position = decodeCursor(query.cursor);
      where.push('(created_at, task_id) < (?, ?)');
      args.push(position.createdAt, position.taskId);
    }
    const sql = `SELECT * FROM tasks ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY created_at DESC, task_id DESC LIMIT ?`;
    // One row past the page tells whether another page exists, so the last page carries no cursor.
    const rows = this.db.prepare<unknown[], TaskRow>(sql).all(...args, limit + 1);
    const items = rows.slice(0, limit).map(toTask);
    if (rows.length <= limit) return { items };
    const last = items[items.length - 1];
    return { items, cursor: encodeCursor({ createdAt: last.createdAt, taskId: last.taskId }) };
  }

  async appendStatusEvent(taskId: string, event: NewStatusEvent): Promise<StatusEvent> {
    const at = now();
    const coldStart = event.coldStart === undefined ? null : Number(event.coldStart);
    const { id } = this.stmt.appendStatusEvent.get({
      taskId,
      status: event.status,
      phase: event.phase,
      coldStart,
      at,
    })!;
    return { id, ...event, at };
  }

  async listStatusEvents(taskId: string, afterId = 0): Promise<StatusEvent[]> {
    return this.stmt.listStatusEvents.all(taskId, afterId).map(toStatusEvent);
  }

  async recordWebhookAttempt(taskId: string, attempt: WebhookAttempt): Promise<void> {
    this.stmt.recordWebhookAttempt.run({
      taskId,
      event: attempt.event,
      webhookId: attempt.webhookId,
      at: attempt.at,
      statusCode: attempt.statusCode ?? null,
      error: attempt.error ?? null,
      durationMs: Math.round(attempt.durationMs),
    });
  }

  async listWebhookAttempts(taskId: string): Promise<WebhookAttempt[]> {
    return this.stmt.listWebhookAttempts.all(taskId).map(toWebhookAttempt);
  }

  async putModel(model: ModelRecord): Promise<void> {
    this.stmt.putModel.run(modelParams(model));
  }

  /** False when a model of that name exists and is not `deleted`; a deleted one is replaced. */
  async insertModel(model: ModelRecord): Promise<boolean> {
    return this.stmt.insertModel.run(modelParams(model)).changes === 1;
  }

  async getModel(name: string): Promise<ModelRecord | null> {
    const row = this.stmt.getModel.get(name);
    return row ? toModel(row) : null;
  }

  async removeModel(name: string, registeredTime: string): Promise<boolean> {
    return this.stmt.removeModel.run(name, registeredTime).changes === 1;
  }

  async listModels(filter: { type?: ModelType; status?: ModelStatus } = {}): Promise<ModelRecord[]> {
    return this.stmt.listModels.all({ type: filter.type ?? null, status: filter.status ?? null }).map(toModel);
  }

  async putFunction(fn: FunctionRecord): Promise<void> {
    this.stmt.putFunction.run({
      functionName: fn.functionName,
      model: fn.model,
      resources: JSON.stringify(fn.resources),
      createdAt: fn.createdAt,
      updatedAt: fn.updatedAt,
    });
  }

  async getFunction(functionName: string): Promise<FunctionRecord | null> {
    const row = this.stmt.getFunction.get(functionName);
    return row ? toFunction(row) : null;
  }

  async listFunctions(): Promise<FunctionRecord[]> {
    return this.stmt.listFunctions.all().map(toFunction);
  }

  async deleteFunction(functionName: string): Promise<void> {
    this.stmt.deleteFunction.run(functionName);
  }

  async putUserOptions(user: string, data: Record<string, unknown>): Promise<number> {
    return this.stmt.putUserOptions.get(user, JSON.stringify(data), now(), user)!.version;
  }

  async getUserOptions(user: string, version?: number): Promise<UserOptions | null> {
    const row =
      version === undefined ? this.stmt.latestUserOptions.get(user) : this.stmt.getUserOptions.get(user, version);
    return row ? { user: row.user, version: row.version, data: JSON.parse(row.data), createdAt: row.created_at } : null;
  }

  async getConfigValue(key: string): Promise<string | null> {
    return this.stmt.getConfig.get(key)?.value ?? null;
  }

  async hitRateWindow(subject: string, window: number): Promise<number> {
    return this.stmt.hitRateWindow.get({ subject, window })!.hits;
  }

  async tryAcquireLease(resource: string, holder: string, ttlMs: number): Promise<boolean> {
    const nowMs = Date.now();
    return this.stmt.acquireLease.run({ resource, holder, now: nowMs, expiresAt: nowMs + ttlMs }).changes === 1;
  }

  async renewLease(resource: string, holder: string, ttlMs: number): Promise<boolean> {
    return this.stmt.renewLease.run({ resource, holder, expiresAt: Date.now() + ttlMs }).changes === 1;
  }

  async releaseLease(resource: string, holder: string): Promise<void> {
    this.stmt.releaseLease.run(resource, holder);
  }

  async setConfigValueOnce(key: string, value: string): Promise<string> {
    this.stmt.insertConfig.run(key, value);
    // Config rows are never deleted, so the row is there: ours, or a concurrent first writer's.
    return this.stmt.getConfig.get(key)!.value;
  }

  async close(): Promise<void> {
    this.db.close();
  }
}

function modelParams(model: ModelRecord) {
  return {
    name: model.name,
    type: model.type,
    ossPath: model.ossPath,
    etag: model.etag,
    status: model.status,
    message: model.message ?? null,
    registeredTime: model.registeredTime,
    lastModificationTime: model.lastModificationTime,
  };
}
