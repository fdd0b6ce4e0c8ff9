import TableStore from 'tablestore';
import type { TaskRecord } from '../../../records.js';
import { FINAL_STATUSES, type TaskStatus } from '../../../types.js';
import { decodeCursor, encodeCursor, isoInstant, pageLimit } from '../cursor.js';
import type { Page, TaskQuery } from '../port.js';
import { TABLES, taskFromColumns } from './rows.js';
import { BATCH_GET_LIMIT, condition, type PrimaryKey, type Tables } from './tables.js';

// How the Tablestore meta store lists tasks. Tablestore reads a plain table only by primary key (GetRow, GetRange),
// and listTasks filters by user and by status, newest first. The tasks are listed through `task_index`, a table of
// pointer rows keyed (scope, createdAt, taskId), that the adapter keeps: every task has a pointer in four scopes —
// all tasks, its user's, its status's, and its user's in its status. A query reads one scope per requested status
// with GetRange BACKWARD (newest first), follows next_start_primary_key past any page size, merges the scopes in
// (createdAt, taskId) order and starts strictly after the cursor's row, as SQLite's keyset paging does.
//
// Why not a global secondary index: Tablestore's global indexes are updated asynchronously, so a task just submitted
// could be missing from the listing, and an index cannot key "all tasks" without a hot constant column either. (The
// "all tasks" scope here is one partition key too; it takes one small write per submitted task, far below what a
// partition sustains at the rate GPU-bound tasks arrive.)
//
// Pointer rows are written before the task row changes and removed only after, and a listing checks each pointer
// against the task row (same createdAt, user and status), so a writer that stops halfway leaves at worst a stale
// pointer, which listings skip: a task is never missing from a listing, and never listed twice.

/**
 * The index scope of a listing filter: every task, one user's, one status's, or one user's in one status.
 * JSON keeps any user name unambiguous.
 */
export function scopeKey(user: string | undefined, status: TaskStatus | undefined): string {
  return JSON.stringify([user ?? null, status ?? null]);
}

/** The scopes that depend on the task's status: they move when the status does. */
function statusScopes(user: string, status: TaskStatus): string[] {
  return [scopeKey(undefined, status), scopeKey(user, status)];
}

/** Every scope a task of this user and status is listed under. */
export function taskScopes(user: string, status: TaskStatus): string[] {
  return [scopeKey(undefined, undefined), scopeKey(user, undefined), ...statusScopes(user, status)];
}

/** Statuses a task at `status` has left for good: their status pointers can go. */
export function leftStatuses(status: TaskStatus): TaskStatus[] {
  if (status === 'waiting') return [];
  if (status === 'running') return ['waiting'];
  return ['waiting', 'running', ...FINAL_STATUSES.filter((s) => s !== status)];
}

/** What places a task in the index. */
export type IndexedTask = Pick<TaskRecord, 'taskId' | 'user' | 'createdAt'>;

export function indexKey(scope: string, createdAt: string, taskId: string): PrimaryKey {
  return [{ scope }, { createdAt }, { taskId }];
}

/** The task's pointers in every scope it is listed under at `status`. */
export function taskPointers(task: IndexedTask, status: TaskStatus): PrimaryKey[] {
  return taskScopes(task.user, status).map((scope) => indexKey(scope, task.createdAt, task.taskId));
}

/** The task's pointers in the scopes of `status` alone: what a change to that status adds. */
export function statusPointers(task: IndexedTask, status: TaskStatus): PrimaryKey[] {
  return statusScopes(task.user, status).map((scope) => indexKey(scope, task.createdAt, task.taskId));
}

/** A listing's exclusive upper bound in (createdAt, taskId) order; a null taskId sorts before every taskId. */
export interface Bound {
  createdAt: string;
  taskId: string | null;
}

/** Whether (createdAt, taskId) sorts strictly before the bound. */
export function sortsBefore(createdAt: string, taskId: string, bound: Bound): boolean {
  if (createdAt !== bound.createdAt) return createdAt < bound.createdAt;
  return bound.taskId !== null && taskId < bound.taskId;
}

/** The tighter of two bounds: the one fewer rows sort before. */
export function tighter(a: Bound | undefined, b: Bound | undefined): Bound | undefined {
  if (!a || !b) return a ?? b;
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? a : b;
  if (a.taskId === null) return a;
  return b.taskId === null || b.taskId < a.taskId ? b : a;
}

/** The GetRange keys that read a scope BACKWARD, from just before `bound` (or its newest row) to its oldest row. */
export function scopeRange(scope: string, bound: Bound | undefined): { start: PrimaryKey; end: PrimaryKey } {
  const start: PrimaryKey = bound
    ? [{ scope }, { createdAt: bound.createdAt }, { taskId: bound.taskId ?? TableStore.INF_MIN }]
    : [{ scope }, { createdAt: TableStore.INF_MAX }, { taskId: TableStore.INF_MAX }];
  const end: PrimaryKey = [{ scope }, { createdAt: TableStore.INF_MIN }, { taskId: TableStore.INF_MIN }];
  return { start, end };
}

export interface IndexEntry {
  createdAt: string;
  taskId: string;
  /** The status of the scope the entry was read from, if the scope has one. */
  status?: TaskStatus;
}

const newer = (a: IndexEntry, b: IndexEntry) =>
  a.createdAt !== b.createdAt ? a.createdAt > b.createdAt : a.taskId > b.taskId;

/** Merges streams that are each newest first into one newest-first stream. */
export async function* mergeNewestFirst(streams: AsyncGenerator<IndexEntry>[]): AsyncGenerator<IndexEntry> {
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

/** The `task_index` table: its pointer rows, and the listing that reads them. */
export class TaskIndex {
  constructor(private readonly tables: Tables) {}

  async put(pointers: PrimaryKey[]): Promise<void> {
    await this.tables.batchWrite(
      pointers.map((primaryKey) => ({
        schema: TABLES.taskIndex,
        row: { type: 'PUT', primaryKey, attributeColumns: [], condition: condition('IGNORE') },
      })),
    );
  }

  async remove(pointers: PrimaryKey[]): Promise<void> {
    await this.tables.batchWrite(
      pointers.map((primaryKey) => ({
        schema: TABLES.taskIndex,
        row: { type: 'DELETE', primaryKey, condition: condition('IGNORE') },
      })),
    );
  }

  /** Removes the status pointers of statuses the task has left for good (they can never be current again). */
  async prune(task: TaskRecord): Promise<void> {
    const left = leftStatuses(task.status);
    if (left.length === 0) return;
    await this.remove(left.flatMap((status) => statusPointers(task, status)));
  }

  /** Newest first (createdAt, then taskId, descending). An empty status list means any status. */
  async list(query: TaskQuery): Promise<Page<TaskRecord>> {
    const limit = pageLimit(query.limit);
    const cursor = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
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

  /** One scope's pointers, newest first, strictly before `bound`. */
  private async *scanScope(
    user: string | undefined,
    status: TaskStatus | undefined,
    bound: Bound | undefined,
    chunk: number,
  ): AsyncGenerator<IndexEntry> {
    const { start, end } = scopeRange(scopeKey(user, status), bound);
    for await (const row of this.tables.scan(TABLES.taskIndex, 'BACKWARD', start, end, chunk)) {
      const createdAt = row.createdAt;
      const taskId = row.taskId;
      if (typeof createdAt !== 'string' || typeof taskId !== 'string') continue;
      if (bound && !sortsBefore(createdAt, taskId, bound)) continue;
      yield status === undefined ? { createdAt, taskId } : { createdAt, taskId, status };
    }
  }
}
