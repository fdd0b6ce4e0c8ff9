import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeZodError } from '../../src/api/errors.js';
import { batchUpdateBody, deleteFunctionsBody, optionsBody } from '../../src/api/platform-schemas.js';
import { batchStatus, mergeResources } from '../../src/api/routes/functions.js';
import { SCHEMA_VERSION, SqliteMetaStore } from '../../src/platform/meta-store/sqlite/store.js';

// The function admin routes' rules and per-user options, without processes: request validation, how resources
// merge, which HTTP status a partial failure gets, and the versioned options in the meta store.

function refusal(schema: { safeParse(v: unknown): { success: boolean; error?: unknown } }, body: unknown): string {
  const r = schema.safeParse(body);
  if (r.success) throw new Error(`accepted: ${JSON.stringify(body)}`);
  return describeZodError(r.error as Parameters<typeof describeZodError>[0]);
}

describe('batch update and delete bodies', () => {
  it('accepts the resource fields (models, image, cpu, …) plus functions, maxInstances and keepAliveS', () => {
    const body = batchUpdateBody.parse({
      models: ['a.safetensors'],
      image: 'registry/sd:1',
      cpu: 8,
      instanceType: 'fc.gpu.ampere.1',
      memorySize: 32768,
      gpuMemorySize: 24576,
      timeout: 600,
      extraArgs: '--api --xformers',
      vpcConfig: { vpcId: 'v' },
      nasConfig: { mountPoints: [] },
      ossMountConfig: { mountPoints: [] },
      env: { HF_HOME: '/mnt/hf' },
      maxInstances: 2,
      keepAliveS: 30,
    });
    expect(body.env).toEqual({ HF_HOME: '/mnt/hf' });
    expect(batchUpdateBody.parse({ functions: ['sd_x'], keepAliveS: 0 }).keepAliveS).toBe(0);
  });

  it('refuses with a message naming the field', () => {
    expect(refusal(batchUpdateBody, { maxInstance: 2 })).toMatch(/unknown field\(s\): maxInstance/);
    expect(refusal(batchUpdateBody, { models: ['a'] })).toMatch(/names no resource to update/);
    expect(refusal(batchUpdateBody, { timeout: 0 })).toMatch(/^timeout: must be at least 1/);
    expect(refusal(batchUpdateBody, { timeout: 1.5 })).toMatch(/^timeout: must be an integer/);
    expect(refusal(batchUpdateBody, { maxInstances: 'two' })).toMatch(/^maxInstances: must be a number/);
    expect(refusal(batchUpdateBody, { env: { '1BAD': 'x' } })).toMatch(/^env\.1BAD: is not a valid environment/);
    expect(refusal(batchUpdateBody, { env: { SD_MODEL: 'x' } })).toMatch(/^env\.SD_MODEL: is set by the platform/);
    expect(refusal(batchUpdateBody, { env: { A: 1 } })).toMatch(/^env\.A: must be a string/);
    expect(refusal(batchUpdateBody, { models: 'a', cpu: 2 })).toMatch(/^models: must be an array/);
    expect(refusal(batchUpdateBody, { vpcConfig: 'v' })).toMatch(/^vpcConfig: must be an object/);
    expect(refusal(batchUpdateBody, [])).toMatch(/^body: must be a JSON object/);
    expect(refusal(deleteFunctionsBody, {})).toMatch(/^functions: must be an array/);
    expect(refusal(deleteFunctionsBody, { functions: [] })).toMatch(/^functions: must name at least one/);
    expect(refusal(deleteFunctionsBody, { functions: [''] })).toMatch(/^functions\[0\]: must not be empty/);
  });

  it('options data is an object of at most 64 KB', () => {
    expect(optionsBody.parse({ data: { CLIP_stop_at_last_layers: 2 } }).data).toEqual({ CLIP_stop_at_last_layers: 2 });
    expect(refusal(optionsBody, {})).toMatch(/^data: must be an object of WebUI settings/);
    expect(refusal(optionsBody, { data: [1] })).toMatch(/^data: must be an object/);
    expect(refusal(optionsBody, { data: { big: 'x'.repeat(70_000) } })).toMatch(/^data: must be at most 64 KB/);
  });
});

describe('applying a batch', () => {
  it('merges env key by key and replaces every other field', () => {
    const current = { env: { A: '1', B: '2' }, timeout: 60, image: 'old' };
    expect(mergeResources(current, { env: { B: '3', C: '4' }, timeout: 120 })).toEqual({
      env: { A: '1', B: '3', C: '4' },
      timeout: 120,
      image: 'old',
    });
    expect(mergeResources({}, { maxInstances: 2 })).toEqual({ maxInstances: 2 });
  });

  it('answers 200 when all applied, 404 when only unknown names failed, else 500', () => {
    expect(batchStatus([])).toBe(200);
    expect(batchStatus([{ unknown: true }, { unknown: true }])).toBe(404);
    expect(batchStatus([{ unknown: true }, { unknown: false }])).toBe(500);
  });
});

describe('user options in the meta store', () => {
  let dir: string;
  let store: SqliteMetaStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'sdflow-opts-'));
    store = SqliteMetaStore.open(join(dir, 'meta.db'));
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('versions each user on their own, from 1; reads the latest or a given version', async () => {
    expect(await store.getUserOptions('alice')).toBeNull();
    expect(await store.putUserOptions('alice', { CLIP_stop_at_last_layers: 2 })).toBe(1);
    expect(await store.putUserOptions('bob', { eta_noise_seed_delta: 31337 })).toBe(1);
    expect(await store.putUserOptions('alice', { CLIP_stop_at_last_layers: 3 })).toBe(2);
    expect(await store.getUserOptions('alice')).toMatchObject({ version: 2, data: { CLIP_stop_at_last_layers: 3 } });
    expect(await store.getUserOptions('alice', 1)).toMatchObject({ version: 1, data: { CLIP_stop_at_last_layers: 2 } });
    expect(await store.getUserOptions('alice', 3)).toBeNull();
    expect(await store.getUserOptions('bob')).toMatchObject({ user: 'bob', version: 1 });
  });

  it('concurrent writers for one user get distinct versions, and the schema migrates to the current version', async () => {
    const second = SqliteMetaStore.open(join(dir, 'meta.db'));
    const versions = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? store : second).putUserOptions('carol', { i })),
    );
    await second.close();
    expect([...versions].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    const raw = new Database(join(dir, 'meta.db'));
    expect(raw.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    raw.close();
  });
});
