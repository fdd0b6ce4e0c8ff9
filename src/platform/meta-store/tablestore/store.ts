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
import { FINAL_STATUSES, isFinal, type TaskStatus } from '../../../types.js';
import { type CursorPosition, decodeCursor, encodeCursor, isoInstant, pageLimit } from '../cursor.js';
import type { MetaStore, Page, TaskQuery } from '../port.js';
import { isConditionFailure, MetaStoreError, TablestoreCaller } from './client.js';
import {
  finalUpdate,
  functionColumns,
  functionFromColumns,
  leaseColumns,
  leaseFromColumns,
  modelColumns,
  modelFromColumns,
  newTaskColumns,
  runningUpdate,
  scopeKey,
  statusScopes,
  TABLES,
  taskFromColumns,
  taskScopes,
  userOptionsColumns,
  userOptionsFromColumns,
  userOptionsKey,
  writeIdOf,
} from './rows.js';
import { allOf, anyOf, BATCH_GET_LIMIT, condition, conditionally, equals, type PrimaryKey, Tables } from './tables.js';

export { MetaStoreError } from './client.js';

// The meta store on Alibaba Tablestore, through the official `tablestore` SDK and the row operations of tables.ts.
// It behaves as SqliteMetaStore does.
//
// Listing. Tablestore reads a plain table only by primary key (GetRow, GetRange), and listTasks filters by user and
// by status, newest first. The tasks are listed through `task_index`, a table of pointer rows keyed
// (scope, createdAt, taskId), that the adapter keeps: every task has a pointer in four scopes — all tasks, its
// user's, its status's, and its user's in its status. A query reads one scope per requested status with GetRange
// BACKWARD (newest first), follows next_start_primary_key past any page size, merges the scopes in
// (createdAt, taskId) order and starts strictly after the cursor's row, as SQLite's keyset paging does.
// Why not a global secondary index: Tablestore's global indexes are updated asynchronously, so a task just submitted
// could be missing from the listing, and an index cannot key "all tasks" without a hot constant column either. (The
// "all tasks" scope here is one partition key too; it takes one small write per submitted task, far below what a
// partition sustains at the rate GPU-bound tasks arrive.)
// Pointer rows are written before the task row changes and removed only after, and a listing checks each pointer
// against the task row (same createdAt, user and status), so a writer that stops halfway leaves at worst a stale
// pointer, which listings skip: a task is never missing from a listing, and never listed twice.
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

/** Statuses a task at `status` has left for good: their status pointers can go. */
function leftStatuses(status: TaskStatus): TaskStatus[] {
  if (status === 'waiting') return [];
  if (status === 'running') return ['waiting'];
  return ['waiting', 'running', ...FINAL_STATUSES.filter((s) => s !== status)];
}

const now = () => new Date().toISOString();
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A listing's exclusive upper bound in (createdAt, taskId) order; a null taskId sorts before every taskId. */
interface Bound {
  createdAt: string;
  taskId: string | null;
}

/** Whether (createdAt, taskId) sorts strictly before the bound. */
function before(createdAt: string, taskId: string, bound: Bound): boolean {
  if (createdAt !== bound.createdAt) return createdAt < bound.createdAt;
  return bound.taskId !== null && taskId < bound.taskId;
}

function tighter(a: Bound | undefined, b: Bound | undefined): Bound | undefined {
  if (!a || !b) return a ?? b;
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? a : b;
  if (a.taskId === null) return a;
  return b.taskId === null || b.taskId < a.taskId ? b : a;
}

interface IndexEntry {
  createdAt: string;
  taskId: string;
  /** The status of the scope the entry was read from, if the scope has one. */
  status?: TaskStatus;
}

const newer = (a: IndexEntry, b: IndexEntry) =>
  a.createdAt !== b.createdAt ? a.createdAt > b.createdAt : a.taskId > b.taskId;

/** Merges streams that are each newest first into one newest-first stream. */
async function* mergeNewestFirst(streams: AsyncGenerator<IndexEntry>[]): AsyncGenerator<IndexEntry> {
  const heads = await Promise.all(streams.map((s) => s.next()));
  for (;;) {
    let pick = -1;
    for (let i = 0; i < heads.length; i++) {
      const head = heads[i];
      if (head.done) continue;
      if (pick < 0 || newer(head.value, heads[pick].value as IndexEntry)) pick = i;
    }
    if (pick < 0) return;
    yield heads[pick].value as IndexEntry;
    heads[pick] = await streams[pick].next();
  }
}

/** Test knobs; production uses the defaults. */
export interface TablestoreTuning {
  retryBaseMs?: number;
  retryMaxMs?: number;
  tableReadyTimeoutMs?: number;
}

export class TablestoreMetaStore implements MetaStore {
  private readonly tables: Tables;
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
    // Twice the longest an insert's own write can keep retrying, so a claim is never taken from a live insert.
    this.claimGraceMs = 2 * tablestore.maxAttempts * (timeoutMs + retryMaxMs);
  }

  // ---- tasks ----

  async insertTask(task: NewTask): Promise<TaskRecord | null> {
    const createdAt = now();
    const writeId = randomUUID();
    const pointers = taskScopes(task.user, 'waiting').map((scope) => this.indexKey(scope, createdAt, task.taskId));
    await this.putPointers(pointers);

    const claim =
      task.idempotencyKey === undefined
        ? undefined
        : { user: task.user, key: task.idempotencyKey, taskId: task.taskId, writeId, claimedAt: createdAt };
    if (claim && !(await this.claimIdempotencyKey(claim))) {
      // A holder with our taskId may have written these very pointer rows: leave them to it.
      if (!(await this.idempotencyHolderIs(claim, task.taskId))) await this.deletePointers(pointers);
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
    if (!stored || stored.user !== task.user || stored.createdAt !== createdAt) await this.deletePointers(pointers);
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
    await this.putPointers(statusScopes(task.user, 'running').map((s) => this.indexKey(s, task.createdAt, taskId)));
    const moved = await conditionally(() =>
      this.tables.updateRow(
        TABLES.tasks,
        [{ taskId }],
        runningUpdate(now()),
        condition('EXPECT_EXIST', equals('status', 'waiting')),
      ),
    );
    const current = moved ? { ...task, status: 'running' as const } : await this.getTask(taskId);
    if (current) await this.prunePointers(current);
  }

  async finalizeTask(taskId: string, final: TaskFinal): Promise<TaskRecord | null> {
    if (!isFinal(final.status)) throw new Error(`finalizeTask needs a final status, got ${final.status}`);
    const task = await this.getTask(taskId);
    if (!task || isFinal(task.status)) return task;
    await this.putPointers(statusScopes(task.user, final.status).map((s) => this.indexKey(s, task.createdAt, taskId)));
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
    if (stored) await this.prunePointers(stored);
    return stored;
  }

  /** Newest first (createdAt, then taskId, descending). An empty status list means any status. */
  async listTasks(query: TaskQuery): Promise<Page<TaskRecord>> {
    const limit = pageLimit(query.limit);
    const cursor: CursorPosition | undefined = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    const createdBefore = query.createdBefore === undefined ? undefined : isoInstant(query.createdBefore);
    const bound = tighter(cursor, createdBefore === undefined ? undefined : { createdAt: createdBefore, taskId: null });
    const statuses: Array<TaskStatus | undefined> =
      query.status !== undefined && query.status.length > 0 ? [...new Set(query.status)] : [undefined];
    // One row past the page tells whether another page exists, so the last page carries no cursor.
    const wanted = limit + 1;
    const chunk = Math.min(wanted, 1000);
    const entries = mergeNewestFirst(statuses.map((status) => this.scanScope(query.user, status, bound, chunk)));

    const items: TaskRecord[] = [];
    let pending: IndexEntry[] = [];
    const check = async () => {
      const rows = await this.tables.batchGet(
        TABLES.tasks,
        pending.map((e) => [{ taskId: e.taskId }]),
      );
      pending.forEach((entry, i) => {
        const row = rows[i];
        if (!row) return;
        const task = taskFromColumns(row);
        // A stale pointer (left by a writer that stopped halfway, or by a status the task has left) is skipped.
        const current =
          task.createdAt === entry.createdAt &&
          (query.user === undefined || task.user === query.user) &&
          (entry.status === undefined || task.status === entry.status);
        if (current && items.length < wanted) items.push(task);
      });
      pending = [];
    };
    for await (const entry of entries) {
      pending.push(entry);
      if (pending.length >= Math.min(BATCH_GET_LIMIT, wanted - items.length)) {
        await check();
        if (items.length >= wanted) break;
      }
    }
    if (pending.length > 0) await check();

    const page = items.slice(0, limit);
    if (items.length <= limit) return { items: page };
    const last = page[page.length - 1];
    return { items: page, cursor: encodeCursor({ createdAt: last.createdAt, taskId: last.taskId }) };
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

  // ---- the listing index ----

  private indexKey(scope: string, createdAt: string, taskId: string): PrimaryKey {
    return [{ scope }, { createdAt }, { taskId }];
  }

  private async putPointers(keys: PrimaryKey[]): Promise<void> {
    await this.tables.batchWrite(
      keys.map((primaryKey) => ({
        schema: TABLES.taskIndex,
        row: { type: 'PUT', primaryKey, attributeColumns: [], condition: condition('IGNORE') },
      })),
    );
  }

  private async deletePointers(keys: PrimaryKey[]): Promise<void> {
    await this.tables.batchWrite(
      keys.map((primaryKey) => ({
        schema: TABLES.taskIndex,
        row: { type: 'DELETE', primaryKey, condition: condition('IGNORE') },
      })),
    );
  }

  /** Removes the status pointers of statuses the task has left for good (they can never be current again). */
  private async prunePointers(task: TaskRecord): Promise<void> {
    const left = leftStatuses(task.status);
    if (left.length === 0) return;
    await this.deletePointers(
      left
        .flatMap((status) => statusScopes(task.user, status))
        .map((s) => this.indexKey(s, task.createdAt, task.taskId)),
    );
  }

  /** One scope's pointers, newest first, strictly before `bound`. */
  private async *scanScope(
    user: string | undefined,
    status: TaskStatus | undefined,
    bound: Bound | undefined,
    chunk: number,
  ): AsyncGenerator<IndexEntry> {
    const scope = scopeKey(user, status);
    const start: PrimaryKey = bound
      ? [{ scope }, { createdAt: bound.createdAt }, { taskId: bound.taskId ?? TableStore.INF_MIN }]
      : [{ scope }, { createdAt: TableStore.INF_MAX }, { taskId: TableStore.INF_MAX }];
    const end: PrimaryKey = [{ scope }, { createdAt: TableStore.INF_MIN }, { taskId: TableStore.INF_MIN }];
    for await (const row of this.tables.scan(TABLES.taskIndex, 'BACKWARD', start, end, chunk)) {
      const createdAt = row.createdAt;
      const taskId = row.taskId;
      if (typeof createdAt !== 'string' || typeof taskId !== 'string') continue;
      if (bound && !before(createdAt, taskId, bound)) continue;
      yield status === undefined ? { createdAt, taskId } : { createdAt, taskId, status };
    }
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
