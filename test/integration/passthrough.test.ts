import { randomBytes } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { functionNameFor } from '../../src/platform/functions/naming.js';
import { createMetaStore } from '../../src/platform/index.js';
import type { MetaStore } from '../../src/platform/meta-store/port.js';
import { call, DEMO_MODEL, DEMO_MODEL_2, download, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// The passthrough on the real stack with keys on: GETs straight to an agent of the chosen checkpoint, other methods
// as recorded tasks (sync, Task-Flag, async), SD's 4xx kept, an upstream 5xx answered 502, admin-only routes, paths
// outside the prefixes. A stub WebUI (an external SDFLOW_SD_URL set through batch update) supplies what the
// simulator never does: 5xx answers, and a non-drop-in route that answers with images.

const USER = { authorization: 'Bearer alicesecret1' };
const ADMIN = { authorization: 'Bearer opssecret1' };
const STUB_MODEL = 'stub-webui.safetensors';

let stack: Stack;
let meta: MetaStore;
let stub: Server;
let stubUrl: string;
let tinyPng: string;
const stubHits: string[] = [];

const api = (method: string, path: string, body?: unknown, headers: Record<string, string> = USER) =>
  call(stack.url, method, path, body, headers);

/** An external "WebUI": pinned to the stub checkpoint, failing on purpose, and answering one route with images. */
function startStub(): Promise<void> {
  stub = createServer((req, res) => {
    const route = `${req.method} ${new URL(req.url ?? '/', 'http://stub').pathname}`;
    stubHits.push(route);
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    req.resume();
    req.on('end', () => {
      if (route === 'GET /sdapi/v1/options') send(200, { sd_model_checkpoint: `${STUB_MODEL} [0123456789]` });
      else if (route === 'GET /sdapi/v1/progress') send(200, { progress: 0, eta_relative: 0 });
      else if (route === 'POST /sdapi/v1/interrupt') send(200, {});
      else if (route === 'GET /sdapi/v1/teapot') send(418, { detail: "I'm a teapot" });
      else if (route === 'POST /controlnet/detect') send(200, { images: [tinyPng], info: 'detected' });
      else send(500, { error: 'RuntimeError', detail: '', body: '', errors: 'stub failure: CUDA out of memory' });
    });
  });
  return new Promise((resolve) => {
    stub.listen(0, '127.0.0.1', () => {
      stubUrl = `http://127.0.0.1:${(stub.address() as AddressInfo).port}`;
      resolve();
    });
  });
}

/** A GET whose path is sent exactly as written. */
function rawGet(path: string): Promise<{ status: number; body: string }> {
  const url = new URL(stack.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, headers: USER }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  tinyPng = (
    await sharp({ create: { width: 20, height: 12, channels: 3, background: '#884422' } })
      .png()
      .toBuffer()
  ).toString('base64');
  await startStub();
  stack = await startStack({
    env: {
      SDFLOW_API_KEYS: 'alice:user:alicesecret1,ops:admin:opssecret1',
      SDFLOW_INVOKE_MAX_ATTEMPTS: '2',
      SDFLOW_INVOKE_RETRY_INITIAL_S: '0.2',
    },
  });
  meta = await createMetaStore(loadConfig({ ...process.env, ...stack.env }));
  const now = new Date().toISOString();
  await meta.putModel({
    type: 'stableDiffusion',
    name: STUB_MODEL,
    ossPath: `models/stableDiffusion/${STUB_MODEL}`,
    etag: 'stub',
    status: 'loaded',
    registeredTime: now,
    lastModificationTime: now,
  });
});

afterAll(async () => {
  await meta?.close();
  await stack?.stop();
  await new Promise((resolve) => stub?.close(resolve));
});

describe('GET passthrough', () => {
  it('GET /sdapi/v1/sd-models lists the demo checkpoints in A1111 shape', async () => {
    const r = await api('GET', '/sdapi/v1/sd-models');
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    const titles = r.json.map((m: { title: string }) => m.title);
    for (const model of [DEMO_MODEL, DEMO_MODEL_2]) {
      expect(titles.some((t: string) => t.startsWith(`${model} [`))).toBe(true);
    }
    expect(r.json[0]).toEqual(
      expect.objectContaining({ title: expect.any(String), model_name: expect.any(String), hash: expect.any(String) }),
    );
    expect(r.headers.get('taskId')).toBeNull();
  });

  it('?model= picks that checkpoint’s function; the default checkpoint otherwise', async () => {
    const other = await api('GET', `/sdapi/v1/samplers?model=${DEMO_MODEL_2}`);
    expect(other.status).toBe(200);
    expect(other.json.map((s: { name: string }) => s.name)).toContain('Euler a');
    const functions = (await api('GET', '/list/sdapi/functions')).json.functions;
    expect(functions).toContainEqual({ functionName: functionNameFor(DEMO_MODEL_2), model: DEMO_MODEL_2 });
    expect((await api('GET', '/controlnet/version')).json).toEqual({ version: 2 });
  });

  it('an unknown checkpoint is 404; a path outside the prefixes is a JSON 404; dot segments are refused', async () => {
    expect((await api('GET', '/sdapi/v1/samplers?model=nope.safetensors')).status).toBe(404);
    for (const path of ['/sdapi/v2/options', '/internal/ping', '/sim/stats']) {
      const r = await api('GET', path);
      expect(r.status, path).toBe(404);
      expect(r.json.message).toMatch(/no route/);
    }
    // Another spelling of a drop-in route never reaches SD around the route's checks.
    const spelled = await api('POST', '/sdapi/v1/txt%32img', { prompt: 'x', steps: 5000 });
    expect(spelled.status).toBe(400);
    expect(spelled.json.message).toMatch(/another spelling of \/sdapi\/v1\/txt2img/);
    // Sent as is: fetch would resolve the dot segments before sending.
    for (const path of ['/sdapi/v1/%2e%2e/%2e%2e/functions', '/sdapi/v1/../../functions']) {
      const sneaky = await rawGet(path);
      expect(sneaky.status, path).toBe(400);
      expect(sneaky.body).toMatch(/path: must not hold \. or \.\. segments/);
    }
  });
});

describe('POST passthrough as a task', () => {
  let generated: { taskId: string; png: Buffer };

  beforeAll(async () => {
    const r = await api('POST', '/txt2img', {
      stable_diffusion_model: DEMO_MODEL,
      prompt: 'a red kite',
      steps: 2,
      width: 64,
      height: 64,
      seed: 5,
    });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    generated = { taskId: r.json.taskId, png: await download(r.json.ossUrl[0]) };
  });

  it('with Task-Flag: SD’s answer, the taskId header, and the recorded result at /tasks/{id}/result', async () => {
    const r = await api(
      'POST',
      '/sdapi/v1/png-info',
      { image: generated.png.toString('base64') },
      {
        ...USER,
        'Task-Flag': 'true',
      },
    );
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json.info).toMatch(/^a red kite/);
    expect(String(r.json.parameters.Seed)).toBe('5');
    const taskId = r.headers.get('taskId');
    expect(taskId).toBeTruthy();
    const result = await api('GET', `/tasks/${taskId}/result`);
    expect(result.json).toMatchObject({ taskId, status: 'succeeded', images: [] });
    const recorded = JSON.parse(result.json.info);
    expect(recorded.status).toBe(200);
    expect(recorded.body.info).toBe(r.json.info);
    expect(result.json.parameters).toEqual({ method: 'POST', path: '/sdapi/v1/png-info' });
  });

  it('async: {status, taskId} (and the estimate) at once, then the result', async () => {
    const r = await api(
      'POST',
      '/sdapi/v1/png-info',
      { image: generated.png.toString('base64') },
      {
        ...USER,
        'Request-Type': 'async',
      },
    );
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ status: 'waiting', taskId: expect.any(String) });
    // Besides, only the estimate of a waiting task (scheduling.test.ts checks its figures; it is left out when the
    // semaphore does not answer within SDFLOW_QUERY_TIMEOUT_MS).
    const extra = Object.keys(r.json).filter((k) => k !== 'status' && k !== 'taskId');
    expect(extra.filter((k) => k !== 'estimatedStartS' && k !== 'estimatedFinishS')).toEqual([]);
    expect(r.headers.get('taskId')).toBe(r.json.taskId);
    const final = await waitForFinal(stack.url, r.json.taskId, 60_000, USER);
    expect(final.status).toBe('succeeded');
    expect(JSON.parse(final.info).body.info).toMatch(/^a red kite/);
  });

  it('a large body travels as an object key, not in the task params', async () => {
    const noisy = randomBytes(160 * 160 * 3);
    const big = await sharp(noisy, { raw: { width: 160, height: 160, channels: 3 } })
      .png()
      .toBuffer();
    expect(big.toString('base64').length).toBeGreaterThan(64 * 1024);
    const r = await api(
      'POST',
      '/sdapi/v1/png-info',
      { image: big.toString('base64') },
      {
        ...USER,
        'Task-Flag': 'true',
      },
    );
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json).toMatchObject({ info: '', items: {} });
    const task = await meta.getTask(r.headers.get('taskId')!);
    expect(task?.params.body).toBeUndefined();
    expect(task?.params.bodyKey).toMatch(/^inputs\/alice\//);
  });

  it('keeps a 4xx from SD (an image SD cannot read gets 422, not 200 or 500)', async () => {
    const r = await api('POST', '/sdapi/v1/png-info', { image: 'not an image' });
    expect(r.status, JSON.stringify(r.json)).toBe(422);
    expect(r.json.detail).toBeDefined();
  });

  it('routes that change an instance are refused to a user key with 403, allowed to an admin', async () => {
    for (const [method, path] of [
      ['POST', '/sdapi/v1/reload-checkpoint'],
      ['POST', '/sdapi/v1/unload-checkpoint'],
      ['POST', '/sdapi/v1/server-kill'],
      ['POST', '/sdapi/v1/%72eload-checkpoint'],
    ]) {
      const r = await api(method, path, {});
      expect(r.status, path).toBe(403);
    }
    expect((await api('POST', '/sdapi/v1/reload-checkpoint', undefined, ADMIN)).status).toBe(200);
    expect((await api('GET', '/sdapi/v1/samplers')).status).toBe(200);
    expect((await api('GET', '/sdapi/v1/sd-models', undefined, {})).status).toBe(401);
  });

  it('an unknown checkpoint named in the body is 404', async () => {
    const r = await api('POST', '/sdapi/v1/png-info', { stable_diffusion_model: 'nope.safetensors', image: 'x' });
    expect(r.status).toBe(404);
    const title = await api('POST', '/sdapi/v1/png-info', {
      override_settings: { sd_model_checkpoint: 'nope.safetensors [abcdef0123]' },
    });
    expect(title.status).toBe(404);
    expect(title.json.message).toMatch(/override_settings\.sd_model_checkpoint/);
  });
});

describe('an upstream WebUI that fails, and one that answers with images', () => {
  beforeAll(async () => {
    // The function of the stub checkpoint is created by the batch update, pointed at the stub WebUI.
    const r = await call(
      stack.url,
      'POST',
      '/batch_update_sd_resource',
      { models: [STUB_MODEL], env: { SDFLOW_SD_URL: stubUrl } },
      ADMIN,
    );
    expect(r.status, JSON.stringify(r.json)).toBe(200);
  });

  it('a GET answered 5xx upstream is 502; a 4xx is kept', async () => {
    const failed = await api('GET', `/sdapi/v1/memory?model=${STUB_MODEL}`);
    expect(failed.status, JSON.stringify(failed.json)).toBe(502);
    expect(failed.json.message).toMatch(/SD answered 500: stub failure/);
    const teapot = await api('GET', `/sdapi/v1/teapot?model=${STUB_MODEL}`);
    expect(teapot.status, JSON.stringify(teapot.json)).toBe(418);
    expect(teapot.json).toEqual({ detail: "I'm a teapot" });
  });

  it('a POST answered 5xx is retried, then fails: 502 with the reason', async () => {
    const before = stubHits.filter((h) => h === 'POST /sdapi/v1/png-info').length;
    const r = await api(
      'POST',
      '/sdapi/v1/png-info',
      { stable_diffusion_model: STUB_MODEL, image: tinyPng },
      {
        ...USER,
        'Task-Flag': 'true',
      },
    );
    expect(r.status, JSON.stringify(r.json)).toBe(502);
    expect(r.json).toMatchObject({ status: 'failed', taskId: r.headers.get('taskId') });
    expect(r.json.message).toMatch(/SD answered 500: stub failure/);
    expect(stubHits.filter((h) => h === 'POST /sdapi/v1/png-info').length - before).toBe(2);
    expect((await api('GET', `/tasks/${r.json.taskId}/result`)).json.status).toBe('failed');
  });

  it("base64 images in SD's answer are offloaded to the store: keys in the body, plus signed URLs", async () => {
    const r = await api(
      'POST',
      '/controlnet/detect',
      { stable_diffusion_model: STUB_MODEL, controlnet_module: 'canny' },
      {
        ...USER,
        'Task-Flag': 'true',
      },
    );
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    const taskId = r.headers.get('taskId');
    expect(r.json.images).toEqual([`images/alice/${taskId}_1.png`]);
    expect(r.json.info).toBe('detected');
    expect(r.json.ossUrl).toHaveLength(1);
    const png = await download(r.json.ossUrl[0]);
    expect(png.equals(Buffer.from(tinyPng, 'base64'))).toBe(true);
    const result = await api('GET', `/tasks/${taskId}/result`);
    expect(result.json.images).toEqual([`images/alice/${taskId}_1.png`]);
  });
});
