import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/api/app.js';
import { parseKeys } from '../../src/api/auth.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/logging.js';
import type { FunctionRuntime } from '../../src/platform/functions/port.js';
import { createMetaStore, createObjectStore } from '../../src/platform/index.js';
import type { MetaStore } from '../../src/platform/meta-store/port.js';

// The model routes in process, with keys on: changing the registry needs an admin key, each refusal comes before
// anything is stored, and a refused upload of any size leaves no row and no file behind. Temporal is a stub that is
// down, so a registration that gets as far as starting its workflow is rolled back.

const ADMIN = 'admin-secret-1';
const USER = 'user-secret-1';

let dir: string;
let server: Server;
let base: string;
let meta: MetaStore;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sdflow-model-routes-'));
  const config = loadConfig({ SDFLOW_DATA_DIR: dir, SDFLOW_LOG_LEVEL: 'silent', SDFLOW_MAX_MODEL_UPLOAD_MB: '1' });
  meta = await createMetaStore(config);
  await meta.putModel({
    type: 'stableDiffusion',
    name: 'live.safetensors',
    ossPath: 'models/stableDiffusion/live.safetensors',
    etag: 'e',
    status: 'loaded',
    registeredTime: '2024-01-01T00:00:00.000Z',
    lastModificationTime: '2024-01-01T00:00:00.000Z',
  });
  const temporalDown = {
    workflow: {
      start: async () => {
        throw new Error('temporal is down');
      },
    },
  };
  const app = createApp({
    config,
    logger: createLogger('test', 'silent'),
    meta,
    store: await createObjectStore(config),
    temporal: temporalDown as unknown as Client,
    functions: {} as FunctionRuntime,
    keys: parseKeys(`ops:admin:${ADMIN},ann:user:${USER}`, 'test'),
    urlSecret: Buffer.alloc(32),
  });
  server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await meta.close();
  rmSync(dir, { recursive: true, force: true });
});

const as = (secret: string | undefined, method: string, path: string, body?: string | FormData, type?: string) =>
  fetch(base + path, {
    method,
    body,
    headers: {
      ...(secret ? { authorization: `Bearer ${secret}` } : {}),
      ...(type ? { 'content-type': type } : {}),
    },
  });

describe('model routes with keys on', () => {
  const json = JSON.stringify({ type: 'lora', name: 'x.safetensors', ossPath: 'uploads/x.safetensors' });
  const form = () => {
    const f = new FormData();
    f.append('type', 'lora');
    f.append('name', 'x.safetensors');
    f.append('file', new Blob([new Uint8Array(16)]), 'x.safetensors');
    return f;
  };

  it('a user key may read the registry but not change it (403)', async () => {
    expect((await as(USER, 'GET', '/models')).status).toBe(200);
    for (const [method, path, body, type] of [
      ['POST', '/models', json, 'application/json'],
      ['POST', '/models', form(), undefined],
      ['PUT', '/models/x.safetensors', '{}', 'application/json'],
      ['DELETE', '/models/x.safetensors', undefined, undefined],
    ] as const) {
      const res = await as(USER, method, path, body, type);
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(((await res.json()) as { message: string }).message).toBe('this route needs an admin key');
    }
    expect(await meta.getModel('x.safetensors')).toBeNull();
  });

  it('no key is a 401; an admin key gets as far as validation', async () => {
    expect((await as(undefined, 'POST', '/models', json, 'application/json')).status).toBe(401);
    const bad = await as(ADMIN, 'POST', '/models', JSON.stringify({ type: 'lora', name: 'a/b' }), 'application/json');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { message: string }).message).toMatch(/^name: .*; ossPath: is required/);
    const missing = await as(ADMIN, 'POST', '/models', json, 'application/json');
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { message: string }).message).toBe('ossPath: no object at uploads/x.safetensors');
    const notForm = await as(ADMIN, 'POST', '/models', 'x', 'multipart/form-data');
    expect(notForm.status).toBe(400);
    expect(((await notForm.json()) as { message: string }).message).toMatch(/^body: not a multipart form/);
  });
});

describe('refused uploads', () => {
  type Part = [string, string] | [string, number];
  const send = async (method: string, path: string, parts: Part[]) => {
    const body = new FormData();
    for (const [name, value] of parts) {
      if (typeof value === 'string') body.append(name, value);
      else body.append(name, new Blob([new Uint8Array(value)]), 'm.safetensors');
    }
    const res = await as(ADMIN, method, path, body);
    return { status: res.status, message: ((await res.json()) as { message: string }).message };
  };

  it('of any size, in any malformed shape, answer 4xx and leave no row and no file', async () => {
    // Sizes around the parser's buffering and over the 1 MB limit, so failures land before, during and after the
    // store has started writing.
    for (const size of [10, 70_000, 300_000, 2_000_000]) {
      const over = size > 1024 * 1024;
      const answers = await Promise.all([
        send('POST', '/models', [
          ['file', size],
          ['type', 'lora'],
          ['name', 'a.safetensors'],
        ]),
        send('POST', '/models', [
          ['type', 'lora'],
          ['file', size],
          ['name', 'b.safetensors'],
        ]),
        send('POST', '/models', [
          ['type', 'bogus'],
          ['name', 'c.safetensors'],
          ['file', size],
        ]),
        send('PUT', '/models/live.safetensors', [
          ['file', size],
          ['type', 'lora'],
        ]),
      ]);
      expect(answers.map((a) => a.status)).toEqual([400, 400, 400, over ? 413 : 400]);
      expect(answers[0].message).toBe('file: must come after the type and name field(s) in the form');
      expect(answers[3].message).toMatch(over ? /SDFLOW_MAX_MODEL_UPLOAD_MB/ : /^type: must come before the file/);
    }
    const rows = (await meta.listModels()).map((m) => `${m.name}:${m.status}`);
    expect(rows).toEqual(['live.safetensors:loaded']);
    expect(existsSync(join(dir, 'objects', 'models', 'lora'))).toBe(false);
  });

  it('a registration whose workflow cannot start answers 503 and is rolled back', async () => {
    const r = await send('POST', '/models', [
      ['type', 'sdVae'],
      ['name', 'v.safetensors'],
      ['file', 1000],
    ]);
    expect(r.status).toBe(503);
    expect(r.message).toBe('the registration of v.safetensors could not be started; try again');
    expect(await meta.getModel('v.safetensors')).toBeNull();
    expect(readdirSync(join(dir, 'objects', 'models', 'sdVae'))).toEqual([]);
  });
});
