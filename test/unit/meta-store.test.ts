import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { InvalidCursorError } from '../../src/platform/meta-store/cursor.js';
import { SCHEMA_VERSION, SqliteMetaStore } from '../../src/platform/meta-store/sqlite/store.js';
import type { ModelRecord, NewTask, TaskRecord } from '../../src/records.js';

let dir: string;
let file: string;
const open: SqliteMetaStore[] = [];

function openStore(): SqliteMetaStore {
  const store = SqliteMetaStore.open(file);
  open.push(store);
  return store;
}

const newTask = (taskId: string, extra: Partial<NewTask> = {}): NewTask => ({
  taskId,
  user: 'alice',
  kind: 'txt2img',
  model: 'sd15',
  params: { prompt: 'a cat', steps: 20 },
  ...extra,
});

const model = (name: string, extra: Partial<ModelRecord> = {}): ModelRecord => ({
  type: 'stableDiffusion',
  name,
  ossPath: `models/stableDiffusion/${name}`,
  etag: 'e1',
  status: 'loaded',
  registeredTime: '2024-01-01T00:00:00.000Z',
  lastModificationTime: '2024-01-01T00:00:00.000Z',
  ...extra,
});

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sdflow-meta-'));
  file = join(dir, 'nested', 'sdflow.db');
});

afterEach(async () => {
  vi.useRealTimers();
  for (const store of open.splice(0)) await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('opening', () => {
  it('creates the directory, uses WAL and records the schema version', async () => {
    openStore();
    const raw = new Database(file, { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(raw.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    const indexes = raw
      .prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks'")
      .all()
      .map((r) => r.name);
    expect(indexes).toEqual(
      expect.arrayContaining(['tasks_user_created', 'tasks_status_created', 'tasks_user_idempotency']),
    );
    raw.close();
  });

  it('keeps data across a reopen', async () => {
    const first = openStore();
    await first.insertTask(newTask('t1'));
    await first.setConfigValueOnce('k', 'v');
    await first.close();
    open.splice(0);
    const second = openStore();
    expect((await second.getTask('t1'))?.params).toEqual({ prompt: 'a cat', steps: 20 });
    expect(await second.getConfigValue('k')).toBe('v');
  });

  it('refuses a database from a newer build', async () => {
    openStore();
    const raw = new Database(file);
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    expect(() => SqliteMetaStore.open(file)).toThrow(/newer than this build/);
  });
});

describe('tasks', () => {
  it('inserts a new task as waiting, with no images and timestamps', async () => {
    const store = openStore();
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2024-05-01T10:00:00.000Z'));
    const inserted = await store.insertTask(newTask('t1', { retryOf: 't0', requestHash: 'h' }));
    const task = await store.getTask('t1');
    // What insertTask answers is the stored row.
    expect(inserted).toEqual(task);
    expect(task).toEqual<TaskRecord>({
      taskId: 't1',
      user: 'alice',
      kind: 'txt2img',
      model: 'sd15',
      status: 'waiting',
      params: { prompt: 'a cat', steps: 20 },
      images: [],
      retryOf: 't0',
      requestHash: 'h',
      createdAt: '2024-05-01T10:00:00.000Z',
      updatedAt: '2024-05-01T10:00:00.000Z',
    });
    expect(await store.getTask('missing')).toBeNull();
  });

  it('refuses a duplicate taskId, also from a second connection, and keeps the first row', async () => {
    const a = openStore();
    const b = openStore();
    expect(await a.insertTask(newTask('t1'))).not.toBeNull();
    expect(await a.insertTask(newTask('t1', { model: 'other' }))).toBeNull();
    expect(await b.insertTask(newTask('t1', { user: 'bob' }))).toBeNull();
    expect(await b.getTask('t1')).toMatchObject({ user: 'alice', model: 'sd15' });
  });

  it('keeps a taskId unique forever, also after it finished', async () => {
    const store = openStore();
    await store.insertTask(newTask('t1'));
    await store.finalizeTask('t1', { status: 'succeeded', images: [] });
    expect(await store.insertTask(newTask('t1'))).toBeNull();
    expect((await store.getTask('t1'))?.status).toBe('succeeded');
  });

  it('moves waiting to running once, setting startedAt', async () => {
    const store = openStore();
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2024-05-01T10:00:00.000Z'));
    await store.insertTask(newTask('t1'));
    vi.setSystemTime(new Date('2024-05-01T10:00:05.000Z'));
    await store.markTaskRunning('t1');
    vi.setSystemTime(new Date('2024-05-01T10:00:09.000Z'));
    await store.markTaskRunning('t1');
    expect(await store.getTask('t1')).toMatchObject({
      status: 'running',
      startedAt: '2024-05-01T10:00:05.000Z',
      updatedAt: '2024-05-01T10:00:05.000Z',
    });
    await store.markTaskRunning('missing');
    expect(await store.getTask('missing')).toBeNull();
  });

  it('writes the first final record and never overwrites it', async () => {
    const a = openStore();
    const b = openStore();
    await a.insertTask(newTask('t1'));
    await a.markTaskRunning('t1');
    const first = await a.finalizeTask('t1', {
      status: 'succeeded',
      images: ['images/alice/t1_1.png'],
      info: '{"seed":1}',
      parameters: { steps: 20 },
    });
    expect(first).toMatchObject({
      status: 'succeeded',
      images: ['images/alice/t1_1.png'],
      info: '{"seed":1}',
      parameters: { steps: 20 },
    });
    expect(first?.finishedAt).toBeDefined();
    expect(first?.startedAt).toBeDefined();

    // A retry of the same outcome, and a different late outcome from another process: both get the first record.
    expect(await a.finalizeTask('t1', { status: 'succeeded', images: ['images/alice/t1_1.png'] })).toEqual(first);
    expect(
      await b.finalizeTask('t1', { status: 'failed', images: [], message: 'boom', errorKind: 'internal' }),
    ).toEqual(first);

    await b.markTaskRunning('t1');
    expect(await a.getTask('t1')).toEqual(first);
  });

  it('finalizes a waiting task directly (cancelled while queued)', async () => {
    const store = openStore();
    await store.insertTask(newTask('t1'));
    const final = await store.finalizeTask('t1', { status: 'cancelled', images: [], message: 'cancelled by user' });
    expect(final).toMatchObject({ status: 'cancelled', message: 'cancelled by user', images: [] });
    expect(final?.startedAt).toBeUndefined();
    await store.markTaskRunning('t1');
    expect((await store.getTask('t1'))?.status).toBe('cancelled');
  });

  it('records the failure reason and kind', async () => {
    const store = openStore();
    await store.insertTask(newTask('t1'));
    const final = await store.finalizeTask('t1', {
      status: 'failed',
      images: [],
      message: 'SD rejected the input',
      errorKind: 'bad_input',
    });
    expect(final).toMatchObject({ status: 'failed', message: 'SD rejected the input', errorKind: 'bad_input' });
  });

  it('returns null when finalizing a task that does not exist, and creates nothing', async () => {
    const store = openStore();
    expect(await store.finalizeTask('nope', { status: 'failed', images: [] })).toBeNull();
    expect(await store.getTask('nope')).toBeNull();
  });

  it('refuses a non-final status as a final record', async () => {
    const store = openStore();
    await store.insertTask(newTask('t1'));
    await expect(store.finalizeTask('t1', { status: 'running' as any, images: [] })).rejects.toThrow(/final status/);
    expect((await store.getTask('t1'))?.status).toBe('waiting');
  });

  it('finds a task by the user and idempotency key', async () => {
    const store = openStore();
    await store.insertTask(newTask('t1', { idempotencyKey: 'k1', requestHash: 'h1' }));
    await store.insertTask(newTask('t2', { user: 'bob', idempotencyKey: 'k1' }));
    expect((await store.findTaskByIdempotencyKey('alice', 'k1'))?.taskId).toBe('t1');
    expect((await store.findTaskByIdempotencyKey('bob', 'k1'))?.taskId).toBe('t2');
    expect(await store.findTaskByIdempotencyKey('alice', 'k2')).toBeNull();
    expect(await store.findTaskByIdempotencyKey('carol', 'k1')).toBeNull();
  });

  it('refuses a second task with the same idempotency key of the same user', async () => {
    const store = openStore();
    expect(await store.insertTask(newTask('t1', { idempotencyKey: 'k1' }))).not.toBeNull();
    expect(await store.insertTask(newTask('t2', { idempotencyKey: 'k1' }))).toBeNull();
    expect(await store.getTask('t2')).toBeNull();
    expect((await store.findTaskByIdempotencyKey('alice', 'k1'))?.taskId).toBe('t1');
    // Tasks without a key never collide.
    expect(await store.insertTask(newTask('t3'))).not.toBeNull();
    expect(await store.insertTask(newTask('t4'))).not.toBeNull();
  });
});

describe('listing tasks', () => {
  const base = Date.parse('2024-01-01T00:00:00.000Z');

  /** Inserts `count` tasks one second apart: t000 is the oldest. */
  async function seed(store: SqliteMetaStore, count: number, extra: (i: number) => Partial<NewTask> = () => ({})) {
    vi.useFakeTimers({ toFake: ['Date'] });
    for (let i = 0; i < count; i++) {
      vi.setSystemTime(base + i * 1000);
      await store.insertTask(newTask(`t${String(i).padStart(3, '0')}`, extra(i)));
    }
    vi.useRealTimers();
  }

  it('pages newest first past the page size with a cursor, without duplicates', async () => {
    const store = openStore();
    await seed(store, 250);
    const pages: TaskRecord[][] = [];
    let cursor: string | undefined;
    do {
      const page = await store.listTasks({ limit: 100, cursor });
      pages.push(page.items);
      cursor = page.cursor;
    } while (cursor);
    expect(pages.map((p) => p.length)).toEqual([100, 100, 50]);
    const ids = pages.flat().map((t) => t.taskId);
    expect(new Set(ids).size).toBe(250);
    expect(ids[0]).toBe('t249');
    expect(ids[249]).toBe('t000');
    const created = pages.flat().map((t) => t.createdAt);
    expect(created).toEqual([...created].sort().reverse());
  });

  it('breaks ties in createdAt by taskId, so rows created in the same millisecond page correctly', async () => {
    const store = openStore();
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(base);
    for (let i = 0; i < 25; i++) await store.insertTask(newTask(`same${String(i).padStart(2, '0')}`));
    vi.useRealTimers();
    const ids: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.listTasks({ limit: 7, cursor });
      ids.push(...page.items.map((t) => t.taskId));
      cursor = page.cursor;
    } while (cursor);
    expect(ids).toHaveLength(25);
    expect(new Set(ids).size).toBe(25);
    expect(ids[0]).toBe('same24');
  });

  it('sees no rows twice when new tasks arrive between pages', async () => {
    const store = openStore();
    await seed(store, 30);
    const first = await store.listTasks({ limit: 10 });
    await store.insertTask(newTask('newer'));
    const rest = await store.listTasks({ limit: 100, cursor: first.cursor });
    expect(rest.items).toHaveLength(20);
    expect(rest.items.map((t) => t.taskId)).not.toContain('newer');
    expect(rest.cursor).toBeUndefined();
  });

  it('defaults to 100 rows and caps the limit at 1000', async () => {
    const store = openStore();
    await seed(store, 1005);
    const defaultPage = await store.listTasks({});
    expect(defaultPage.items).toHaveLength(100);
    expect(defaultPage.cursor).toBeDefined();
    const capped = await store.listTasks({ limit: 5000 });
    expect(capped.items).toHaveLength(1000);
    const rest = await store.listTasks({ limit: 5000, cursor: capped.cursor });
    expect(rest.items).toHaveLength(5);
    expect(rest.cursor).toBeUndefined();
    expect((await store.listTasks({ limit: 0 })).items).toHaveLength(1);
  });

  it('filters by user, status and createdBefore, together with paging', async () => {
    const store = openStore();
    await seed(store, 40, (i) => ({ user: i % 2 === 0 ? 'alice' : 'bob' }));
    for (let i = 0; i < 40; i += 4) await store.markTaskRunning(`t${String(i).padStart(3, '0')}`);
    await store.finalizeTask('t008', { status: 'succeeded', images: [] });

    const alice = await store.listTasks({ user: 'alice', limit: 1000 });
    expect(alice.items).toHaveLength(20);
    expect(alice.items.every((t) => t.user === 'alice')).toBe(true);

    const running = await store.listTasks({ user: 'alice', status: ['running'] });
    expect(running.items.map((t) => t.taskId)).toEqual([
      't036',
      't032',
      't028',
      't024',
      't020',
      't016',
      't012',
      't004',
      't000',
    ]);
    const open = await store.listTasks({ status: ['waiting', 'running'], limit: 1000 });
    expect(open.items).toHaveLength(39);
    expect((await store.listTasks({ status: [], limit: 1000 })).items).toHaveLength(40);

    const before = await store.listTasks({ createdBefore: new Date(base + 10_000).toISOString() });
    expect(before.items.map((t) => t.taskId)).toEqual([
      't009',
      't008',
      't007',
      't006',
      't005',
      't004',
      't003',
      't002',
      't001',
      't000',
    ]);
    // An instant in another notation compares as the same instant.
    const offset = await store.listTasks({ createdBefore: '2024-01-01T02:00:10+02:00' });
    expect(offset.items).toHaveLength(10);

    const bobPage1 = await store.listTasks({
      user: 'bob',
      createdBefore: new Date(base + 20_000).toISOString(),
      limit: 4,
    });
    const bobPage2 = await store.listTasks({
      user: 'bob',
      createdBefore: new Date(base + 20_000).toISOString(),
      limit: 4,
      cursor: bobPage1.cursor,
    });
    const bobPage3 = await store.listTasks({
      user: 'bob',
      createdBefore: new Date(base + 20_000).toISOString(),
      limit: 4,
      cursor: bobPage2.cursor,
    });
    expect([...bobPage1.items, ...bobPage2.items, ...bobPage3.items].map((t) => t.taskId)).toEqual([
      't019',
      't017',
      't015',
      't013',
      't011',
      't009',
      't007',
      't005',
      't003',
      't001',
    ]);
    expect(bobPage3.cursor).toBeUndefined();
  });

  it('rejects a cursor it did not issue', async () => {
    const store = openStore();
    await expect(store.listTasks({ cursor: 'not-a-cursor' })).rejects.toBeInstanceOf(InvalidCursorError);
    const forged = Buffer.from(JSON.stringify({ a: 1 })).toString('base64url');
    await expect(store.listTasks({ cursor: forged })).rejects.toBeInstanceOf(InvalidCursorError);
  });

  it('returns an empty page without a cursor when nothing matches', async () => {
    const store = openStore();
    expect(await store.listTasks({ user: 'nobody' })).toEqual({ items: [] });
  });
});

describe('models', () => {
  it('inserts conditionally, and a deleted model may be replaced', async () => {
    const a = openStore();
    const b = openStore();
    expect(await a.insertModel(model('sd15'))).toBe(true);
    expect(await b.insertModel(model('sd15', { etag: 'e2' }))).toBe(false);
    expect((await a.getModel('sd15'))?.etag).toBe('e1');

    await a.putModel(model('sd15', { status: 'deleted' }));
    expect(await b.insertModel(model('sd15', { etag: 'e3', status: 'registering', type: 'lora' }))).toBe(true);
    expect(await a.getModel('sd15')).toEqual(model('sd15', { etag: 'e3', status: 'registering', type: 'lora' }));
    expect(await a.insertModel(model('sd15'))).toBe(false);
  });

  it('upserts with put, including clearing the message', async () => {
    const store = openStore();
    await store.putModel(model('m', { status: 'failed', message: 'bad file' }));
    expect(await store.getModel('m')).toEqual(model('m', { status: 'failed', message: 'bad file' }));
    await store.putModel(model('m', { status: 'loaded', lastModificationTime: '2024-02-01T00:00:00.000Z' }));
    const updated = await store.getModel('m');
    expect(updated).toEqual(model('m', { status: 'loaded', lastModificationTime: '2024-02-01T00:00:00.000Z' }));
    expect(updated).not.toHaveProperty('message');
    expect(await store.getModel('missing')).toBeNull();
  });

  it('lists by name, filtered by type and status', async () => {
    const store = openStore();
    await store.putModel(model('b'));
    await store.putModel(model('a', { type: 'lora' }));
    await store.putModel(model('c', { status: 'deleted' }));
    expect((await store.listModels()).map((m) => m.name)).toEqual(['a', 'b', 'c']);
    expect((await store.listModels({ type: 'stableDiffusion' })).map((m) => m.name)).toEqual(['b', 'c']);
    expect((await store.listModels({ status: 'loaded' })).map((m) => m.name)).toEqual(['a', 'b']);
    expect((await store.listModels({ type: 'stableDiffusion', status: 'deleted' })).map((m) => m.name)).toEqual(['c']);
  });
});

describe('functions', () => {
  it('puts, gets, lists and deletes', async () => {
    const store = openStore();
    const fn = {
      functionName: 'sd_b',
      model: 'sd15',
      resources: { gpu: 'T4', env: { A: '1' } },
      createdAt: '2024-01-01T00:00:00.000Z',
      updatedAt: '2024-01-01T00:00:00.000Z',
    };
    await store.putFunction(fn);
    await store.putFunction({ ...fn, functionName: 'sd_a', model: 'xl' });
    expect(await store.getFunction('sd_b')).toEqual(fn);
    expect((await store.listFunctions()).map((f) => f.functionName)).toEqual(['sd_a', 'sd_b']);

    // An update changes the spec but keeps when the function was first created.
    await store.putFunction({
      ...fn,
      resources: { gpu: 'A10' },
      createdAt: '2024-03-01T00:00:00.000Z',
      updatedAt: '2024-03-01T00:00:00.000Z',
    });
    expect(await store.getFunction('sd_b')).toEqual({
      ...fn,
      resources: { gpu: 'A10' },
      updatedAt: '2024-03-01T00:00:00.000Z',
    });

    await store.deleteFunction('sd_b');
    await store.deleteFunction('sd_b');
    expect(await store.getFunction('sd_b')).toBeNull();
    expect((await store.listFunctions()).map((f) => f.functionName)).toEqual(['sd_a']);
  });
});

describe('config', () => {
  it('sets a value once: concurrent first writers on two handles agree', async () => {
    const a = openStore();
    const b = openStore();
    expect(await a.getConfigValue('secret')).toBeNull();
    const [first, second] = await Promise.all([
      a.setConfigValueOnce('secret', 'A'),
      b.setConfigValueOnce('secret', 'B'),
    ]);
    expect(second).toBe(first);
    expect(await b.setConfigValueOnce('secret', 'C')).toBe(first);
    expect(await a.getConfigValue('secret')).toBe(first);
    expect(await b.getConfigValue('secret')).toBe(first);
  });
});

describe('rate windows', () => {
  it('counts hits per subject in a window, restarts in the next, and shares counts across handles', async () => {
    const a = openStore();
    const b = openStore();
    expect(await a.hitRateWindow('key:1', 100)).toBe(1);
    expect(await b.hitRateWindow('key:1', 100)).toBe(2);
    expect(await a.hitRateWindow('key:2', 100)).toBe(1);
    expect(await a.hitRateWindow('key:1', 101)).toBe(1);
    expect(await b.hitRateWindow('key:1', 101)).toBe(2);
    const hits = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).hitRateWindow('key:3', 7)));
    expect(hits.sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  });
});

describe('leases', () => {
  it('gives a resource to one holder of many, contending on two handles; the holder may take it again', async () => {
    const a = openStore();
    const b = openStore();
    const holders = Array.from({ length: 10 }, (_, i) => `h${i}`);
    const won = await Promise.all(
      holders.map((holder, i) => (i % 2 ? a : b).tryAcquireLease('static:http://gpu1', holder, 30_000)),
    );
    expect(won.filter(Boolean)).toHaveLength(1);
    const winner = holders[won.indexOf(true)];
    expect(await a.tryAcquireLease('static:http://gpu1', winner, 30_000)).toBe(true);
    expect(await b.tryAcquireLease('static:http://gpu1', `${winner}x`, 30_000)).toBe(false);
    // Another resource is another lease.
    expect(await b.tryAcquireLease('static:http://gpu2', `${winner}x`, 30_000)).toBe(true);
  });

  it('lets another holder take an expired lease, after which the old holder can neither renew nor release it', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_700_000_000_000);
    const a = openStore();
    const b = openStore();
    expect(await a.tryAcquireLease('r', 'A', 1000)).toBe(true);
    vi.setSystemTime(1_700_000_000_999);
    expect(await b.tryAcquireLease('r', 'B', 1000)).toBe(false);
    vi.setSystemTime(1_700_000_001_000);
    expect(await b.tryAcquireLease('r', 'B', 1000)).toBe(true);
    expect(await a.renewLease('r', 'A', 1000)).toBe(false);
    await a.releaseLease('r', 'A');
    expect(await a.tryAcquireLease('r', 'C', 1000)).toBe(false);
    expect(await b.renewLease('r', 'B', 1000)).toBe(true);
  });

  it('extends a lease by renewing it, and by the holder taking it again', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_700_000_000_000);
    const a = openStore();
    const b = openStore();
    expect(await a.tryAcquireLease('r', 'A', 1000)).toBe(true);
    vi.setSystemTime(1_700_000_000_800);
    expect(await a.renewLease('r', 'A', 1000)).toBe(true);
    vi.setSystemTime(1_700_000_001_500);
    expect(await b.tryAcquireLease('r', 'B', 1000)).toBe(false);
    expect(await a.tryAcquireLease('r', 'A', 1000)).toBe(true);
    vi.setSystemTime(1_700_000_002_400);
    expect(await b.tryAcquireLease('r', 'B', 1000)).toBe(false);
    vi.setSystemTime(1_700_000_002_500);
    expect(await b.tryAcquireLease('r', 'B', 1000)).toBe(true);
    // Nothing to renew: a resource nobody took.
    expect(await a.renewLease('other', 'A', 1000)).toBe(false);
  });

  it("frees a resource only on its holder's release, idempotently", async () => {
    const a = openStore();
    const b = openStore();
    expect(await a.tryAcquireLease('r', 'A', 30_000)).toBe(true);
    await b.releaseLease('r', 'B');
    expect(await b.tryAcquireLease('r', 'B', 30_000)).toBe(false);
    await a.releaseLease('r', 'A');
    await a.releaseLease('r', 'A');
    await b.releaseLease('never-taken', 'B');
    expect(await a.renewLease('r', 'A', 30_000)).toBe(false);
    expect(await b.tryAcquireLease('r', 'B', 30_000)).toBe(true);
    // A late release by the old holder leaves the new holder's lease alone.
    await a.releaseLease('r', 'A');
    expect(await a.tryAcquireLease('r', 'A', 30_000)).toBe(false);
  });

  it('are added to a database of the previous schema version by its migration, keeping its rows', async () => {
    const first = openStore();
    await first.insertTask(newTask('t1'));
    await first.close();
    open.splice(0);
    const raw = new Database(file);
    raw.exec(UNDO_EVENTS_MIGRATION);
    raw.exec('DROP TABLE leases');
    // Leases came with the fourth schema version.
    raw.pragma('user_version = 3');
    raw.close();
    const migrated = openStore();
    expect(await migrated.getTask('t1')).not.toBeNull();
    expect(await migrated.tryAcquireLease('r', 'A', 30_000)).toBe(true);
  });
});

/** What the migration of the cost column adds, taken away again: a database of the version before it. */
/** What the migration of the scheduling column adds, taken away again. */
const UNDO_SCHEDULING_MIGRATION = 'ALTER TABLE tasks DROP COLUMN scheduling';

const UNDO_COST_MIGRATION = `${UNDO_SCHEDULING_MIGRATION}; ALTER TABLE tasks DROP COLUMN cost`;

/** What the migrations from status events and webhooks on add, taken away again: a database of the version before. */
const UNDO_EVENTS_MIGRATION = `${UNDO_COST_MIGRATION};
  DROP TABLE task_events; DROP TABLE webhook_attempts; ALTER TABLE tasks DROP COLUMN webhook`;

describe('status events', () => {
  it('number 1, 2, … per task, in the order appended, and list after an id', async () => {
    const store = openStore();
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2024-05-01T10:00:00.000Z'));
    expect(await store.appendStatusEvent('t1', { status: 'waiting', phase: 'queued' })).toEqual({
      id: 1,
      status: 'waiting',
      phase: 'queued',
      at: '2024-05-01T10:00:00.000Z',
    });
    await store.appendStatusEvent('t2', { status: 'waiting', phase: 'queued' });
    await store.appendStatusEvent('t1', { status: 'running', phase: 'starting', coldStart: true });
    await store.appendStatusEvent('t1', { status: 'running', phase: 'sampling', coldStart: false });
    expect((await store.listStatusEvents('t1')).map((e) => [e.id, e.phase, e.coldStart])).toEqual([
      [1, 'queued', undefined],
      [2, 'starting', true],
      [3, 'sampling', false],
    ]);
    expect((await store.listStatusEvents('t1', 2)).map((e) => e.id)).toEqual([3]);
    expect(await store.listStatusEvents('t1', 3)).toEqual([]);
    expect((await store.listStatusEvents('t2')).map((e) => e.id)).toEqual([1]);
    expect(await store.listStatusEvents('none')).toEqual([]);
  });

  it('get distinct ids when two handles append to one task at once', async () => {
    const [a, b] = [openStore(), openStore()];
    const appended = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 ? a : b).appendStatusEvent('t1', { status: 'running', phase: 'sampling' }),
      ),
    );
    expect(appended.map((e) => e.id).sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  });
});

describe('webhooks', () => {
  it('keeps a task’s webhook in its row', async () => {
    const store = openStore();
    const webhook = { url: 'https://hooks.example.com/x', events: ['start' as const, 'completed' as const] };
    expect((await store.insertTask(newTask('t1', { webhook })))?.webhook).toEqual(webhook);
    expect((await store.getTask('t1'))?.webhook).toEqual(webhook);
    expect((await store.finalizeTask('t1', { status: 'succeeded', images: [] }))?.webhook).toEqual(webhook);
    await store.insertTask(newTask('t2'));
    expect((await store.getTask('t2'))?.webhook).toBeUndefined();
  });

  it('logs attempts per task, oldest first, with a status code or an error', async () => {
    const store = openStore();
    const at = '2024-05-01T10:00:00.000Z';
    await store.recordWebhookAttempt('t1', {
      event: 'completed',
      webhookId: 'msg_1',
      at,
      error: 'ECONNREFUSED',
      durationMs: 3.4,
    });
    await store.recordWebhookAttempt('t2', { event: 'start', webhookId: 'msg_2', at, statusCode: 204, durationMs: 1 });
    await store.recordWebhookAttempt('t1', {
      event: 'completed',
      webhookId: 'msg_1',
      at,
      statusCode: 200,
      durationMs: 12,
    });
    expect(await store.listWebhookAttempts('t1')).toEqual([
      { event: 'completed', webhookId: 'msg_1', at, error: 'ECONNREFUSED', durationMs: 3 },
      { event: 'completed', webhookId: 'msg_1', at, statusCode: 200, durationMs: 12 },
    ]);
    expect(await store.listWebhookAttempts('none')).toEqual([]);
  });

  it('are added to a database of the previous schema version by its migration, keeping its rows', async () => {
    const first = openStore();
    await first.insertTask(newTask('t1'));
    await first.close();
    open.splice(0);
    const raw = new Database(file);
    raw.exec(UNDO_EVENTS_MIGRATION);
    raw.pragma(`user_version = ${SCHEMA_VERSION - 3}`);
    raw.close();
    const migrated = openStore();
    expect((await migrated.getTask('t1'))?.webhook).toBeUndefined();
    expect((await migrated.appendStatusEvent('t1', { status: 'waiting', phase: 'queued' })).id).toBe(1);
    expect(await migrated.listWebhookAttempts('t1')).toEqual([]);
  });
});

describe('deleted tasks, counts, timings and cost', () => {
  const timings = { startMs: 1200, samplingMs: 3400, coldStart: true, checkpointLoad: false };
  const cost = {
    queueS: 0.5,
    coldStartS: 3.2,
    gpuS: 1.9,
    idleS: 7,
    billedGpuS: 7.822,
    gpuType: 'default',
    images: 1,
  };

  it('moves a final task to deleted with no images, once; an open task stays open', async () => {
    const store = openStore();
    await store.insertTask(newTask('done'));
    await store.finalizeTask('done', {
      status: 'succeeded',
      images: ['images/alice/done_1.png'],
      info: '{}',
      timings,
      cost,
    });
    expect((await store.getTask('done'))?.cost).toEqual(cost);
    const deleted = await store.markTaskDeleted('done');
    expect(deleted).toMatchObject({ status: 'deleted', images: [], info: '{}', timings, cost });
    expect(await store.markTaskDeleted('done')).toEqual(deleted);
    await store.insertTask(newTask('open'));
    expect((await store.markTaskDeleted('open'))?.status).toBe('waiting');
    expect(await store.markTaskDeleted('missing')).toBeNull();
    expect((await store.listTasks({ status: ['deleted'] })).items.map((t) => t.taskId)).toEqual(['done']);
  });

  it('counts task rows by status and checkpoint', async () => {
    const store = openStore();
    await store.insertTask(newTask('a'));
    await store.insertTask(newTask('b'));
    await store.insertTask(newTask('c', { model: 'sdxl' }));
    await store.finalizeTask('b', { status: 'failed', images: [], message: 'boom' });
    const counts = await store.countTasks();
    expect(counts).toHaveLength(3);
    expect(counts).toEqual(
      expect.arrayContaining([
        { status: 'waiting', model: 'sd15', count: 1 },
        { status: 'failed', model: 'sd15', count: 1 },
        { status: 'waiting', model: 'sdxl', count: 1 },
      ]),
    );
  });

  it('are added to a database of the version before their migration, keeping its rows', async () => {
    const first = openStore();
    await first.insertTask(newTask('old'));
    await first.finalizeTask('old', { status: 'succeeded', images: ['images/alice/old_1.png'] });
    await first.close();
    open.splice(0);
    const raw = new Database(file);
    raw.exec(UNDO_EVENTS_MIGRATION);
    // The fourth version's tasks table: no timings column, no deleted status.
    raw.exec('ALTER TABLE tasks DROP COLUMN timings');
    raw.pragma(`user_version = ${SCHEMA_VERSION - 4}`);
    raw.close();
    const migrated = openStore();
    expect(await migrated.getTask('old')).toMatchObject({ status: 'succeeded', images: ['images/alice/old_1.png'] });
    expect((await migrated.markTaskDeleted('old'))?.status).toBe('deleted');
  });

  it('cost is added to a database of the version before it, whose tasks have none', async () => {
    const first = openStore();
    await first.insertTask(newTask('old'));
    await first.finalizeTask('old', { status: 'succeeded', images: ['images/alice/old_1.png'], timings });
    await first.insertTask(newTask('new'));
    await first.close();
    open.splice(0);
    const raw = new Database(file);
    raw.exec(UNDO_COST_MIGRATION);
    raw.pragma(`user_version = ${SCHEMA_VERSION - 2}`);
    raw.close();
    const migrated = openStore();
    const old = await migrated.getTask('old');
    expect(old).toMatchObject({ status: 'succeeded', timings });
    expect(old?.cost).toBeUndefined();
    await migrated.finalizeTask('new', { status: 'succeeded', images: [], cost });
    expect((await migrated.getTask('new'))?.cost).toEqual(cost);
  });

  it('scheduling is added to a database of the version before it, whose tasks have none', async () => {
    const first = openStore();
    await first.insertTask(newTask('old'));
    await first.close();
    open.splice(0);
    const raw = new Database(file);
    raw.exec(UNDO_SCHEDULING_MIGRATION);
    raw.pragma(`user_version = ${SCHEMA_VERSION - 1}`);
    raw.close();
    const migrated = openStore();
    expect((await migrated.getTask('old'))?.scheduling).toBeUndefined();
    const scheduling = { owner: { user: 'alice', lane: 'low' as const, maxSlots: 2 }, deadlineAt: 1_700_000_000_000 };
    await migrated.insertTask(newTask('new', { scheduling }));
    expect((await migrated.getTask('new'))?.scheduling).toEqual(scheduling);
  });
});
