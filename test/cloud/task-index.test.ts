import TableStore from 'tablestore';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeCursor } from '../../src/platform/meta-store/cursor.js';
import type { TaskQuery } from '../../src/platform/meta-store/port.js';
import { TablestoreCaller } from '../../src/platform/meta-store/tablestore/client.js';
import { newTaskColumns, TABLES } from '../../src/platform/meta-store/tablestore/rows.js';
import { Tables } from '../../src/platform/meta-store/tablestore/tables.js';
import {
  type IndexEntry,
  type IndexedTask,
  indexKey,
  leftStatuses,
  mergeNewestFirst,
  scopeKey,
  scopeRange,
  sortsBefore,
  statusPointers,
  TaskIndex,
  taskPointers,
  tighter,
} from '../../src/platform/meta-store/tablestore/task-index.js';
import type { TaskRecord } from '../../src/records.js';
import type { TaskStatus } from '../../src/types.js';
import { TablestoreFake } from './fakes/tablestore-fake.js';

// The Tablestore task index on its own: its scopes, bounds and merge as plain functions, and its pointer rows and
// listing against the Tablestore fake, with task rows written directly (no meta store around it).

const PREFIX = 'index_test_';
const at = (second: number) => new Date(Date.UTC(2024, 0, 1, 0, 0, second)).toISOString();
const indexed = (taskId: string, user = 'alice', createdAt = at(0)): IndexedTask => ({ taskId, user, createdAt });

describe('scopes and pointers', () => {
  it('points at a task from four scopes, the two of its status among them', () => {
    const task = indexed('t1', 'alice', at(5));
    expect(taskPointers(task, 'running')).toEqual([
      indexKey('[null,null]', at(5), 't1'),
      indexKey('["alice",null]', at(5), 't1'),
      indexKey('[null,"running"]', at(5), 't1'),
      indexKey('["alice","running"]', at(5), 't1'),
    ]);
    expect(statusPointers(task, 'running')).toEqual(taskPointers(task, 'running').slice(2));
    expect(indexKey(scopeKey('alice', undefined), at(5), 't1')).toEqual([
      { scope: '["alice",null]' },
      { createdAt: at(5) },
      { taskId: 't1' },
    ]);
  });

  it('lets go of the statuses a task can never have again', () => {
    expect(leftStatuses('waiting')).toEqual([]);
    expect(leftStatuses('running')).toEqual(['waiting']);
    expect(leftStatuses('succeeded')).toEqual(['waiting', 'running', 'failed', 'cancelled']);
    expect(leftStatuses('cancelled')).toEqual(['waiting', 'running', 'succeeded', 'failed']);
  });
});

describe('bounds', () => {
  it('sorts by createdAt, then taskId; a bound without a taskId is before every task of its instant', () => {
    expect(sortsBefore(at(1), 'z', { createdAt: at(2), taskId: 'a' })).toBe(true);
    expect(sortsBefore(at(2), 'a', { createdAt: at(2), taskId: 'b' })).toBe(true);
    expect(sortsBefore(at(2), 'b', { createdAt: at(2), taskId: 'b' })).toBe(false);
    expect(sortsBefore(at(2), 'a', { createdAt: at(2), taskId: null })).toBe(false);
    expect(sortsBefore(at(3), 'a', { createdAt: at(2), taskId: null })).toBe(false);
  });

  it('takes the tighter of a cursor and a createdBefore', () => {
    const cursor = { createdAt: at(2), taskId: 'm' };
    expect(tighter(cursor, undefined)).toBe(cursor);
    expect(tighter(undefined, cursor)).toBe(cursor);
    expect(tighter(undefined, undefined)).toBeUndefined();
    expect(tighter(cursor, { createdAt: at(1), taskId: null })).toEqual({ createdAt: at(1), taskId: null });
    expect(tighter(cursor, { createdAt: at(3), taskId: null })).toBe(cursor);
    expect(tighter(cursor, { createdAt: at(2), taskId: null })).toEqual({ createdAt: at(2), taskId: null });
    expect(tighter({ createdAt: at(2), taskId: 'z' }, cursor)).toBe(cursor);
  });

  it('reads a scope backward from its newest row, from a cursor row, or from before an instant', () => {
    const scope = scopeKey(undefined, 'waiting');
    const oldest = [{ scope }, { createdAt: TableStore.INF_MIN }, { taskId: TableStore.INF_MIN }];
    expect(scopeRange(scope, undefined)).toEqual({
      start: [{ scope }, { createdAt: TableStore.INF_MAX }, { taskId: TableStore.INF_MAX }],
      end: oldest,
    });
    expect(scopeRange(scope, { createdAt: at(2), taskId: 'm' })).toEqual({
      start: [{ scope }, { createdAt: at(2) }, { taskId: 'm' }],
      end: oldest,
    });
    expect(scopeRange(scope, { createdAt: at(2), taskId: null })).toEqual({
      start: [{ scope }, { createdAt: at(2) }, { taskId: TableStore.INF_MIN }],
      end: oldest,
    });
  });
});

describe('merging scopes', () => {
  async function* stream(entries: IndexEntry[]): AsyncGenerator<IndexEntry> {
    yield* entries;
  }
  const collect = async (merged: AsyncGenerator<IndexEntry>) => {
    const out: string[] = [];
    for await (const entry of merged) out.push(`${entry.taskId}:${entry.status ?? '-'}`);
    return out;
  };

  it('merges newest-first streams into one, ties in createdAt broken by taskId', async () => {
    const running: IndexEntry[] = [
      { createdAt: at(5), taskId: 'e', status: 'running' },
      { createdAt: at(3), taskId: 'b', status: 'running' },
    ];
    const waiting: IndexEntry[] = [
      { createdAt: at(4), taskId: 'd', status: 'waiting' },
      { createdAt: at(3), taskId: 'c', status: 'waiting' },
      { createdAt: at(1), taskId: 'a', status: 'waiting' },
    ];
    expect(await collect(mergeNewestFirst([stream(running), stream(waiting)]))).toEqual([
      'e:running',
      'd:waiting',
      'c:waiting',
      'b:running',
      'a:waiting',
    ]);
  });

  it('ends at once with no streams or only empty ones', async () => {
    expect(await collect(mergeNewestFirst([]))).toEqual([]);
    expect(await collect(mergeNewestFirst([stream([]), stream([])]))).toEqual([]);
  });
});

describe('pointer rows and listing, against the Tablestore fake', () => {
  let fake: TablestoreFake;
  let tables: Tables;
  let index: TaskIndex;

  beforeEach(async () => {
    // Three rows a GetRange page, so a listing of more has to follow next_start_primary_key.
    fake = await TablestoreFake.start({ pageLimit: 3 });
    const caller = new TablestoreCaller({
      endpoint: fake.endpoint,
      instance: fake.instance,
      accessKeyId: fake.accessKeyId,
      accessKeySecret: fake.accessKeySecret,
      timeoutMs: 1000,
      maxAttempts: 2,
      retryBaseMs: 5,
      retryMaxMs: 20,
    });
    tables = new Tables(caller, PREFIX, 10_000);
    index = new TaskIndex(tables);
  });

  afterEach(async () => {
    tables.close();
    await fake.close();
  });

  /** Writes the task's row at `status`, and its pointers at `pointed` (its status unless given). */
  async function task(
    taskId: string,
    options: { user?: string; second?: number; status?: TaskStatus; pointed?: TaskStatus } = {},
  ): Promise<TaskRecord> {
    const { user = 'alice', second = 0, status = 'waiting' } = options;
    const createdAt = at(second);
    const columns = newTaskColumns({ taskId, user, kind: 'txt2img', model: 'sd15', params: {} }, createdAt, 'w');
    await tables.putRow(TABLES.tasks, [{ taskId }], { ...columns, status }, 'IGNORE');
    await index.put(taskPointers(indexed(taskId, user, createdAt), options.pointed ?? status));
    return {
      taskId,
      user,
      kind: 'txt2img',
      model: 'sd15',
      status,
      params: {},
      images: [],
      createdAt,
      updatedAt: at(0),
    };
  }

  const ids = async (query: TaskQuery) => (await index.list(query)).items.map((t) => t.taskId);

  const pointerRows = () => fake.rows(`${PREFIX}task_index`).map((row) => `${row.scope} ${row.taskId}`);

  it('lists newest first through the pointers, a page at a time, following GetRange pages', async () => {
    for (let i = 0; i < 10; i++) await task(`t${i}`, { second: i });
    const pages: string[][] = [];
    let cursor: string | undefined;
    do {
      const page = await index.list({ limit: 4, cursor });
      pages.push(page.items.map((t) => t.taskId));
      cursor = page.cursor;
    } while (cursor);
    expect(pages).toEqual([
      ['t9', 't8', 't7', 't6'],
      ['t5', 't4', 't3', 't2'],
      ['t1', 't0'],
    ]);
    expect(fake.recorded('GetRange', `${PREFIX}task_index`).length).toBeGreaterThan(3);
  });

  it('filters by user, merges the scopes of several statuses, and bounds by cursor and createdBefore', async () => {
    await task('a0', { second: 0, status: 'running' });
    await task('b1', { user: 'bob', second: 1 });
    await task('a2', { second: 2 });
    await task('a3', { second: 3, status: 'succeeded' });
    await task('a4', { second: 4, status: 'running' });

    expect(await ids({ user: 'alice' })).toEqual(['a4', 'a3', 'a2', 'a0']);
    expect(await ids({ status: ['running', 'waiting'] })).toEqual(['a4', 'a2', 'b1', 'a0']);
    expect(await ids({ user: 'alice', status: ['waiting', 'running'] })).toEqual(['a4', 'a2', 'a0']);
    expect(await ids({ createdBefore: at(3) })).toEqual(['a2', 'b1', 'a0']);
    const cursor = encodeCursor({ createdAt: at(2), taskId: 'a2' });
    expect(await ids({ cursor })).toEqual(['b1', 'a0']);
    expect(await ids({ cursor, createdBefore: at(1) })).toEqual(['a0']);
    expect(await ids({ cursor: encodeCursor({ createdAt: at(4), taskId: 'a4' }), createdBefore: at(3) })).toEqual([
      'a2',
      'b1',
      'a0',
    ]);
  });

  it('skips stale pointers: no task row, another createdAt, another user, or a status the task has left', async () => {
    await task('live', { second: 1 });
    // Pointers whose task row never came.
    await index.put(taskPointers(indexed('ghost', 'alice', at(2)), 'waiting'));
    // A task row written at another instant than its pointers say.
    await task('moved', { second: 3 });
    await index.put(taskPointers(indexed('moved', 'alice', at(4)), 'waiting'));
    // A task that went on to succeed while its waiting pointers stayed.
    await task('done', { second: 5, status: 'succeeded', pointed: 'waiting' });
    await index.put(statusPointers(indexed('done', 'alice', at(5)), 'succeeded'));
    // A pointer in bob's scope for alice's task.
    await index.put([indexKey(scopeKey('bob', undefined), at(1), 'live')]);

    expect(await ids({})).toEqual(['done', 'moved', 'live']);
    expect(await ids({ status: ['waiting'] })).toEqual(['moved', 'live']);
    expect(await ids({ status: ['succeeded'] })).toEqual(['done']);
    expect(await ids({ user: 'bob' })).toEqual([]);
  });

  it('prunes only the pointers of statuses the task has left', async () => {
    const done = await task('done', { status: 'succeeded', pointed: 'waiting' });
    await index.put([...statusPointers(done, 'running'), ...statusPointers(done, 'succeeded')]);
    await index.prune(done);
    expect(pointerRows().sort()).toEqual(
      [
        `${scopeKey(undefined, undefined)} done`,
        `${scopeKey('alice', undefined)} done`,
        `${scopeKey(undefined, 'succeeded')} done`,
        `${scopeKey('alice', 'succeeded')} done`,
      ].sort(),
    );
    const writes = fake.recorded('BatchWriteRow').length;
    await index.prune({ ...done, status: 'waiting' });
    expect(fake.recorded('BatchWriteRow')).toHaveLength(writes);
  });

  it('removes exactly the pointers given, and removing absent ones is no error', async () => {
    const kept = await task('kept');
    const gone = await task('gone', { second: 1 });
    await index.remove(taskPointers(gone, 'waiting'));
    await index.remove(taskPointers(gone, 'waiting'));
    expect(pointerRows()).toHaveLength(4);
    expect(await ids({})).toEqual([kept.taskId]);
  });
});
