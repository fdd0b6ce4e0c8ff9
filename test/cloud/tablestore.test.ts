import { createHash } from 'node:crypto';
import TableStore from 'tablestore';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { createMetaStore } from '../../src/platform/index.js';
import { InvalidCursorError } from '../../src/platform/meta-store/cursor.js';
import { classify, decodeErrorBody } from '../../src/platform/meta-store/tablestore/client.js';
import {
  attributeColumns,
  columnsOf,
  finalUpdate,
  functionColumns,
  functionFromColumns,
  MAX_COLUMN_BYTES,
  modelColumns,
  modelFromColumns,
  newTaskColumns,
  taskFromColumns,
  updateOf,
  userOptionsFromColumns,
  userOptionsKey,
  writeIdOf,
} from '../../src/platform/meta-store/tablestore/rows.js';
import { MetaStoreError, TablestoreMetaStore } from '../../src/platform/meta-store/tablestore/store.js';
import { scopeKey, taskScopes } from '../../src/platform/meta-store/tablestore/task-index.js';
import type { ModelRecord, NewTask, TaskRecord } from '../../src/records.js';
import { FAULTS, signature, stringToSign, TablestoreFake } from './fakes/tablestore-fake.js';

// The Tablestore meta store, with the official `tablestore` SDK, against a local Tablestore fake that decodes the
// SDK's protobuf and PlainBuffer requests, checks every signature with its own implementation of the documented
// algorithm, and keeps rows with the service's condition semantics. The behaviours are those of
// test/unit/meta-store.test.ts (the SQLite store), plus what only a remote store has: table creation, paging of
// GetRange, retries and errors.

type Env = Record<string, string>;

const PREFIX = 'sdflow_test_';
/** Short retry delays, so retried tests stay quick; timeouts come from config (1 s, its minimum). */
const TUNING = { retryBaseMs: 5, retryMaxMs: 40, tableReadyTimeoutMs: 10_000 };

let fake: TablestoreFake;
const open: TablestoreMetaStore[] = [];

function tablestoreEnv(env: Env = {}): Env {
  return {
    SDFLOW_META_STORE: 'tablestore',
    SDFLOW_TABLESTORE_ENDPOINT: fake.endpoint,
    SDFLOW_TABLESTORE_INSTANCE: fake.instance,
    ALIBABA_CLOUD_ACCESS_KEY_ID: fake.accessKeyId,
    ALIBABA_CLOUD_ACCESS_KEY_SECRET: fake.accessKeySecret,
    SDFLOW_TABLESTORE_TABLE_PREFIX: PREFIX,
    SDFLOW_TABLESTORE_TIMEOUT_S: '1',
    SDFLOW_TABLESTORE_MAX_ATTEMPTS: '4',
    ...env,
  };
}

function openStore(env: Env = {}): TablestoreMetaStore {
  const store = new TablestoreMetaStore(loadConfig(tablestoreEnv(env)).tablestore, TUNING);
  open.push(store);
  return store;
}

async function rejection(promise: Promise<unknown>): Promise<MetaStoreError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MetaStoreError);
  return err as MetaStoreError;
}

const table = (name: string) => `${PREFIX}${name}`;

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

beforeEach(async () => {
  // Seven rows a GetRange page, so every listing of more than a handful of rows has to follow next_start_primary_key.
  fake = await TablestoreFake.start({ pageLimit: 7 });
});

afterEach(async () => {
  vi.useRealTimers();
  for (const store of open.splice(0)) await store.close();
  await fake.close();
});

describe('configuration', () => {
  it('names every setting that is missing', async () => {
    const attempt = () => new TablestoreMetaStore(loadConfig({ SDFLOW_META_STORE: 'tablestore' }).tablestore);
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(
      'needs SDFLOW_TABLESTORE_ENDPOINT, SDFLOW_TABLESTORE_INSTANCE, ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET',
    );
    const { ALIBABA_CLOUD_ACCESS_KEY_SECRET: _secret, ...withoutSecret } = tablestoreEnv();
    await expect(createMetaStore(loadConfig(withoutSecret))).rejects.toThrow(/needs ALIBABA_CLOUD_ACCESS_KEY_SECRET$/);
  });

  it('refuses an endpoint that is not an http(s) URL', () => {
    expect(() => openStore({ SDFLOW_TABLESTORE_ENDPOINT: 'myinstance.cn-hangzhou.ots.aliyuncs.com' })).toThrow(
      /SDFLOW_TABLESTORE_ENDPOINT must be an http\(s\) URL/,
    );
  });

  it('signs with the STS token when one is configured', async () => {
    await fake.close();
    fake = await TablestoreFake.start({ securityToken: 'sts-token-1' });
    const withToken = openStore({ ALIBABA_CLOUD_SECURITY_TOKEN: 'sts-token-1' });
    expect(await withToken.getTask('t1')).toBeNull();
    const without = openStore();
    expect((await rejection(without.getTask('t1'))).code).toBe('OTSAuthFailed');
  });

  it('is what the factory builds for SDFLOW_META_STORE=tablestore, and sends nothing until first used', async () => {
    const store = await createMetaStore(loadConfig(tablestoreEnv()));
    try {
      expect(store).toBeInstanceOf(TablestoreMetaStore);
      expect(fake.requests).toEqual([]);
      await store.insertTask(newTask('t1'));
      expect((await store.getTask('t1'))?.status).toBe('waiting');
    } finally {
      await store.close();
    }
  });
});

describe('tables', () => {
  const ALL = [
    'config',
    'functions',
    'idempotency',
    'leases',
    'models',
    'rate_windows',
    'task_events',
    'task_index',
    'tasks',
    'user_options',
    'webhook_attempts',
  ];

  it('are created on first use with the configured prefix, once per process, and awaited until active', async () => {
    const store = openStore();
    expect(fake.requests).toEqual([]);
    expect(await store.getTask('nope')).toBeNull();
    expect(fake.tableNames()).toEqual(ALL.map(table));
    expect(fake.recorded('ListTable')).toHaveLength(1);
    expect(
      fake
        .recorded('CreateTable')
        .map((r) => r.tables[0])
        .sort(),
    ).toEqual(ALL.map(table));
    // The fake reports a new table LOADING once: each was described until it answered ACTIVE, and no data
    // operation ever met a table that was not ready.
    for (const name of ALL) expect(fake.recorded('DescribeTable', table(name))).toHaveLength(2);
    expect(fake.requests.filter((r) => r.errorCode === 'OTSTableNotReady')).toEqual([]);

    await store.insertTask(newTask('t1'));
    await store.listModels();
    expect(fake.recorded('ListTable')).toHaveLength(1);
    expect(fake.recorded('CreateTable')).toHaveLength(ALL.length);

    // Another process finds them and creates nothing.
    const other = openStore();
    expect((await other.getTask('t1'))?.taskId).toBe('t1');
    expect(fake.recorded('CreateTable')).toHaveLength(ALL.length);
  });

  it('carry the deployment id by default, so deployments sharing an instance never collide', async () => {
    const { SDFLOW_TABLESTORE_TABLE_PREFIX: _prefix, ...env } = tablestoreEnv();
    const blue = new TablestoreMetaStore(loadConfig({ ...env, SDFLOW_DEPLOYMENT: 'blue-1' }).tablestore, TUNING);
    const green = new TablestoreMetaStore(loadConfig({ ...env, SDFLOW_DEPLOYMENT: 'green' }).tablestore, TUNING);
    open.push(blue, green);
    expect(await blue.insertTask(newTask('t1'))).not.toBeNull();
    expect(await green.getTask('t1')).toBeNull();
    expect(fake.tableNames()).toEqual(
      [...ALL.map((n) => `sdflow_blue_1_${n}`), ...ALL.map((n) => `sdflow_green_${n}`)].sort(),
    );
  });

  it("of two prefixes on one instance do not see each other's rows", async () => {
    const a = openStore({ SDFLOW_TABLESTORE_TABLE_PREFIX: 'a_' });
    const b = openStore({ SDFLOW_TABLESTORE_TABLE_PREFIX: 'b_' });
    expect(await a.insertTask(newTask('t1'))).not.toBeNull();
    await a.putModel(model('sd15'));
    await a.setConfigValueOnce('secret', 'A');
    expect(await b.getTask('t1')).toBeNull();
    expect(await b.insertTask(newTask('t1', { user: 'bob' }))).not.toBeNull();
    expect((await a.getTask('t1'))?.user).toBe('alice');
    expect(await b.listModels()).toEqual([]);
    expect((await b.listTasks({})).items.map((t) => t.user)).toEqual(['bob']);
    expect(await b.setConfigValueOnce('secret', 'B')).toBe('B');
  });

  it('take "already exists" as success when another replica, or an earlier attempt, created one first', async () => {
    // The first CreateTable of tasks is carried out but its response is lost: the retry finds the table there.
    fake.inject(FAULTS.drop, { operation: 'CreateTable', table: table('tasks') });
    const a = openStore();
    const b = openStore();
    const [ra, rb] = await Promise.all([a.insertTask(newTask('t1')), b.insertTask(newTask('t2'))]);
    expect([ra?.taskId, rb?.taskId]).toEqual(['t1', 't2']);
    const creates = fake.recorded('CreateTable', table('tasks'));
    expect(creates.length).toBeGreaterThanOrEqual(2);
    expect(creates.filter((r) => r.status === 200)).toHaveLength(0);
    expect(creates.some((r) => r.errorCode === 'OTSObjectAlreadyExist')).toBe(true);
    expect(fake.tableNames()).toEqual(ALL.map(table));
  });

  it('refuses a table of the same name that has another primary key, naming it', async () => {
    const sdk = new TableStore.Client({
      accessKeyId: fake.accessKeyId,
      secretAccessKey: fake.accessKeySecret,
      endpoint: fake.endpoint,
      instancename: fake.instance,
    });
    await new Promise<void>((resolve, reject) =>
      sdk.createTable(
        {
          tableMeta: { tableName: 'clash_tasks', primaryKey: [{ name: 'id', type: 'STRING' }] },
          reservedThroughput: { capacityUnit: { read: 0, write: 0 } },
          tableOptions: { timeToLive: -1, maxVersions: 1 },
        },
        (err) => (err ? reject(err) : resolve()),
      ),
    );
    const store = openStore({ SDFLOW_TABLESTORE_TABLE_PREFIX: 'clash_' });
    await expect(store.getTask('t1')).rejects.toThrow(
      'Tablestore table clash_tasks exists with primary key (id:STRING), not (taskId:STRING)',
    );
  });

  it('are set up again on the next call when the first setup failed', async () => {
    fake.inject(FAULTS.authFailed, { operation: 'ListTable' });
    const store = openStore();
    const err = await rejection(store.getTask('t1'));
    expect(err.operation).toBe('ListTable');
    expect(await store.getTask('t1')).toBeNull();
    expect(fake.recorded('ListTable')).toHaveLength(2);
  });
});

describe('tasks', () => {
  it('inserts a new task as waiting, with no images and timestamps, by a conditional PutRow', async () => {
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
    expect(fake.recorded('PutRow', table('tasks'))).toMatchObject([{ rowExistence: 'EXPECT_NOT_EXIST', status: 200 }]);
  });

  it('refuses a duplicate taskId, also from a second store, and keeps the first row', async () => {
    const a = openStore();
    const b = openStore();
    expect(await a.insertTask(newTask('t1'))).not.toBeNull();
    expect(await a.insertTask(newTask('t1', { model: 'other' }))).toBeNull();
    expect(await b.insertTask(newTask('t1', { user: 'bob' }))).toBeNull();
    expect(await b.getTask('t1')).toMatchObject({ user: 'alice', model: 'sd15' });
    // The losers' listing pointers were taken back: bob has no tasks, alice one.
    expect((await a.listTasks({ user: 'bob' })).items).toEqual([]);
    expect((await a.listTasks({})).items.map((t) => t.taskId)).toEqual(['t1']);
    expect(fake.rows(table('task_index')).filter((r) => r.taskId === 't1')).toHaveLength(4);
  });

  it('keeps a taskId unique forever, also after it finished', async () => {
    const store = openStore();
    await store.insertTask(newTask('t1'));
    await store.finalizeTask('t1', { status: 'succeeded', images: [] });
    expect(await store.insertTask(newTask('t1'))).toBeNull();
    expect((await store.getTask('t1'))?.status).toBe('succeeded');
  });

  it('moves waiting to running once, setting startedAt, with a conditional UpdateRow', async () => {
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
    expect(fake.recorded('UpdateRow', table('tasks'))).toMatchObject([
      { rowExistence: 'EXPECT_EXIST', columnCondition: 'status == "waiting"', status: 200 },
    ]);
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
    expect(fake.recorded('UpdateRow', table('tasks')).map((r) => [r.rowExistence, r.columnCondition])).toEqual([
      ['EXPECT_EXIST', 'status == "waiting"'],
      ['EXPECT_EXIST', 'status == "waiting" OR status == "running"'],
    ]);
  });

  it('refuses, at the service, a final record over another final record', async () => {
    // Two finalizers read the task open at the same time; the service's condition lets only the first write.
    const a = openStore();
    const b = openStore();
    await a.insertTask(newTask('t1'));
    fake.inject({ kind: 'delay', ms: 300 }, { count: 2, operation: 'UpdateRow', table: table('tasks') });
    const [ra, rb] = await Promise.all([
      a.finalizeTask('t1', { status: 'succeeded', images: ['images/alice/t1_1.png'] }),
      b.finalizeTask('t1', { status: 'cancelled', images: [], message: 'cancelled by user' }),
    ]);
    expect(ra).toEqual(rb);
    const updates = fake.recorded('UpdateRow', table('tasks'));
    expect(updates.filter((r) => r.status === 200)).toHaveLength(1);
    expect(updates.filter((r) => r.errorCode === 'OTSConditionCheckFail')).toHaveLength(1);
    // The loser's status pointer went again: the task is listed once, under its one status.
    expect((await a.listTasks({ status: ['succeeded', 'cancelled'] })).items).toHaveLength(1);
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
    expect(fake.rows(table('tasks'))).toEqual([]);
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
    expect(fake.recorded('PutRow', table('idempotency')).map((r) => [r.rowExistence, r.status])).toEqual([
      ['EXPECT_NOT_EXIST', 200],
      ['EXPECT_NOT_EXIST', 403],
    ]);
    expect((await store.listTasks({})).items.map((t) => t.taskId)).not.toContain('t2');
  });

  it('gives an idempotency key back when its task row could not be written', async () => {
    const store = openStore();
    await store.getTask('warm-up');
    fake.inject(FAULTS.authFailed, { operation: 'PutRow', table: table('tasks') });
    await rejection(store.insertTask(newTask('t1', { idempotencyKey: 'k1' })));
    expect(fake.rows(table('idempotency'))).toEqual([]);
    expect(await store.insertTask(newTask('t2', { idempotencyKey: 'k1' }))).not.toBeNull();
    expect((await store.findTaskByIdempotencyKey('alice', 'k1'))?.taskId).toBe('t2');
  });

  it('takes over an idempotency key whose insert gave up with its outcome unknown, once the claim is stale', async () => {
    const store = openStore({ SDFLOW_TABLESTORE_MAX_ATTEMPTS: '1' });
    await store.getTask('warm-up');
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2024-05-01T10:00:00.000Z'));
    // The task row's write times out: it may have happened, so the key stays claimed.
    fake.inject(FAULTS.hang, { operation: 'PutRow', table: table('tasks') });
    expect((await rejection(store.insertTask(newTask('t1', { idempotencyKey: 'k1' })))).mayHaveApplied).toBe(true);
    expect(fake.rows(table('idempotency'))).toMatchObject([{ idempotencyKey: 'k1', taskId: 't1' }]);
    // While the claim may still belong to a live insert, the key is not free.
    expect(await store.insertTask(newTask('t2', { idempotencyKey: 'k1' }))).toBeNull();
    // Long after every attempt of that insert must have ended, the claim is taken over.
    vi.setSystemTime(new Date('2024-05-01T11:00:00.000Z'));
    expect(await store.insertTask(newTask('t3', { idempotencyKey: 'k1' }))).not.toBeNull();
    expect((await store.findTaskByIdempotencyKey('alice', 'k1'))?.taskId).toBe('t3');
  });
});

describe('deleted tasks, counts, timings and cost', () => {
  const timings = { startMs: 1200, samplingMs: 3400, coldStart: false, checkpointLoad: true };
  const cost = { queueS: 0.5, coldStartS: 0, gpuS: 1.9, idleS: 7, billedGpuS: 4.622, gpuType: 'A10', images: 1 };

  it('moves a final task to deleted with no images, once, and lists it under deleted only', async () => {
    const store = openStore();
    await store.insertTask(newTask('done'));
    await store.finalizeTask('done', {
      status: 'succeeded',
      images: ['images/alice/done_1.png'],
      info: '{}',
      timings,
      cost,
    });
    expect(await store.getTask('done')).toMatchObject({ timings, cost });
    const deleted = await store.markTaskDeleted('done');
    expect(deleted).toMatchObject({ status: 'deleted', images: [], info: '{}', timings, cost });
    expect(await store.markTaskDeleted('done')).toEqual(deleted);
    await store.insertTask(newTask('open'));
    expect((await store.markTaskDeleted('open'))?.status).toBe('waiting');
    expect(await store.markTaskDeleted('missing')).toBeNull();
    const ids = async (status?: 'deleted' | 'succeeded') =>
      (await store.listTasks(status ? { status: [status], user: 'alice' } : {})).items.map((t) => t.taskId);
    expect(await ids('deleted')).toEqual(['done']);
    expect(await ids('succeeded')).toEqual([]);
    expect(await ids()).toEqual(['open', 'done']);
  });

  it('counts task rows by status and checkpoint, past a GetRange page', async () => {
    const store = openStore();
    for (let i = 0; i < 9; i++) await store.insertTask(newTask(`a${i}`));
    await store.insertTask(newTask('x', { model: 'sdxl' }));
    await store.finalizeTask('a0', { status: 'failed', images: [] });
    const counts = await store.countTasks();
    expect(counts).toHaveLength(3);
    expect(counts).toEqual(
      expect.arrayContaining([
        { status: 'waiting', model: 'sd15', count: 8 },
        { status: 'failed', model: 'sd15', count: 1 },
        { status: 'waiting', model: 'sdxl', count: 1 },
      ]),
    );
  });
});

describe('listing tasks', () => {
  const base = Date.parse('2024-01-01T00:00:00.000Z');

  /** Inserts `count` tasks one second apart: t000 is the oldest. */
  async function seed(store: TablestoreMetaStore, count: number, extra: (i: number) => Partial<NewTask> = () => ({})) {
    vi.useFakeTimers({ toFake: ['Date'] });
    for (let i = 0; i < count; i++) {
      vi.setSystemTime(base + i * 1000);
      await store.insertTask(newTask(`t${String(i).padStart(3, '0')}`, extra(i)));
    }
    vi.useRealTimers();
  }

  it('pages newest first past the page size with a cursor, without duplicates, following GetRange pages', async () => {
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
    // The service answered at most 7 rows a GetRange: the index was read through next_start_primary_key.
    expect(fake.recorded('GetRange', table('task_index')).length).toBeGreaterThanOrEqual(Math.ceil(250 / 7));
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
    fake.pageLimit = 5000;
    await seed(store, 1005);
    fake.pageLimit = 97;
    const defaultPage = await store.listTasks({});
    expect(defaultPage.items).toHaveLength(100);
    expect(defaultPage.cursor).toBeDefined();
    const capped = await store.listTasks({ limit: 5000 });
    expect(capped.items).toHaveLength(1000);
    const rest = await store.listTasks({ limit: 5000, cursor: capped.cursor });
    expect(rest.items).toHaveLength(5);
    expect(rest.cursor).toBeUndefined();
    expect((await store.listTasks({ limit: 0 })).items).toHaveLength(1);
  }, 60_000);

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

  it('pages a filter on two statuses, merging their scopes newest first', async () => {
    const store = openStore();
    await seed(store, 30);
    for (let i = 0; i < 30; i += 3) await store.markTaskRunning(`t${String(i).padStart(3, '0')}`);
    for (let i = 1; i < 30; i += 3)
      await store.finalizeTask(`t${String(i).padStart(3, '0')}`, { status: 'failed', images: [] });
    const ids: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.listTasks({ status: ['running', 'waiting'], limit: 4, cursor });
      ids.push(...page.items.map((t) => t.taskId));
      cursor = page.cursor;
    } while (cursor);
    const expected = Array.from({ length: 30 }, (_, i) => 29 - i)
      .filter((i) => i % 3 !== 1)
      .map((i) => `t${String(i).padStart(3, '0')}`);
    expect(ids).toEqual(expected);
  });

  it('never lists a task twice or under a status it does not have when a writer stopped halfway', async () => {
    const store = openStore();
    await store.insertTask(newTask('t1'));
    await store.insertTask(newTask('t2'));
    // t1's running pointer is written, then its row update fails: the row stays waiting.
    fake.inject(FAULTS.authFailed, { operation: 'UpdateRow', table: table('tasks') });
    await rejection(store.markTaskRunning('t1'));
    // t2 finishes, but the removal of its old status pointers fails.
    await store.markTaskRunning('t2');
    // Its new pointers are written (the first batch), the row is final, the removal of old pointers fails.
    fake.inject(FAULTS.authFailed, { operation: 'BatchWriteRow', table: table('task_index'), skip: 1 });
    await rejection(store.finalizeTask('t2', { status: 'succeeded', images: [] }));
    expect((await store.getTask('t2'))?.status).toBe('succeeded');

    const ids = async (statuses?: Array<'waiting' | 'running' | 'succeeded'>) =>
      (await store.listTasks({ status: statuses })).items.map((t) => `${t.taskId}:${t.status}`);
    expect(await ids()).toEqual(['t2:succeeded', 't1:waiting']);
    expect(await ids(['running'])).toEqual([]);
    expect(await ids(['waiting'])).toEqual(['t1:waiting']);
    expect(await ids(['waiting', 'running', 'succeeded'])).toEqual(['t2:succeeded', 't1:waiting']);
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
    expect(
      fake.recorded('PutRow', table('models')).map((r) => [r.rowExistence, r.columnCondition ?? '', r.status]),
    ).toEqual([
      ['EXPECT_NOT_EXIST', '', 200],
      ['EXPECT_NOT_EXIST', '', 403],
      ['IGNORE', '', 200],
      ['EXPECT_NOT_EXIST', '', 403],
      ['EXPECT_EXIST', 'status == "deleted"', 200],
      ['EXPECT_NOT_EXIST', '', 403],
    ]);
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

  it('lists by name, filtered by type and status, past the GetRange page size', async () => {
    const store = openStore();
    await store.putModel(model('b'));
    await store.putModel(model('a', { type: 'lora' }));
    await store.putModel(model('c', { status: 'deleted' }));
    expect((await store.listModels()).map((m) => m.name)).toEqual(['a', 'b', 'c']);
    expect((await store.listModels({ type: 'stableDiffusion' })).map((m) => m.name)).toEqual(['b', 'c']);
    expect((await store.listModels({ status: 'loaded' })).map((m) => m.name)).toEqual(['a', 'b']);
    expect((await store.listModels({ type: 'stableDiffusion', status: 'deleted' })).map((m) => m.name)).toEqual(['c']);

    for (let i = 0; i < 20; i++) await store.putModel(model(`m${String(i).padStart(2, '0')}`));
    expect(await store.listModels()).toHaveLength(23);
  });

  it('removes a registration only while it is that registration and still registering', async () => {
    const store = openStore();
    const row = model('m', { status: 'registering', registeredTime: '2024-03-01T00:00:00.000Z' });
    await store.insertModel(row);
    expect(await store.removeModel('m', '2024-01-01T00:00:00.000Z')).toBe(false);
    await store.putModel({ ...row, status: 'loading' });
    expect(await store.removeModel('m', row.registeredTime)).toBe(false);
    expect(await store.getModel('m')).not.toBeNull();
    await store.putModel(row);
    expect(await store.removeModel('m', row.registeredTime)).toBe(true);
    expect(await store.getModel('m')).toBeNull();
    expect(await store.removeModel('m', row.registeredTime)).toBe(false);
    expect(fake.recorded('DeleteRow', table('models'))[0]).toMatchObject({
      rowExistence: 'EXPECT_EXIST',
      columnCondition: 'registeredTime == "2024-01-01T00:00:00.000Z" AND status == "registering"',
    });
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

describe('user options', () => {
  it('stores numbered versions per user and reads the latest or a given one', async () => {
    const store = openStore();
    expect(await store.getUserOptions('alice')).toBeNull();
    expect(await store.putUserOptions('alice', { sd_vae: 'a.vae' })).toBe(1);
    expect(await store.putUserOptions('alice', { sd_vae: 'b.vae', CLIP_stop_at_last_layers: 2 })).toBe(2);
    expect(await store.putUserOptions('bob', { x: true })).toBe(1);
    expect(await store.getUserOptions('alice')).toMatchObject({
      user: 'alice',
      version: 2,
      data: { sd_vae: 'b.vae', CLIP_stop_at_last_layers: 2 },
    });
    expect(await store.getUserOptions('alice', 1)).toMatchObject({ version: 1, data: { sd_vae: 'a.vae' } });
    expect(await store.getUserOptions('alice', 3)).toBeNull();
    expect((await store.getUserOptions('bob'))?.data).toEqual({ x: true });
  });

  it('gives concurrent writers on two stores distinct versions', async () => {
    const a = openStore();
    const b = openStore();
    const versions = await Promise.all([
      a.putUserOptions('alice', { n: 1 }),
      b.putUserOptions('alice', { n: 2 }),
      a.putUserOptions('alice', { n: 3 }),
      b.putUserOptions('alice', { n: 4 }),
    ]);
    expect([...versions].sort()).toEqual([1, 2, 3, 4]);
    for (const [i, version] of versions.entries()) {
      expect((await a.getUserOptions('alice', version))?.data).toEqual({ n: i + 1 });
    }
  });
});

describe('status events', () => {
  it('number 1, 2, … per task, in the order appended, and list after an id, past the GetRange page size', async () => {
    const store = openStore();
    expect(await store.listStatusEvents('t1')).toEqual([]);
    const first = await store.appendStatusEvent('t1', { status: 'waiting', phase: 'queued' });
    expect(first).toMatchObject({ id: 1, status: 'waiting', phase: 'queued' });
    expect(first.coldStart).toBeUndefined();
    await store.appendStatusEvent('t2', { status: 'waiting', phase: 'queued' });
    await store.appendStatusEvent('t1', { status: 'running', phase: 'starting', coldStart: true });
    for (let i = 0; i < 8; i++) await store.appendStatusEvent('t1', { status: 'running', phase: 'sampling' });
    const all = await store.listStatusEvents('t1');
    expect(all.map((e) => e.id)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    expect(all[1]).toMatchObject({ phase: 'starting', coldStart: true });
    expect(all[0]).toEqual({ ...first });
    expect((await store.listStatusEvents('t1', 8)).map((e) => e.id)).toEqual([9, 10]);
    expect((await store.listStatusEvents('t2')).map((e) => e.id)).toEqual([1]);
  });

  it('get distinct ids when two stores append to one task at once', async () => {
    const [a, b] = [openStore(), openStore()];
    const appended = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        (i % 2 ? a : b).appendStatusEvent('t1', { status: 'running', phase: 'sampling' }),
      ),
    );
    expect(appended.map((e) => e.id).sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('recognize their own append when its response was lost', async () => {
    const store = openStore();
    await store.appendStatusEvent('t1', { status: 'waiting', phase: 'queued' });
    fake.inject(FAULTS.drop, { operation: 'PutRow', table: table('task_events') });
    expect((await store.appendStatusEvent('t1', { status: 'running', phase: 'starting' })).id).toBe(2);
    expect((await store.listStatusEvents('t1')).map((e) => e.phase)).toEqual(['queued', 'starting']);
  });
});

describe('webhooks', () => {
  it('keeps a task’s webhook in its row', async () => {
    const store = openStore();
    const webhook = { url: 'https://hooks.example.com/x', events: ['progress' as const, 'completed' as const] };
    await store.insertTask(newTask('t1', { webhook }));
    expect((await store.getTask('t1'))?.webhook).toEqual(webhook);
    expect((await store.finalizeTask('t1', { status: 'failed', images: [], message: 'no' }))?.webhook).toEqual(webhook);
  });

  it('keeps the scheduling a task was accepted with, for the workflow the reconciler starts', async () => {
    const store = openStore();
    const scheduling = { owner: { user: 'alice', lane: 'high' as const, weight: 2 }, deadlineAt: 1_700_000_000_000 };
    await store.insertTask(newTask('s1', { scheduling }));
    expect((await store.getTask('s1'))?.scheduling).toEqual(scheduling);
    await store.insertTask(newTask('s2'));
    expect((await store.getTask('s2'))?.scheduling).toBeUndefined();
  });

  it('logs attempts per task, oldest first, with a status code or an error', async () => {
    const store = openStore();
    const at = '2024-05-01T10:00:00.000Z';
    await store.recordWebhookAttempt('t1', {
      event: 'completed',
      webhookId: 'msg_1',
      at,
      error: 'timed out',
      durationMs: 10_000.4,
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
      { event: 'completed', webhookId: 'msg_1', at, error: 'timed out', durationMs: 10_000 },
      { event: 'completed', webhookId: 'msg_1', at, statusCode: 200, durationMs: 12 },
    ]);
    expect(await store.listWebhookAttempts('none')).toEqual([]);
  });
});

describe('config', () => {
  it('sets a value once: concurrent first writers on two stores agree', async () => {
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

describe('retries and errors', () => {
  /** A store whose tables exist, so the requests counted are the operation's own. */
  async function warmStore(env: Env = {}) {
    const store = openStore(env);
    await store.getTask('warm-up');
    return store;
  }

  it('retries throttling with backoff: twice OTSServerBusy, then the write succeeds', async () => {
    const store = await warmStore();
    fake.inject(FAULTS.throttled, { count: 2, operation: 'PutRow', table: table('tasks') });
    expect(await store.insertTask(newTask('t1'))).not.toBeNull();
    expect(fake.recorded('PutRow', table('tasks')).map((r) => [r.status, r.errorCode])).toEqual([
      [503, 'OTSServerBusy'],
      [503, 'OTSServerBusy'],
      [200, undefined],
    ]);
    expect((await store.getTask('t1'))?.status).toBe('waiting');
  });

  it('retries a 503 from an unavailable server, and throttled table operations', async () => {
    const store = await warmStore();
    await store.insertTask(newTask('t1'));
    fake.inject(FAULTS.unavailable, { operation: 'GetRow' });
    expect((await store.getTask('t1'))?.taskId).toBe('t1');
    fake.inject(FAULTS.tooFrequent, { operation: 'GetRange' });
    expect(await store.listFunctions()).toEqual([]);
    expect(fake.recorded('GetRow').map((r) => r.errorCode)).toContain('OTSServerUnavailable');
    expect(fake.recorded('GetRange', table('functions')).map((r) => r.status)).toEqual([403, 200]);
  });

  it('times out a request that hangs, and retries it', async () => {
    const store = await warmStore();
    fake.inject(FAULTS.hang, { operation: 'GetRow' });
    const started = Date.now();
    expect(await store.getTask('t1')).toBeNull();
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(fake.recorded('GetRow', table('tasks')).map((r) => r.fault ?? r.status)).toEqual([200, 'hang', 200]);
  });

  it('reports an authentication error at once, naming the operation and table, without retrying', async () => {
    const store = await warmStore();
    fake.inject(FAULTS.authFailed, { operation: 'GetRow' });
    const err = await rejection(store.getTask('t1'));
    expect(err).toMatchObject({ operation: 'GetRow', table: table('tasks'), code: 'OTSAuthFailed', attempts: 1 });
    expect(err.message).toContain(`Tablestore GetRow on table ${table('tasks')} failed: OTSAuthFailed (HTTP 403)`);
    expect(err.message).toContain('ALIBABA_CLOUD_ACCESS_KEY_SECRET');
    expect(fake.recorded('GetRow', table('tasks'))).toHaveLength(2);
  });

  it('reports a wrong secret as the signature mismatch the service finds, not retried', async () => {
    const store = openStore({ ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'not-the-secret' });
    const err = await rejection(store.getTask('t1'));
    expect(err.code).toBe('OTSAuthFailed');
    expect(err.message).toMatch(/Tablestore ListTable failed: OTSAuthFailed \(HTTP 403\): Signature mismatch\./);
    expect(fake.requests).toHaveLength(1);
  });

  it('gives up after maxAttempts, saying how often it tried', async () => {
    const store = await warmStore();
    fake.inject(FAULTS.throttled, { count: 10, operation: 'GetRow' });
    const err = await rejection(store.getTask('t1'));
    expect(err).toMatchObject({ code: 'OTSServerBusy', attempts: 4, retryable: true, mayHaveApplied: false });
    expect(err.message).toContain('failed after 4 attempts: OTSServerBusy (HTTP 503): Server is busy.');
  });

  it('never retries a failed condition', async () => {
    const store = await warmStore();
    await store.insertTask(newTask('t1'));
    expect(await store.insertTask(newTask('t1'))).toBeNull();
    expect(fake.recorded('PutRow', table('tasks')).map((r) => r.errorCode)).toEqual([
      undefined,
      'OTSConditionCheckFail',
    ]);
  });

  it('reports an insert as inserted when its first attempt was applied but the response was lost', async () => {
    const store = await warmStore();
    fake.inject(FAULTS.drop, { operation: 'PutRow', table: table('tasks') });
    expect(await store.insertTask(newTask('t1', { idempotencyKey: 'k1' }))).not.toBeNull();
    expect(fake.recorded('PutRow', table('tasks')).map((r) => [r.fault ?? r.status, r.errorCode])).toEqual([
      ['drop', undefined],
      [403, 'OTSConditionCheckFail'],
    ]);
    expect(fake.rows(table('tasks'))).toHaveLength(1);
    expect((await store.findTaskByIdempotencyKey('alice', 'k1'))?.taskId).toBe('t1');
    // A real duplicate is still refused.
    expect(await store.insertTask(newTask('t1'))).toBeNull();
  });

  it('recognizes its own lost writes for idempotency keys, models, config, options and transitions', async () => {
    const store = await warmStore();
    fake.inject(FAULTS.drop, { operation: 'PutRow', table: table('idempotency') });
    expect(await store.insertTask(newTask('t1', { idempotencyKey: 'k1' }))).not.toBeNull();

    fake.inject(FAULTS.drop, { operation: 'PutRow', table: table('models') });
    expect(await store.insertModel(model('sd15'))).toBe(true);

    fake.inject(FAULTS.drop, { operation: 'PutRow', table: table('config') });
    expect(await store.setConfigValueOnce('secret', 'mine')).toBe('mine');

    fake.inject(FAULTS.drop, { operation: 'PutRow', table: table('user_options') });
    expect(await store.putUserOptions('alice', { a: 1 })).toBe(1);
    expect(await store.putUserOptions('alice', { a: 2 })).toBe(2);

    fake.inject(FAULTS.drop, { operation: 'UpdateRow', table: table('tasks') });
    await store.markTaskRunning('t1');
    expect((await store.getTask('t1'))?.status).toBe('running');

    fake.inject(FAULTS.drop, { operation: 'UpdateRow', table: table('tasks') });
    const final = await store.finalizeTask('t1', { status: 'succeeded', images: ['images/alice/t1_1.png'] });
    expect(final).toMatchObject({ status: 'succeeded', images: ['images/alice/t1_1.png'] });
    expect((await store.listTasks({ status: ['running'] })).items).toEqual([]);

    await store.putModel(model('m', { status: 'registering' }));
    fake.inject(FAULTS.drop, { operation: 'DeleteRow', table: table('models') });
    expect(await store.removeModel('m', model('m').registeredTime)).toBe(true);

    expect(fake.requests.filter((r) => r.fault === 'drop')).toHaveLength(7);
  });
});

describe('the fake', () => {
  async function post(path: string, body: Buffer, headers: Record<string, string>) {
    const res = await fetch(`${fake.endpoint}${path}`, { method: 'POST', body, headers });
    return { status: res.status, body: decodeErrorBody(Buffer.from(await res.arrayBuffer())) };
  }

  function signedHeaders(body: Buffer, secret: string): Record<string, string> {
    const headers: Record<string, string> = {
      'x-ots-date': new Date().toISOString(),
      'x-ots-apiversion': '2015-12-31',
      'x-ots-accesskeyid': fake.accessKeyId,
      'x-ots-instancename': fake.instance,
      'x-ots-contentmd5': createHash('md5').update(body).digest('base64'),
    };
    headers['x-ots-signature'] = signature(secret, stringToSign('/ListTable', 'POST', headers));
    return headers;
  }

  it('checks the signature with its own implementation, and the body against its MD5', async () => {
    const body = Buffer.alloc(0);
    expect((await post('/ListTable', body, signedHeaders(body, fake.accessKeySecret))).status).toBe(200);
    expect(await post('/ListTable', body, signedHeaders(body, 'another-secret'))).toEqual({
      status: 403,
      body: { code: 'OTSAuthFailed', message: 'Signature mismatch.' },
    });
    const tampered = await post('/ListTable', Buffer.from([0x0a, 0x00]), signedHeaders(body, fake.accessKeySecret));
    expect(tampered).toEqual({
      status: 403,
      body: {
        code: 'OTSAuthFailed',
        message: 'Mismatch between MD5 value of request body and x-ots-contentmd5 in header.',
      },
    });
    const { 'x-ots-date': _date, ...undated } = signedHeaders(body, fake.accessKeySecret);
    expect(await post('/ListTable', body, undated)).toEqual({
      status: 400,
      body: { code: 'OTSParameterInvalid', message: "Missing header: 'x-ots-date'." },
    });
  });
});

describe('row mapping', () => {
  const full: NewTask = {
    taskId: 't1',
    user: 'alice',
    kind: 'img2img',
    model: 'sd15',
    params: { prompt: 'a cat', init_images: ['inputs/alice/t1/0.png'] },
    info: 'i',
    parameters: { steps: 20 },
    message: 'm',
    errorKind: 'sd_error',
    retryOf: 't0',
    webhook: { url: 'https://hooks.example.com/x', events: ['completed'] },
    idempotencyKey: 'k',
    requestHash: 'h',
  };

  it('maps a task to columns and back, JSON for structured fields, absent columns for absent fields', () => {
    const columns = newTaskColumns(full, '2024-01-01T00:00:00.000Z', 'w1');
    expect(columns).toEqual({
      user: 'alice',
      kind: 'img2img',
      model: 'sd15',
      status: 'waiting',
      params: '{"prompt":"a cat","init_images":["inputs/alice/t1/0.png"]}',
      images: '[]',
      info: 'i',
      parameters: '{"steps":20}',
      message: 'm',
      errorKind: 'sd_error',
      retryOf: 't0',
      webhook: '{"url":"https://hooks.example.com/x","events":["completed"]}',
      idempotencyKey: 'k',
      requestHash: 'h',
      createdAt: '2024-01-01T00:00:00.000Z',
      updatedAt: '2024-01-01T00:00:00.000Z',
      writeId: 'w1',
    });
    const { taskId: _t, ...rest } = full;
    expect(taskFromColumns({ taskId: 't1', ...columns })).toEqual({
      ...rest,
      taskId: 't1',
      status: 'waiting',
      images: [],
      createdAt: '2024-01-01T00:00:00.000Z',
      updatedAt: '2024-01-01T00:00:00.000Z',
    });
    const bare = newTaskColumns(newTask('t2'), '2024-01-01T00:00:00.000Z', 'w2');
    expect(Object.keys(bare).sort()).toEqual(
      ['createdAt', 'images', 'kind', 'model', 'params', 'status', 'updatedAt', 'user', 'writeId'].sort(),
    );
    expect(taskFromColumns({ taskId: 't2', ...bare })).not.toHaveProperty('info');
    expect(() => taskFromColumns({ taskId: 't3' })).toThrow('tasks row has no string column user');
  });

  it('reads rows in the SDK shape, and null for the empty row of a missing key', () => {
    expect(columnsOf({})).toBeNull();
    expect(
      columnsOf({
        primaryKey: [{ name: 'taskId', value: 't1' }],
        attributes: [{ columnName: 'user', columnValue: 'alice' }],
      }),
    ).toEqual({ taskId: 't1', user: 'alice' });
  });

  it('writes a final record, removing the optional columns it lacks', () => {
    expect(finalUpdate({ status: 'cancelled', images: [], message: 'stop' }, '2024-01-02T00:00:00.000Z')).toEqual({
      put: {
        status: 'cancelled',
        images: '[]',
        updatedAt: '2024-01-02T00:00:00.000Z',
        finishedAt: '2024-01-02T00:00:00.000Z',
        message: 'stop',
      },
      remove: ['info', 'parameters', 'errorKind', 'timings', 'cost'],
    });
    expect(updateOf('t', { put: { a: 'x' }, remove: ['b'] })).toEqual([{ PUT: [{ a: 'x' }] }, { DELETE_ALL: ['b'] }]);
    expect(updateOf('t', { put: { a: 'x' }, remove: [] })).toEqual([{ PUT: [{ a: 'x' }] }]);
  });

  it('maps models, functions and user options', () => {
    const m = model('sd15', { message: 'why' });
    expect(modelFromColumns({ name: 'sd15', ...modelColumns(m, 'w') })).toEqual(m);
    expect(writeIdOf(modelColumns(m, 'w'))).toBe('w');
    expect(modelColumns(model('x'))).not.toHaveProperty('writeId');
    const fn = { functionName: 'sd_a', model: 'sd15', resources: { gpu: 'T4' }, createdAt: 'c', updatedAt: 'u' };
    expect(functionFromColumns({ functionName: 'sd_a', ...functionColumns(fn) })).toEqual(fn);
    const [user, version] = userOptionsKey('alice', 7);
    expect(
      userOptionsFromColumns({ ...user, ...version, data: '{"a":1}', createdAt: 'c' } as Record<string, any>),
    ).toEqual({ user: 'alice', version: 7, data: { a: 1 }, createdAt: 'c' });
  });

  it('lists a task under four unambiguous scopes', () => {
    expect(taskScopes('alice', 'running')).toEqual([
      '[null,null]',
      '["alice",null]',
      '[null,"running"]',
      '["alice","running"]',
    ]);
    expect(scopeKey('a","b', undefined)).not.toBe(scopeKey('a', 'b' as any));
  });

  it("refuses a column over Tablestore's 2 MB limit, naming it", () => {
    expect(() => attributeColumns('sdflow_tasks', { params: 'x'.repeat(MAX_COLUMN_BYTES + 1) })).toThrow(
      `sdflow_tasks.params is ${MAX_COLUMN_BYTES + 1} bytes`,
    );
    expect(attributeColumns('t', { a: 'x', b: true })).toEqual([{ a: 'x' }, { b: true }]);
  });

  it('classifies failures: what to retry, and what may have been applied', () => {
    const body = (code: string, message: string) =>
      Buffer.concat([
        Buffer.from([0x0a, code.length]),
        Buffer.from(code),
        Buffer.from([0x12, message.length]),
        Buffer.from(message),
      ]);
    const err = new Error('x');
    expect(classify(err, 503, body('OTSServerBusy', 'Server is busy.'))).toMatchObject({
      retryable: true,
      mayHaveApplied: false,
    });
    expect(classify(err, 503, body('OTSTimeout', 'Operation timeout.'))).toMatchObject({
      retryable: true,
      mayHaveApplied: true,
    });
    expect(classify(err, 403, body('OTSAuthFailed', 'Signature mismatch.'))).toMatchObject({ retryable: false });
    expect(classify(err, 403, body('OTSConditionCheckFail', 'Condition check failed.'))).toMatchObject({
      code: 'OTSConditionCheckFail',
      retryable: false,
    });
    expect(classify(err, 403, body('OTSQuotaExhausted', 'Number of tables exceeded the quota.')).retryable).toBe(false);
    expect(classify(err, 429, Buffer.from('slow down'))).toMatchObject({ code: 'HTTP429', retryable: true });
    expect(classify(err, 502, Buffer.alloc(0))).toMatchObject({ retryable: true, mayHaveApplied: true });
    expect(
      classify(Object.assign(new Error('socket hang up'), { code: 'NetworkingError' }), undefined, undefined),
    ).toMatchObject({ code: 'NetworkingError', retryable: true, mayHaveApplied: true });
  });
});

describe('rate windows', () => {
  it('counts hits per subject and window by compare-and-set, without losing a hit to a concurrent replica', async () => {
    const a = openStore();
    const b = openStore();
    expect(await a.hitRateWindow('key:1', 100)).toBe(1);
    expect(await b.hitRateWindow('key:1', 100)).toBe(2);
    expect(await a.hitRateWindow('key:1', 101)).toBe(1);
    const hits = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).hitRateWindow('key:2', 5)));
    expect(hits.sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });
});

describe('leases', () => {
  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
  const RESOURCE = 'static:http://gpu1:7860';
  /** The stored expiry of the resource's lease (epoch ms). */
  const storedExpiry = () => Number(fake.rows(table('leases')).find((r) => r.resource === RESOURCE)?.expiresAt);
  /** Sleeps until the clock is past `epochMs`. */
  const until = (epochMs: number) => sleep(Math.max(0, epochMs - Date.now() + 50));

  it('gives a resource to one holder of many, contending on two stores; the holder may take it again', async () => {
    const a = openStore();
    const b = openStore();
    const holders = Array.from({ length: 8 }, (_, i) => `h${i}`);
    const before = Date.now();
    const won = await Promise.all(
      holders.map((holder, i) => (i % 2 ? a : b).tryAcquireLease(RESOURCE, holder, 30_000)),
    );
    expect(won.filter(Boolean)).toHaveLength(1);
    const winner = holders[won.indexOf(true)];
    const [row] = fake.rows(table('leases'));
    expect(row).toMatchObject({ resource: RESOURCE, holder: winner });
    // Epoch milliseconds, zero-padded so that string order is time order.
    expect(row.expiresAt).toMatch(/^\d{16}$/);
    expect(Number(row.expiresAt)).toBeGreaterThanOrEqual(before + 30_000);

    expect(await a.tryAcquireLease(RESOURCE, winner, 30_000)).toBe(true);
    expect(await b.tryAcquireLease(RESOURCE, `${winner}x`, 30_000)).toBe(false);
    expect(await b.tryAcquireLease('static:http://gpu2:7860', `${winner}x`, 30_000)).toBe(true);
  });

  it('lets another holder take an expired lease by compare-and-set; the old holder can then neither renew nor release it', async () => {
    const a = openStore();
    const b = openStore();
    expect(await a.tryAcquireLease(RESOURCE, 'A', 2000)).toBe(true);
    expect(await b.tryAcquireLease(RESOURCE, 'B', 2000)).toBe(false);
    const expiresAt = fake.rows(table('leases'))[0].expiresAt;
    await until(Number(expiresAt));
    expect(await b.tryAcquireLease(RESOURCE, 'B', 30_000)).toBe(true);
    expect(fake.recorded('UpdateRow', table('leases')).map((r) => [r.rowExistence, r.columnCondition])).toEqual([
      ['EXPECT_EXIST', `holder == "A" AND expiresAt == "${expiresAt}"`],
    ]);
    expect(await a.renewLease(RESOURCE, 'A', 30_000)).toBe(false);
    await a.releaseLease(RESOURCE, 'A');
    expect(await a.tryAcquireLease(RESOURCE, 'C', 30_000)).toBe(false);
    expect(fake.rows(table('leases'))).toMatchObject([{ holder: 'B' }]);
    expect(await b.renewLease(RESOURCE, 'B', 30_000)).toBe(true);
  });

  it('extends a lease by renewing it, so that it outlives its first TTL', async () => {
    const a = openStore();
    const b = openStore();
    expect(await a.tryAcquireLease(RESOURCE, 'A', 2000)).toBe(true);
    const first = storedExpiry();
    await sleep(1000);
    expect(await a.renewLease(RESOURCE, 'A', 2000)).toBe(true);
    const renewed = storedExpiry();
    expect(renewed).toBeGreaterThanOrEqual(first + 1000);
    await until(first);
    expect(await b.tryAcquireLease(RESOURCE, 'B', 2000)).toBe(false);
    await until(renewed);
    expect(await b.tryAcquireLease(RESOURCE, 'B', 2000)).toBe(true);
    expect(await a.renewLease('static:never-taken', 'A', 2000)).toBe(false);
  });

  it("frees a resource only on its holder's release, idempotently", async () => {
    const a = openStore();
    const b = openStore();
    expect(await a.tryAcquireLease(RESOURCE, 'A', 30_000)).toBe(true);
    await b.releaseLease(RESOURCE, 'B');
    expect(await b.tryAcquireLease(RESOURCE, 'B', 30_000)).toBe(false);
    await a.releaseLease(RESOURCE, 'A');
    await a.releaseLease(RESOURCE, 'A');
    await b.releaseLease('static:never-taken', 'B');
    expect(fake.rows(table('leases'))).toEqual([]);
    expect(fake.recorded('DeleteRow', table('leases'))[0]).toMatchObject({
      rowExistence: 'EXPECT_EXIST',
      columnCondition: 'holder == "B"',
    });
    expect(await a.renewLease(RESOURCE, 'A', 30_000)).toBe(false);
    expect(await b.tryAcquireLease(RESOURCE, 'B', 30_000)).toBe(true);
    await a.releaseLease(RESOURCE, 'A');
    expect(await a.tryAcquireLease(RESOURCE, 'A', 30_000)).toBe(false);
  });

  it('recognizes its own lease when the response of a take, a takeover, a renewal or a release was lost', async () => {
    const a = openStore();
    const b = openStore();
    await a.getTask('warm-up');
    fake.inject(FAULTS.drop, { operation: 'PutRow', table: table('leases') });
    expect(await a.tryAcquireLease(RESOURCE, 'A', 2000)).toBe(true);
    expect(fake.rows(table('leases'))).toMatchObject([{ holder: 'A' }]);
    expect(await b.tryAcquireLease(RESOURCE, 'B', 2000)).toBe(false);

    await until(storedExpiry());
    fake.inject(FAULTS.drop, { operation: 'UpdateRow', table: table('leases') });
    expect(await b.tryAcquireLease(RESOURCE, 'B', 30_000)).toBe(true);
    expect(await a.tryAcquireLease(RESOURCE, 'A', 30_000)).toBe(false);

    fake.inject(FAULTS.drop, { operation: 'UpdateRow', table: table('leases') });
    expect(await b.renewLease(RESOURCE, 'B', 30_000)).toBe(true);

    fake.inject(FAULTS.drop, { operation: 'DeleteRow', table: table('leases') });
    await b.releaseLease(RESOURCE, 'B');
    expect(fake.rows(table('leases'))).toEqual([]);
    expect(await a.tryAcquireLease(RESOURCE, 'A', 30_000)).toBe(true);
    expect(fake.requests.filter((r) => r.fault === 'drop')).toHaveLength(4);
  });
});
