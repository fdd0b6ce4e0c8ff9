import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { FcFunctionRuntime } from '../../src/platform/functions/fc/runtime.js';
import { LocalFunctionRuntime } from '../../src/platform/functions/local/client.js';
import { createFunctionRuntime, createMetaStore, createObjectStore } from '../../src/platform/index.js';
import { SqliteMetaStore } from '../../src/platform/meta-store/sqlite/store.js';
import { TablestoreMetaStore } from '../../src/platform/meta-store/tablestore/store.js';
import { LocalObjectStore } from '../../src/platform/object-store/local/store.js';
import { OssObjectStore } from '../../src/platform/object-store/oss/store.js';

// The factory picks every adapter from config alone: the cloud adapters with SDFLOW_OBJECT_STORE=oss,
// SDFLOW_META_STORE=tablestore and SDFLOW_FUNCTIONS=fc, and back to the local ones by changing only those settings
// (the cloud settings may stay). Building an adapter makes no request.

let dataDir: string;

beforeEach(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'sdflow-factory-'));
});

afterEach(() => {
  rmSync(dataDir, { recursive: true, force: true });
});

/** A deployment's cloud settings, none of them picking an adapter. */
const cloudSettings = () => ({
  SDFLOW_DATA_DIR: dataDir,
  ALIBABA_CLOUD_ACCESS_KEY_ID: 'LTAI5tFactoryTest',
  ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'factory-test-secret',
  SDFLOW_OSS_BUCKET: 'sdflow-factory',
  SDFLOW_OSS_REGION: 'cn-hangzhou',
  SDFLOW_TABLESTORE_ENDPOINT: 'https://sdflow.cn-hangzhou.ots.aliyuncs.com',
  SDFLOW_TABLESTORE_INSTANCE: 'sdflow',
  SDFLOW_FC_REGION: 'cn-hangzhou',
  SDFLOW_FC_ACCOUNT_ID: '1234567890123456',
  SDFLOW_FC_IMAGE: 'registry.cn-hangzhou.aliyuncs.com/sdflow/agent:1.0',
});

const CLOUD = { SDFLOW_OBJECT_STORE: 'oss', SDFLOW_META_STORE: 'tablestore', SDFLOW_FUNCTIONS: 'fc' };

describe('createObjectStore, createMetaStore, createFunctionRuntime', () => {
  it('builds the local adapters by default', async () => {
    const config = loadConfig({ SDFLOW_DATA_DIR: dataDir });
    expect(await createObjectStore(config)).toBeInstanceOf(LocalObjectStore);
    const meta = await createMetaStore(config);
    expect(meta).toBeInstanceOf(SqliteMetaStore);
    await meta.close();
    expect(await createFunctionRuntime(config)).toBeInstanceOf(LocalFunctionRuntime);
  });

  it('builds the cloud adapters from config alone', async () => {
    const config = loadConfig({ ...cloudSettings(), ...CLOUD });
    expect(await createObjectStore(config)).toBeInstanceOf(OssObjectStore);
    expect(await createMetaStore(config)).toBeInstanceOf(TablestoreMetaStore);
    expect(await createFunctionRuntime(config)).toBeInstanceOf(FcFunctionRuntime);
  });

  it('switches back to the local adapters by the adapter settings alone, the cloud settings left in place', async () => {
    const config = loadConfig({
      ...cloudSettings(),
      SDFLOW_OBJECT_STORE: 'local',
      SDFLOW_META_STORE: 'sqlite',
      SDFLOW_FUNCTIONS: 'local',
    });
    expect(await createObjectStore(config)).toBeInstanceOf(LocalObjectStore);
    const meta = await createMetaStore(config);
    expect(meta).toBeInstanceOf(SqliteMetaStore);
    await meta.close();
    expect(await createFunctionRuntime(config)).toBeInstanceOf(LocalFunctionRuntime);
  });

  it('switches the function runtime or the meta store alone with one setting', async () => {
    const localFunctions = loadConfig({ ...cloudSettings(), ...CLOUD, SDFLOW_FUNCTIONS: 'local' });
    expect(await createFunctionRuntime(localFunctions)).toBeInstanceOf(LocalFunctionRuntime);
    expect(await createObjectStore(localFunctions)).toBeInstanceOf(OssObjectStore);
    expect(await createMetaStore(localFunctions)).toBeInstanceOf(TablestoreMetaStore);

    const localMeta = loadConfig({ ...cloudSettings(), ...CLOUD, SDFLOW_META_STORE: 'sqlite' });
    const meta = await createMetaStore(localMeta);
    expect(meta).toBeInstanceOf(SqliteMetaStore);
    await meta.close();
    expect(await createFunctionRuntime(localMeta)).toBeInstanceOf(FcFunctionRuntime);
  });

  it('refuses FC functions with the local object store: instances on FC cannot reach this machine', async () => {
    const config = loadConfig({ ...cloudSettings(), ...CLOUD, SDFLOW_OBJECT_STORE: 'local' });
    expect(await createObjectStore(config)).toBeInstanceOf(LocalObjectStore);
    await expect(createFunctionRuntime(config)).rejects.toThrow(/needs SDFLOW_OBJECT_STORE=oss/);
  });
});
