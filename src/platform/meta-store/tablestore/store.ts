import { randomUUID } from 'node:crypto';
import TableStore from 'tablestore';
import { ConfigError, type TablestoreConfig } from '../../../config/index.js';
import type {
  FunctionRecord,
  ModelRecord,
  ModelStatus,
  ModelType,
  NewTask,
  TaskFinal,
  TaskRecord,
  UserOptions,
} from '../../../records.js';
import { insertedTask } from '../../../records.js';
import { isFinal } from '../../../types.js';
import type { MetaStore, Page, TaskCount, TaskQuery } from '../port.js';
import { isConditionFailure, MetaStoreError, TablestoreCaller } from './client.js';
import {
  deletedUpdate,
  finalUpdate,
  functionColumns,
  functionFromColumns,
  leaseColumns,
  leaseFromColumns,
  modelColumns,
  modelFromColumns,
  newTaskColumns,
  runningUpdate,
  TABLES,
  taskFromColumns,
  userOptionsColumns,
  userOptionsFromColumns,
  userOptionsKey,
  writeIdOf,
} from './rows.js';
import { allOf, anyOf, condition, conditionally, equals, type PrimaryKey, Tables } from './tables.js';
import { statusPointers, TaskIndex, taskPointers } from './task-index.js';

export { MetaStoreError } from './client.js';

// The meta store on Alibaba Tablestore, through the official `tablestore` SDK. It behaves as SqliteMetaStore does.
// Its row operations and table setup are tables.ts's; tasks are listed through the index that task-index.ts keeps.
//
// Writes are conditional (row existence plus column conditions), so a retried or late write never overwrites a
// newer state. A retried insert whose first attempt was applied but whose response was lost finds a row already
// there; the rows carry the id of the write that made them, so the insert recognizes its own row and reports it
// inserted. Idempotency keys are rows keyed (user, idempotencyKey), claimed with EXPECT_NOT_EXIST before the task row.

const DEFAULT_TABLE_READY_TIMEOUT_MS = 60_000;
/** How often a conditional write is retried when rivals keep changing the row under it. */
const CONTENTION_ROUNDS = 20;
/** How long an insert waits for a concurrent insert holding the same idempotency key to write its task row. */
const CLAIM_WAIT_MS = 1000;
const CLAIM_POLL_MS = 100;

const now = () => new Date().toISOString();
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Test knobs; production uses the defaults. */
export interface TablestoreTuning {
  retryBaseMs?: number;
  retryMaxMs?: number;
  tableReadyTimeoutMs?: number;
}

export class TablestoreMetaStore implements MetaStore {
  private readonly tables: Tables;
  private readonly index: TaskIndex;
  /** An idempotency claim whose task row is still missing after this long belongs to an insert that gave up. */
  private readonly claimGraceMs: number;

  constructor(tablestore: TablestoreConfig, tuning: TablestoreTuning = {}) {
    const { credentials } = tablestore;
    const missing: string[] = [];
    if (!tablestore.endpoint) missing.push('SDFLOW_TABLESTORE_ENDPOINT');
    if (!tablestore.instance) missing.push('SDFLOW_TABLESTORE_INSTANCE');
    if (!credentials.accessKeyId) missing.push('ALIBABA_CLOUD_ACCESS_KEY_ID');
    if (!credentials.accessKeySecret) missing.push('ALIBABA_CLOUD_ACCESS_KEY_SECRET');
    if (!tablestore.endpoint || !tablestore.instance || !credentials.accessKeyId || !credentials.accessKeySecret) {
      throw new ConfigError(`the Tablestore meta store (SDFLOW_META_STORE=tablestore) needs ${missing.join(', ')}`);
    }
    if (!/^https?:\/\//.test(tablestore.endpoint)) {
      throw new ConfigError(
        `SDFLOW_TABLESTORE_ENDPOINT must be an http(s) URL, like https://<instance>.<region>.ots.aliyuncs.com`,
      );
    }
    const retryBaseMs = tuning.retryBaseMs ?? 100;
    const retryMaxMs = tuning.retryMaxMs ?? 3000;
    const timeoutMs = tablestore.timeoutS * 1000;
    const caller = new TablestoreCaller({
      endpoint: tablestore.endpoint,
      instance: tablestore.instance,
      accessKeyId: credentials.accessKeyId,
      accessKeySecret: credentials.accessKeySecret,
      securityToken: credentials.securityToken,
      timeoutMs,
      maxAttempts: tablestore.maxAttempts,
      retryBaseMs,
      retryMaxMs,
    });
    this.tables = new Tables(
      caller,
      tablestore.tablePrefix,
      tuning.tableReadyTimeoutMs ?? DEFAULT_TABLE_READY_TIMEOUT_MS,
    );
    this.index = new TaskIndex(this.tables);
    // Twice the longest an insert's own write can keep retrying, so a claim is never taken from a live insert.
    this.claimGraceMs = 2 * tablestore.maxAttempts * (timeoutMs + retryMaxMs);
  }

  // ---- tasks ----

  async insertTask(task: NewTask): Promise<TaskRecord | null> {
    const createdAt = now();
    const writeId = randomUUID();
    const pointers = taskPointers({ ...task, createdAt }, 'waiting');
    await this.index.put(pointers);

    const claim =
      task.idempotencyKey === undefined
        ? undefined
        : { user: task.user, key: task.idempotencyKey, taskId: task.taskId, writeId, claimedAt: createdAt };
    if (claim && !(await this.claimIdempotencyKey(claim))) {
      // A holder with our taskId may have written these very pointer rows: leave them to it.
      if (!(await this.idempotencyHolderIs(claim, task.taskId))) await this.index.remove(pointers);
      return null;
    }

    let written: boolean;
    try {
      written = await conditionally(() =>
        this.tables.putRow(
          TABLES.tasks,
          [{ taskId: task.taskId }],
          newTaskColumns(task, createdAt, writeId),
          'EXPECT_NOT_EXIST',
        ),
      );
    } catch (err) {
      // The key stays claimed if the row may have been written; otherwise it is given back for a retry to use.
      if (claim && err instanceof MetaStoreError && !err.mayHaveApplied) await this.releaseIdempotencyKey(claim);
      throw err;
    }
    if (written) return insertedTask(task, createdAt);

    const stored = await this.tables.getRow(TABLES.tasks, [{ taskId: task.taskId }]);
    // Our own row, written by an attempt whose response was lost.
    if (stored && writeIdOf(stored) === writeId) return insertedTask(task, createdAt);
    if (claim) await this.releaseIdempotencyKey(claim);
    if (!stored || stored.user !== task.user || stored.createdAt !== createdAt) await this.index.remove(pointers);
    return null;
  }

  async getTask(taskId: string): Promise<TaskRecord | null> {
    const row = await this.tables.getRow(TABLES.tasks, [{ taskId }]);
    return row ? taskFromColumns(row) : null;
  }

  async findTaskByIdempotencyKey(user: string, idempotencyKey: string): Promise<TaskRecord | null> {
    const claim = await this.tables.getRow(TABLES.idempotency, [{ user }, { idempotencyKey }]);
    if (!claim || typeof claim.taskId !== 'string') return null;
    const task = await this.getTask(claim.taskId);
    // The claim names the task only once that task's row is there and carries the key.
    return task && task.user === user && task.idempotencyKey === idempotencyKey ? task : null;
  }

  async markTaskRunning(taskId: string): Promise<void> {
    const task = await this.getTask(taskId);
    if (task?.status !== 'waiting') return;
    await this.index.put(statusPointers(task, 'running'));
    const moved = await conditionally(() =>
      this.tables.updateRow(
        TABLES.tasks,
        [{ taskId }],
        runningUpdate(now()),
        condition('EXPECT_EXIST', equals('status', 'waiting')),
      ),
    );
    const current = moved ? { ...task, status: 'running' as const } : await this.getTask(taskId);
    if (current) await this.index.prune(current);
  }

  async finalizeTask(taskId: string, final: TaskFinal): Promise<TaskRecord | null> {
    if (!isFinal(final.status)) throw new Error(`finalizeTask needs a final status, got ${final.status}`);
    const task = await this.getTask(taskId);
    if (!task || isFinal(task.status)) return task;
    await this.index.put(statusPointers(task, final.status));
    await conditionally(() =>
      this.tables.updateRow(
        TABLES.tasks,
        [{ taskId }],
        finalUpdate(final, now()),
        condition('EXPECT_EXIST', anyOf(equals('status', 'waiting'), equals('status', 'running'))),
      ),
    );
    // Ours, or the first final record another writer got in before it.
    const stored = await this.getTask(taskId);
    if (stored) await this.index.prune(stored);
    return stored;
  }

  /** Newest first (createdAt, then taskId, descending). An empty status list means any status. */
  listTasks(query: TaskQuery): Promise<Page<TaskRecord>> {
    return this.index.list(query);
  }

  async markTaskDeleted(taskId: string): Promise<TaskRecord | null> {
    const task = await this.getTask(taskId);
    if (!task || !isFinal(task.status)) return task;
    await this.index.put(statusPointers(task, 'deleted'));
    await conditionally(() =>
      this.tables.updateRow(
        TABLES.tasks,
        [{ taskId }],
        deletedUpdate(now()),
        condition('EXPECT_EXIST', equals('status', task.status)),
      ),
    );
    const stored = await this.getTask(taskId);
    if (stored) await this.index.prune(stored);
    return stored;
  }

  /** A scan of the task table: Tablestore tables have no aggregate, and the index's pointers carry no checkpoint. */
  async countTasks(): Promise<TaskCount[]> {
    const counts = new Map<string, TaskCount>();
    for await (const row of this.tables.scanAll(TABLES.tasks)) {
      const { status, model } = taskFromColumns(row);
      const key = JSON.stringify([status, model]);
      const entry = counts.get(key) ?? { status, model, count: 0 };
      entry.count++;
      counts.set(key, entry);
    }
    return [...counts.values()];
  }

  // ---- models ----

  async putModel(model: ModelRecord): Promise<void> {
    await this.tables.putRow(TABLES.models, [{ name: model.name }], modelColumns(model), 'IGNORE');
  }

  /** False when a model of that name exists and is not `deleted`; a deleted one is replaced. */
  async insertModel(model: ModelRecord): Promise<boolean> {
    const key = [{ name: model.name }];
    const writeId = randomUUID();
    const columns = modelColumns(model, writeId);
    for (let round = 0; round < CONTENTION_ROUNDS; round++) {
      if (await conditionally(() => this.tables.putRow(TABLES.models, key, columns, 'EXPECT_NOT_EXIST'))) return true;
      const stored = await this.tables.getRow(TABLES.models, key);
      if (!stored) continue;
      if (writeIdOf(stored) === writeId) return true;
      if (stored.status !== 'deleted') return false;
      const replaced = await conditionally(() =>
        this.tables.putRow(TABLES.models, key, columns, condition('EXPECT_EXIST', equals('status', 'deleted'))),
      );
      if (replaced) return true;
    }
    return false;
  }

  async getModel(name: string): Promise<ModelRecord | null> {
    const row = await this.tables.getRow(TABLES.models, [{ name }]);
    return row ? modelFromColumns(row) : null;
  }

  async removeModel(name: string, registeredTime: string): Promise<boolean> {
    const key = [{ name }];
    try {
      await this.tables.deleteRow(
        TABLES.models,
        key,
        condition('EXPECT_EXIST', allOf(equals('registeredTime', registeredTime), equals('status', 'registering'))),
      );
      return true;
    } catch (err) {
      if (!isConditionFailure(err)) throw err;
      // An earlier attempt may have removed it before its response was lost.
      return err.mayHaveApplied && (await this.tables.getRow(TABLES.models, key)) === null;
    }
  }

  async listModels(filter: { type?: ModelType; status?: ModelStatus } = {}): Promise<ModelRecord[]> {
    const models: ModelRecord[] = [];
    for await (const row of this.tables.scanAll(TABLES.models)) {
      const model = modelFromColumns(row);
      if (filter.type !== undefined && model.type !== filter.type) continue;
      if (filter.status !== undefined && model.status !== filter.status) continue;
      models.push(model);
    }
    return models;
  }

  // ---- functions ----

  /** A re-put keeps the original createdAt: concurrent ensureFunction calls each stamp their own "now". */
  async putFunction(fn: FunctionRecord): Promise<void> {
    const key = [{ functionName: fn.functionName }];
    const columns = functionColumns(fn);
    for (let round = 0; round < CONTENTION_ROUNDS; round++) {
      if (await conditionally(() => this.tables.putRow(TABLES.functions, key, columns, 'EXPECT_NOT_EXIST'))) return;
      const { createdAt: _kept, ...update } = columns;
      const updated = await conditionally(() =>
        this.tables.updateRow(TABLES.functions, key, { put: update, remove: [] }, condition('EXPECT_EXIST')),
      );
      if (updated) return;
    }
    throw new Error(`putFunction ${fn.functionName}: the row kept changing under ${CONTENTION_ROUNDS} attempts`);
  }

  async getFunction(functionName: string): Promise<FunctionRecord | null> {
    const row = await this.tables.getRow(TABLES.functions, [{ functionName }]);
    return row ? functionFromColumns(row) : null;
  }

  async listFunctions(): Promise<FunctionRecord[]> {
    const functions: FunctionRecord[] = [];
    for await (const row of this.tables.scanAll(TABLES.functions)) functions.push(functionFromColumns(row));
    return functions;
  }

  async deleteFunction(functionName: string): Promise<void> {
    await this.tables.deleteRow(TABLES.functions, [{ functionName }], condition('IGNORE'));
  }

  // ---- user options ----

  async putUserOptions(user: string, data: Record<string, unknown>): Promise<number> {
    const writeId = randomUUID();
    const columns = userOptionsColumns(data, now(), writeId);
    for (let round = 0; round < CONTENTION_ROUNDS; round++) {
      const version = ((await this.latestUserOptions(user))?.version ?? 0) + 1;
      const key = userOptionsKey(user, version);
      if (await conditionally(() => this.tables.putRow(TABLES.userOptions, key, columns, 'EXPECT_NOT_EXIST'))) {
        return version;
      }
      const stored = await this.tables.getRow(TABLES.userOptions, key);
      // Our own row (an attempt whose response was lost), or a concurrent writer took this version: go again.
      if (stored && writeIdOf(stored) === writeId) return version;
    }
    throw new Error(`putUserOptions for ${user}: other writers took every version for ${CONTENTION_ROUNDS} rounds`);
  }

  async getUserOptions(user: string, version?: number): Promise<UserOptions | null> {
    if (version === undefined) return this.latestUserOptions(user);
    const row = await this.tables.getRow(TABLES.userOptions, userOptionsKey(user, version));
    return row ? userOptionsFromColumns(row) : null;
  }

  // ---- rate windows ----

  /**
   * One row per subject holds the current window and its hits, moved on by compare-and-set: a write only lands if
   * the row still holds what was read, so concurrent replicas never lose a hit. Counts are kept as strings, which
   * Tablestore compares exactly.
   */
  async hitRateWindow(subject: string, window: number): Promise<number> {
    const key = [{ subject }];
    const current = String(window);
    for (let round = 0; round < CONTENTION_ROUNDS; round++) {
      const row = await this.tables.getRow(TABLES.rateWindows, key);
      if (!row) {
        if (
          await conditionally(() =>
            this.tables.putRow(TABLES.rateWindows, key, { window: current, hits: '1' }, 'EXPECT_NOT_EXIST'),
          )
        ) {
          return 1;
        }
        continue;
      }
      const hits = row.window === current ? Number(row.hits) + 1 : 1;
      const unchanged = allOf(equals('window', String(row.window)), equals('hits', String(row.hits)));
      const update = { put: { window: current, hits: String(hits) }, remove: [] };
      if (
        await conditionally(() =>
          this.tables.updateRow(TABLES.rateWindows, key, update, condition('EXPECT_EXIST', unchanged)),
        )
      ) {
        return hits;
      }
    }
    throw new Error(`hitRateWindow for ${subject}: other writers moved the counter for ${CONTENTION_ROUNDS} rounds`);
  }

  // ---- leases ----

  /**
   * One row per resource holds its holder and expiry. A missing row is taken by a put that expects none; an expired
   * row, or the holder's own, by compare-and-set on the holder and expiry just read, so of rivals only one write
   * lands. A write whose response was lost reads back as the holder's own on the next round, and is extended then.
   */
  async tryAcquireLease(resource: string, holder: string, ttlMs: number): Promise<boolean> {
    const key = [{ resource }];
    for (let round = 0; round < CONTENTION_ROUNDS; round++) {
      const row = await this.tables.getRow(TABLES.leases, key);
      const nowMs = Date.now();
      const columns = leaseColumns(holder, nowMs + ttlMs);
      if (!row) {
        if (await conditionally(() => this.tables.putRow(TABLES.leases, key, columns, 'EXPECT_NOT_EXIST'))) return true;
        continue;
      }
      const lease = leaseFromColumns(row);
      if (lease.holder !== holder && Number(lease.expiresAt) > nowMs) return false;
      const unchanged = allOf(equals('holder', lease.holder), equals('expiresAt', lease.expiresAt));
      const update = { put: columns, remove: [] };
      if (
        await conditionally(() =>
          this.tables.updateRow(TABLES.leases, key, update, condition('EXPECT_EXIST', unchanged)),
        )
      ) {
        return true;
      }
    }
    // Rivals kept taking it from under every attempt: it is not free now.
    return false;
  }

  async renewLease(resource: string, holder: string, ttlMs: number): Promise<boolean> {
    const { expiresAt } = leaseColumns(holder, Date.now() + ttlMs);
    // A lost response is harmless: the retried update still finds the row the holder's.
    return conditionally(() =>
      this.tables.updateRow(
        TABLES.leases,
        [{ resource }],
        { put: { expiresAt }, remove: [] },
        condition('EXPECT_EXIST', equals('holder', holder)),
      ),
    );
  }

  async releaseLease(resource: string, holder: string): Promise<void> {
    // A failed condition means the row is gone or another holder's: there is nothing of ours to free.
    await conditionally(() =>
      this.tables.deleteRow(TABLES.leases, [{ resource }], condition('EXPECT_EXIST', equals('holder', holder))),
    );
  }

  // ---- config ----

  async getConfigValue(key: string): Promise<string | null> {
    const row = await this.tables.getRow(TABLES.config, [{ key }]);
    return typeof row?.value === 'string' ? row.value : null;
  }

  async setConfigValueOnce(key: string, value: string): Promise<string> {
    if (await conditionally(() => this.tables.putRow(TABLES.config, [{ key }], { value }, 'EXPECT_NOT_EXIST'))) {
      return value;
    }
    // Config rows are never deleted, so the row is there: ours (a lost response), or a concurrent first writer's.
    return (await this.getConfigValue(key))!;
  }

  async close(): Promise<void> {
    this.tables.close();
  }

  // ---- idempotency claims ----

  /**
   * Claims (user, idempotencyKey) for this insert. False when a task holds the key, or when a concurrent insert
   * holding it has not written its task row within CLAIM_WAIT_MS. A claim whose task row never appeared within
   * claimGraceMs belongs to an insert that gave up, and is taken over.
   */
  private async claimIdempotencyKey(claim: Claim): Promise<boolean> {
    const key = this.claimKey(claim);
    const columns = { taskId: claim.taskId, writeId: claim.writeId, claimedAt: claim.claimedAt };
    const waitUntil = Date.now() + CLAIM_WAIT_MS;
    for (let round = 0; round < CONTENTION_ROUNDS; round++) {
      if (await conditionally(() => this.tables.putRow(TABLES.idempotency, key, columns, 'EXPECT_NOT_EXIST'))) {
        return true;
      }
      const holder = await this.tables.getRow(TABLES.idempotency, key);
      if (!holder) continue;
      if (writeIdOf(holder) === claim.writeId) return true;
      const task = typeof holder.taskId === 'string' ? await this.getTask(holder.taskId) : null;
      if (task && task.user === claim.user && task.idempotencyKey === claim.key) return false;
      const claimedAt = typeof holder.claimedAt === 'string' ? Date.parse(holder.claimedAt) : 0;
      if (Date.now() - claimedAt < this.claimGraceMs) {
        if (Date.now() >= waitUntil) return false;
        await sleep(CLAIM_POLL_MS);
        continue;
      }
      const holderWriteId = writeIdOf(holder);
      if (holderWriteId === undefined) return false;
      const taken = await conditionally(() =>
        this.tables.putRow(
          TABLES.idempotency,
          key,
          columns,
          condition('EXPECT_EXIST', equals('writeId', holderWriteId)),
        ),
      );
      if (taken) return true;
    }
    return false;
  }

  private claimKey(claim: Claim): PrimaryKey {
    return [{ user: claim.user }, { idempotencyKey: claim.key }];
  }

  /** Whether the key's current claim is for `taskId` and not ours. */
  private async idempotencyHolderIs(claim: Claim, taskId: string): Promise<boolean> {
    const holder = await this.tables.getRow(TABLES.idempotency, this.claimKey(claim));
    return holder !== null && holder.taskId === taskId && writeIdOf(holder) !== claim.writeId;
  }

  /** Gives the key back, only while the claim is still ours. */
  private async releaseIdempotencyKey(claim: Claim): Promise<void> {
    await conditionally(() =>
      this.tables.deleteRow(
        TABLES.idempotency,
        this.claimKey(claim),
        condition('EXPECT_EXIST', equals('writeId', claim.writeId)),
      ),
    );
  }

  private async latestUserOptions(user: string): Promise<UserOptions | null> {
    const start: PrimaryKey = [{ user }, { version: TableStore.INF_MAX }];
    const end: PrimaryKey = [{ user }, { version: TableStore.INF_MIN }];
    for await (const row of this.tables.scan(TABLES.userOptions, 'BACKWARD', start, end, 1)) {
      return userOptionsFromColumns(row);
    }
    return null;
  }
}

interface Claim {
  user: string;
  key: string;
  taskId: string;
  writeId: string;
  claimedAt: string;
}
