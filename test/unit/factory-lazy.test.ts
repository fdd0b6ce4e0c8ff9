import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { createFunctionRuntime, createMetaStore, createObjectStore } from '../../src/platform/index.js';

// A process on the local backends never loads a cloud SDK: loading them cost every local agent, API and worker
// ~0.5 s of CPU. The factory imports a backend's module only when the config picks it.

const sdks = vi.hoisted(() => ({ loaded: [] as string[] }));
vi.mock('ali-oss', async (original) => {
  sdks.loaded.push('ali-oss');
  return original();
});
vi.mock('tablestore', async (original) => {
  sdks.loaded.push('tablestore');
  return original();
});
vi.mock('@alicloud/fc20230330', async (original) => {
  sdks.loaded.push('@alicloud/fc20230330');
  return original();
});

const dataDir = mkdtempSync(join(tmpdir(), 'sdflow-factory-lazy-'));

afterAll(() => {
  rmSync(dataDir, { recursive: true, force: true });
});

it('loads no cloud SDK for the local adapters, and each one only for its own adapter', async () => {
  const local = loadConfig({ SDFLOW_DATA_DIR: dataDir });
  await createObjectStore(local);
  await (await createMetaStore(local)).close();
  await createFunctionRuntime(local);
  expect(sdks.loaded).toEqual([]);

  const cloud = loadConfig({
    SDFLOW_DATA_DIR: dataDir,
    ALIBABA_CLOUD_ACCESS_KEY_ID: 'LTAI5tFactoryTest',
    ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'factory-test-secret',
    SDFLOW_OBJECT_STORE: 'oss',
    SDFLOW_OSS_BUCKET: 'sdflow-factory',
    SDFLOW_OSS_REGION: 'cn-hangzhou',
    SDFLOW_META_STORE: 'tablestore',
    SDFLOW_TABLESTORE_ENDPOINT: 'https://sdflow.cn-hangzhou.ots.aliyuncs.com',
    SDFLOW_TABLESTORE_INSTANCE: 'sdflow',
    SDFLOW_FUNCTIONS: 'fc',
    SDFLOW_FC_REGION: 'cn-hangzhou',
    SDFLOW_FC_ACCOUNT_ID: '1234567890123456',
    SDFLOW_FC_IMAGE: 'registry.cn-hangzhou.aliyuncs.com/sdflow/agent:1.0',
  });
  await createObjectStore(cloud);
  expect(sdks.loaded).toEqual(['ali-oss']);
  await createMetaStore(cloud);
  expect(sdks.loaded).toEqual(['ali-oss', 'tablestore']);
  await createFunctionRuntime(cloud);
  expect(sdks.loaded).toEqual(['ali-oss', 'tablestore', '@alicloud/fc20230330']);
});
