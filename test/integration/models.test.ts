import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CLI_MAIN } from '../../src/cli/processes.js';
import { loadConfig } from '../../src/config/index.js';
import { functionNameFor } from '../../src/platform/functions/naming.js';
import { createMetaStore, createObjectStore } from '../../src/platform/index.js';
import type { MetaStore } from '../../src/platform/meta-store/port.js';
import type { ObjectStore } from '../../src/platform/object-store/port.js';
import { registrationWorkflowId } from '../../src/temporal.js';
import { call, DEMO_MODEL, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// Model management end to end on the real stack: registration as a workflow (uploads and object keys),
// generation with a new checkpoint and LoRA, updates that recycle instances, soft deletes, and refused input that
// leaves nothing behind.

const UPLOAD_LIMIT_MB = 1;
const LORA = 'detail-tweaker.safetensors';
const CHECKPOINT = 'custom-v1.safetensors';

let stack: Stack;
let temporal: Client;
let meta: MetaStore;
let store: ObjectStore;
let runtimeUrl: string;

const api = (method: string, path: string, body?: unknown, headers?: Record<string, string>) =>
  call(stack.url, method, path, body, headers);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const modelFile = (type: string, name: string) => join(stack.dataDir, 'objects', 'models', type, name);

/** A valid safetensors file: one u8 tensor over `dataBytes` random bytes. */
function safetensors(dataBytes = 4096): Buffer {
  const header = Buffer.from(JSON.stringify({ w: { dtype: 'U8', shape: [dataBytes], data_offsets: [0, dataBytes] } }));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  return Buffer.concat([length, header, randomBytes(dataBytes)]);
}

type Part = [field: string, value: string] | [field: string, file: Buffer, filename: string];

/** A multipart request, its parts in the order given. */
async function form(method: string, path: string, parts: Part[]) {
  const body = new FormData();
  for (const part of parts) {
    if (part.length === 2) body.append(part[0], part[1]);
    else body.append(part[0], new Blob([new Uint8Array(part[1])]), part[2]);
  }
  const res = await fetch(stack.url + path, { method, body });
  return { status: res.status, json: (await res.json()) as any, headers: res.headers };
}

const upload = (type: string, name: string, bytes: Buffer, query = '') =>
  form('POST', `/models${query}`, [
    ['type', type],
    ['name', name],
    ['file', bytes, 'upload.safetensors'],
  ]);

/** Polls a model until its registration has ended. */
async function settled(name: string, timeoutMs = 60_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await api('GET', `/models/${encodeURIComponent(name)}`);
    if (r.status !== 200 || !['registering', 'loading'].includes(r.json.status)) return r;
    if (Date.now() > until) throw new Error(`${name} still ${r.json.status} after ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

async function until(check: () => Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

async function runtimeFunction(functionName: string) {
  const res = await fetch(`${runtimeUrl}/functions/${functionName}`);
  return { status: res.status, json: (await res.json()) as any };
}

/** A GET on one of the function's instances' SD backend, through the runtime. */
async function onInstance(functionName: string, path: string, method = 'GET') {
  const res = await fetch(`${runtimeUrl}/functions/${functionName}/proxy${path}`, { method });
  expect(res.status, path).toBe(200);
  return (await res.json()) as any;
}

/** No row (of any status), no object and no leftover temp file for a refused registration. */
async function expectNothingLeft(type: string, name: string) {
  expect(await meta.getModel(name)).toBeNull();
  expect(existsSync(modelFile(type, name))).toBe(false);
  const dir = join(stack.dataDir, 'objects', 'models', type);
  const temps = existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith('.sdflow-tmp-')) : [];
  expect(temps).toEqual([]);
}

beforeAll(async () => {
  stack = await startStack({
    env: {
      SDFLOW_MAX_MODEL_UPLOAD_MB: String(UPLOAD_LIMIT_MB),
      SDFLOW_MODEL_BUSY_RETRY_S: '0.5',
      SDFLOW_REGISTRATION_SETTLE_WAIT_S: '3',
    },
  });
  const config = loadConfig({ ...process.env, ...stack.env });
  runtimeUrl = config.runtime.url;
  meta = await createMetaStore(config);
  store = await createObjectStore(config);
  temporal = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
});

afterAll(async () => {
  await temporal?.connection.close();
  await meta?.close();
  await stack?.stop();
});

describe('registering by upload', () => {
  const loraBytes = safetensors();
  const checkpointBytes = safetensors(8192);

  it('a LoRA upload answers 202 at once and reaches loaded, its etag the content hash', async () => {
    const r = await upload('lora', LORA, loraBytes);
    expect(r.status, JSON.stringify(r.json)).toBe(202);
    expect(r.json).toMatchObject({ name: LORA, type: 'lora', status: 'registering', ossPath: `models/lora/${LORA}` });
    expect(r.json.workflowId).toMatch(/^sdflow-model-/);
    const done = await settled(LORA);
    expect(done.json).toMatchObject({ status: 'loaded', etag: sha256(loraBytes) });
    expect(readFileSync(modelFile('lora', LORA)).equals(loraBytes)).toBe(true);

    // The registration is a workflow anyone can look up.
    const handle = temporal.workflow.getHandle(r.json.workflowId);
    expect(await handle.result()).toMatchObject({ name: LORA, status: 'loaded', etag: sha256(loraBytes) });
    const described = await handle.describe();
    expect(described.type).toBe('modelRegistrationWorkflow');
    expect(described.status.name).toBe('COMPLETED');
  });

  it('a checkpoint upload creates and warms its function before it is loaded', async () => {
    const r = await upload('stableDiffusion', CHECKPOINT, checkpointBytes);
    expect(r.status, JSON.stringify(r.json)).toBe(202);
    const done = await settled(CHECKPOINT);
    expect(done.json).toMatchObject({ status: 'loaded', etag: sha256(checkpointBytes), type: 'stableDiffusion' });
    const fn = await runtimeFunction(functionNameFor(CHECKPOINT));
    expect(fn.status).toBe(200);
    expect(fn.json.model).toBe(CHECKPOINT);
    expect(fn.json.instances.length).toBeGreaterThanOrEqual(1);
    expect((await api('GET', '/models?type=stableDiffusion&status=loaded')).json.map((m: any) => m.name)).toContain(
      CHECKPOINT,
    );
    expect((await api('GET', '/models?type=lora')).json.map((m: any) => m.name)).toEqual([LORA]);
  });

  it('generating with the new checkpoint works, and its function is listed', async () => {
    const r = await api('POST', '/txt2img', {
      stable_diffusion_model: CHECKPOINT,
      prompt: 'a boat',
      steps: 3,
      width: 64,
      height: 64,
    });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json.status).toBe('succeeded');
    const functions = (await api('GET', '/list/sdapi/functions')).json.functions;
    expect(functions).toContainEqual({ functionName: functionNameFor(CHECKPOINT), model: CHECKPOINT });
  });

  it('the simulator lists the new checkpoint and LoRA', async () => {
    const fn = functionNameFor(CHECKPOINT);
    const models = await onInstance(fn, '/sdapi/v1/sd-models');
    expect(models.map((m: any) => m.title)).toContain(`${CHECKPOINT} [${sha256(checkpointBytes).slice(0, 10)}]`);
    await onInstance(fn, '/sdapi/v1/refresh-loras', 'POST');
    const loras = await onInstance(fn, '/sdapi/v1/loras');
    expect(loras.map((l: any) => l.name)).toContain('detail-tweaker');
  });

  it('a prompt may name a registered LoRA (with or without extension); an unknown one is a 404 naming it', async () => {
    const body = { stable_diffusion_model: CHECKPOINT, steps: 2, width: 64, height: 64 };
    const ok = await api('POST', '/txt2img', { ...body, prompt: 'a cat <lora:detail-tweaker:0.8>' });
    expect(ok.status, JSON.stringify(ok.json)).toBe(200);
    const full = await api('POST', '/txt2img', { ...body, prompt: `x <lora:${LORA}>` }, { 'Request-Type': 'async' });
    expect(full.status, JSON.stringify(full.json)).toBe(200);
    await waitForFinal(stack.url, full.json.taskId);

    const unknown = await api('POST', '/txt2img', { ...body, prompt: 'a cat <lora:no-such-lora:0.8>' });
    expect(unknown.status).toBe(404);
    expect(unknown.json.message).toBe('prompt: unknown LoRA "no-such-lora"');
    const negative = await api('POST', '/txt2img', { ...body, prompt: 'a', negative_prompt: '<lora:bad-hands:1>' });
    expect(negative.status).toBe(404);
    expect(negative.json.message).toContain('negative_prompt: unknown LoRA "bad-hands"');
  });

  it('an update with new bytes re-registers the checkpoint and recycles its instances', async () => {
    const fn = functionNameFor(CHECKPOINT);
    const before = (await runtimeFunction(fn)).json.instances.map((i: any) => i.id);
    expect(before.length).toBeGreaterThanOrEqual(1);

    const same = await form('PUT', `/models/${CHECKPOINT}`, [['file', checkpointBytes, CHECKPOINT]]);
    expect(same.status, JSON.stringify(same.json)).toBe(200);
    expect(same.json).toMatchObject({ status: 'loaded', etag: sha256(checkpointBytes) });
    expect(same.json.workflowId).toBeUndefined();

    const newBytes = safetensors(16384);
    const r = await form('PUT', `/models/${CHECKPOINT}`, [['file', newBytes, CHECKPOINT]]);
    expect(r.status, JSON.stringify(r.json)).toBe(202);
    expect(r.json.status).toBe('registering');
    const done = await settled(CHECKPOINT);
    expect(done.json).toMatchObject({ status: 'loaded', etag: sha256(newBytes) });

    const after = (await runtimeFunction(fn)).json.instances.filter((i: any) => i.state !== 'stopping');
    expect(after.length).toBeGreaterThanOrEqual(1);
    for (const instance of after) expect(before).not.toContain(instance.id);
    // The instance now serving has the new weights loaded.
    expect((await onInstance(fn, '/sdapi/v1/options')).sd_checkpoint_hash).toBe(sha256(newBytes));

    const gen = await api('POST', '/txt2img', { stable_diffusion_model: CHECKPOINT, steps: 2, width: 64, height: 64 });
    expect(gen.status, JSON.stringify(gen.json)).toBe(200);
  });

  it('a task accepted before an update waits for the new weights and runs with them, rather than failing', async () => {
    // With no worker, the task is accepted (the checkpoint is loaded) but cannot start, and the update's
    // registration cannot finish: when a worker returns, the task finds the checkpoint re-registering.
    await stack.workers[0].stop();
    const accepted = await api(
      'POST',
      '/txt2img',
      { stable_diffusion_model: CHECKPOINT, prompt: 'patient', steps: 2, width: 64, height: 64 },
      { 'Request-Type': 'async' },
    );
    expect(accepted.status, JSON.stringify(accepted.json)).toBe(200);
    const newBytes = safetensors(8192);
    const put = await form('PUT', `/models/${CHECKPOINT}`, [['file', newBytes, CHECKPOINT]]);
    expect(put.status, JSON.stringify(put.json)).toBe(202);
    // New requests meanwhile are told plainly to come back.
    const meanwhile = await api('POST', '/txt2img', { stable_diffusion_model: CHECKPOINT, steps: 2 });
    expect(meanwhile.status).toBe(409);
    expect(meanwhile.json.message).toContain('registering');
    stack.workers[0] = await stack.startWorker();

    const final = await waitForFinal(stack.url, accepted.json.taskId, 60_000);
    expect(final.status, JSON.stringify(final)).toBe('succeeded');
    expect((await settled(CHECKPOINT)).json).toMatchObject({ status: 'loaded', etag: sha256(newBytes) });
    // It asked while the update ran, waited, and rendered with the new weights.
    const history = await temporal.workflow.getHandle(accepted.json.taskId).fetchHistory();
    // The function is asked for by a local activity, whose failures the history records as markers.
    const failures = (history.events ?? []).map(
      (e) => e.markerRecordedEventAttributes?.failure?.message ?? e.activityTaskFailedEventAttributes?.failure?.message,
    );
    expect(failures.some((m) => /is (registering|loading)/.test(m ?? ''))).toBe(true);
    expect(final.info).toContain(`Model hash: ${sha256(newBytes).slice(0, 10)}`);
  });
});

describe('registering from an object key', () => {
  it('copies the object to the canonical key and waits for it with ?wait=true', async () => {
    const bytes = safetensors(2048);
    await store.put('uploads/x.safetensors', bytes);
    const r = await api('POST', '/models?wait=true', {
      type: 'controlNet',
      name: 'control-x.safetensors',
      ossPath: 'uploads/x.safetensors',
    });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json).toMatchObject({
      status: 'loaded',
      ossPath: 'models/controlNet/control-x.safetensors',
      etag: sha256(bytes),
    });
    expect(readFileSync(modelFile('controlNet', 'control-x.safetensors')).equals(bytes)).toBe(true);
    // The source is the admin's and stays.
    expect(await store.head('uploads/x.safetensors')).not.toBeNull();
  });

  it('a VAE registered from its canonical key loads; an update naming another object re-registers it', async () => {
    const first = safetensors(1024);
    await store.put('models/sdVae/soft.safetensors', first);
    const r = await api('POST', '/models', {
      type: 'sdVae',
      name: 'soft.safetensors',
      ossPath: 'models/sdVae/soft.safetensors',
    });
    expect(r.status, JSON.stringify(r.json)).toBe(202);
    expect((await settled('soft.safetensors')).json).toMatchObject({ status: 'loaded', etag: sha256(first) });

    const unchanged = await api('PUT', '/models/soft.safetensors', {});
    expect(unchanged.status).toBe(200);
    expect(unchanged.json.status).toBe('loaded');

    // Any checkpoint may use a VAE: a changed one recycles every function's instances.
    const live = async () =>
      (await runtimeFunction(functionNameFor(CHECKPOINT))).json.instances
        .filter((i: any) => i.state !== 'stopping')
        .map((i: any) => i.id);
    const before = await live();
    expect(before.length).toBeGreaterThanOrEqual(1);
    const second = safetensors(1024);
    await store.put('uploads/soft-v2.safetensors', second);
    const updated = await api('PUT', '/models/soft.safetensors?wait=true', { ossPath: 'uploads/soft-v2.safetensors' });
    expect(updated.status, JSON.stringify(updated.json)).toBe(200);
    expect(updated.json).toMatchObject({ status: 'loaded', etag: sha256(second) });
    expect(readFileSync(modelFile('sdVae', 'soft.safetensors')).equals(second)).toBe(true);
    for (const id of await live()) expect(before).not.toContain(id);
  });

  it('a request may name a registered VAE (with or without extension); an unknown one is a 404 naming it', async () => {
    const body = { stable_diffusion_model: DEMO_MODEL, prompt: 'x', steps: 1, width: 64, height: 64 };
    for (const vae of ['soft.safetensors', 'soft']) {
      const r = await api('POST', '/txt2img', { ...body, sd_vae: vae });
      expect(r.status, JSON.stringify(r.json)).toBe(200);
      const info = JSON.parse((await api('GET', `/tasks/${r.json.taskId}/result`)).json.info);
      expect(info.infotexts[0], vae).toMatch(/VAE: soft/);
    }
    for (const vae of ['Automatic', 'None']) {
      expect((await api('POST', '/txt2img', { ...body, override_settings: { sd_vae: vae } })).status, vae).toBe(200);
    }
    const tasksBefore = (await meta.listTasks({ limit: 1000 })).items.length;
    const unknown = await api('POST', '/txt2img', { ...body, sd_vae: 'sotf' });
    expect(unknown.status).toBe(404);
    expect(unknown.json.message).toBe('sd_vae: unknown VAE "sotf"');
    const viaSettings = await api('POST', '/txt2img', { ...body, override_settings: { sd_vae: 'no-such.pt' } });
    expect(viaSettings.status).toBe(404);
    expect(viaSettings.json.message).toBe('override_settings.sd_vae: unknown VAE "no-such.pt"');
    const notText = await api('POST', '/txt2img', { ...body, override_settings: { sd_vae: 7 } });
    expect(notText.status).toBe(400);
    expect(notText.json.message).toBe('override_settings.sd_vae: must be a string');
    // Refused at submit: no task was created, so no GPU slot was taken.
    expect((await meta.listTasks({ limit: 1000 })).items.length).toBe(tasksBefore);
  });
});

describe('changing type', () => {
  it('moves the file to the new canonical key and removes the old one once loaded', async () => {
    const bytes = safetensors();
    expect((await upload('lora', 'mover.safetensors', bytes, '?wait=true')).status).toBe(200);
    const r = await api('PUT', '/models/mover.safetensors?wait=true', { type: 'controlNet' });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json).toMatchObject({
      type: 'controlNet',
      status: 'loaded',
      ossPath: 'models/controlNet/mover.safetensors',
      etag: sha256(bytes),
    });
    expect(readFileSync(modelFile('controlNet', 'mover.safetensors')).equals(bytes)).toBe(true);
    expect(existsSync(modelFile('lora', 'mover.safetensors'))).toBe(false);
  });
});

describe('a registration in progress', () => {
  it('refuses an update (409), and a delete cancels it without bringing the model back', async () => {
    const name = 'abandoned.safetensors';
    const r = await upload('stableDiffusion', name, safetensors());
    expect(r.status).toBe(202);
    // The checkpoint's instance takes a while to start, so the registration is still running here.
    const busy = await api('PUT', `/models/${name}`, {});
    expect(busy.status).toBe(409);
    expect(busy.json.message).toMatch(new RegExp(`^model ${name} is (registering|loading)`));

    expect((await api('DELETE', `/models/${name}`)).status).toBe(200);
    await temporal.workflow
      .getHandle(r.json.workflowId)
      .result()
      .catch(() => undefined);
    expect((await api('GET', `/models/${name}`)).status).toBe(404);
    expect((await meta.getModel(name))?.status).toBe('deleted');
  });
});

describe('an earlier registration winding down', () => {
  // The row says loaded while the earlier registration's workflow has not closed yet (its last steps). A stand-in
  // for it: a workflow of that id on a task queue no worker polls, so it stays open until the test ends it.
  const name = 'winding.safetensors';
  const lingering = async () => {
    const workflowId = registrationWorkflowId(stack.env.SDFLOW_DEPLOYMENT ?? 'default', name);
    return temporal.workflow.start('modelRegistrationWorkflow', {
      workflowId,
      taskQueue: 'sdflow-nobody-polls-this',
      args: [],
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    });
  };

  it('an update waits for it to close, then registers', async () => {
    expect((await upload('lora', name, safetensors(), '?wait=true')).status).toBe(200);
    const earlier = await lingering();
    setTimeout(() => void earlier.terminate('done winding down'), 1000);
    const started = Date.now();
    const updated = await form('PUT', `/models/${name}?wait=true`, [['file', safetensors(2048), 'v2.safetensors']]);
    expect(updated.status, JSON.stringify(updated.json)).toBe(200);
    expect(updated.json.status).toBe('loaded');
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  it('past SDFLOW_REGISTRATION_SETTLE_WAIT_S the update answers 409; once it closed, an update loads', async () => {
    const earlier = await lingering();
    try {
      const updated = await form('PUT', `/models/${name}`, [['file', safetensors(4096), 'v3.safetensors']]);
      expect(updated.status, JSON.stringify(updated.json)).toBe(409);
      expect(updated.json.message).toMatch(/still winding down/);
      // The upload already replaced the file, so the model says it is not servable as it stands, and why.
      expect(await meta.getModel(name)).toMatchObject({ status: 'failed', message: expect.stringMatching(/winding/) });
    } finally {
      await earlier.terminate('test over');
    }
    const v4 = safetensors(4096);
    const again = await form('PUT', `/models/${name}?wait=true`, [['file', v4, 'v4.safetensors']]);
    expect(again.status, JSON.stringify(again.json)).toBe(200);
    expect(again.json).toMatchObject({ status: 'loaded', etag: sha256(v4) });
  });
});

describe('a broken file', () => {
  it('ends as failed with the reason, and no function is created for it', async () => {
    // A header length of 1 MB in a file of 264 bytes.
    const garbage = Buffer.concat([Buffer.from([0, 0, 0x10, 0, 0, 0, 0, 0]), randomBytes(256)]);
    const r = await upload('stableDiffusion', 'broken.safetensors', garbage);
    expect(r.status).toBe(202);
    const done = await settled('broken.safetensors');
    expect(done.json.status).toBe('failed');
    expect(done.json.message).toMatch(/header length .* runs past the end of the file/);
    expect((await runtimeFunction(functionNameFor('broken.safetensors'))).status).toBe(404);
    const functions = (await api('GET', '/list/sdapi/functions')).json.functions;
    expect(functions.map((f: any) => f.model)).not.toContain('broken.safetensors');
    await expect(temporal.workflow.getHandle(r.json.workflowId).result()).rejects.toThrow(/failed/i);

    // A generation naming it is refused: it is not loaded.
    const gen = await api('POST', '/txt2img', { stable_diffusion_model: 'broken.safetensors', prompt: 'x' });
    expect(gen.status).toBe(409);
  });

  it('waited for, answers 422 with the reason; a fixed file then loads through PUT', async () => {
    const notJson = Buffer.alloc(8 + 16, 0x20);
    notJson.writeBigUInt64LE(16n);
    notJson.write('not json at all!', 8);
    const r = await upload('lora', 'bad-lora.safetensors', notJson, '?wait=true');
    expect(r.status, JSON.stringify(r.json)).toBe(422);
    expect(r.json).toMatchObject({ status: 'failed', message: 'not a safetensors file: its header is not JSON' });

    const fixed = await form('PUT', '/models/bad-lora.safetensors?wait=true', [['file', safetensors(), 'x']]);
    expect(fixed.status, JSON.stringify(fixed.json)).toBe(200);
    expect(fixed.json.status).toBe('loaded');
    expect(fixed.json.message).toBeUndefined();
  });
});

describe('deleting', () => {
  it('is soft: reads and new generations get 404, a running task finishes', async () => {
    const name = 'short-lived.safetensors';
    expect((await upload('stableDiffusion', name, safetensors(), '?wait=true')).status).toBe(200);
    const running = await api(
      'POST',
      '/txt2img',
      { stable_diffusion_model: name, steps: 60, width: 512, height: 512 },
      { 'Request-Type': 'async' },
    );
    expect(running.status).toBe(200);
    await until(async () => (await api('GET', `/tasks/${running.json.taskId}/progress`)).json.status === 'running');

    const del = await api('DELETE', `/models/${name}`);
    expect(del.status, JSON.stringify(del.json)).toBe(200);
    expect(del.json).toMatchObject({ name, status: 'deleted' });
    expect((await api('GET', `/models/${name}`)).status).toBe(404);
    expect((await api('DELETE', `/models/${name}`)).status).toBe(404);
    expect((await api('GET', '/models')).json.map((m: any) => m.name)).not.toContain(name);
    expect((await api('GET', '/models?status=deleted')).json.map((m: any) => m.name)).toContain(name);
    const gen = await api('POST', '/txt2img', { stable_diffusion_model: name, prompt: 'x' });
    expect(gen.status).toBe(404);
    expect(gen.json.message).toContain(name);

    expect((await waitForFinal(stack.url, running.json.taskId)).status).toBe('succeeded');
    // The file stays for the tasks that were running.
    expect(existsSync(modelFile('stableDiffusion', name))).toBe(true);
  });

  it('a deleted LoRA is unknown to prompts; the name may be registered again', async () => {
    expect((await api('DELETE', `/models/${LORA}`)).status).toBe(200);
    const gen = await api('POST', '/txt2img', {
      stable_diffusion_model: DEMO_MODEL,
      prompt: '<lora:detail-tweaker:1>',
    });
    expect(gen.status).toBe(404);
    expect(gen.json.message).toContain('unknown LoRA "detail-tweaker"');

    const again = await upload('lora', LORA, safetensors(), '?wait=true');
    expect(again.status, JSON.stringify(again.json)).toBe(200);
    expect(again.json.status).toBe('loaded');
  });
});

describe('refused input leaves nothing behind', () => {
  it('an unknown type is a 400 naming type', async () => {
    await store.put('uploads/y.safetensors', safetensors());
    const json = await api('POST', '/models', {
      type: 'hypernetwork',
      name: 'y.safetensors',
      ossPath: 'uploads/y.safetensors',
    });
    expect(json.status).toBe(400);
    expect(json.json.message).toMatch(/^type: must be one of stableDiffusion, sdVae, lora, controlNet/);
    const multipart = await upload('hypernetwork', 'y.safetensors', safetensors());
    expect(multipart.status).toBe(400);
    expect(multipart.json.message).toMatch(/^type: /);
    expect(await meta.getModel('y.safetensors')).toBeNull();
  });

  it('a form without a file, or with the file before the fields, is a 400 naming file', async () => {
    const missing = await form('POST', '/models', [
      ['type', 'lora'],
      ['name', 'nofile.safetensors'],
    ]);
    expect(missing.status).toBe(400);
    expect(missing.json.message).toMatch(/^file: is required/);
    await expectNothingLeft('lora', 'nofile.safetensors');

    const first = await form('POST', '/models', [
      ['file', safetensors(), 'early.safetensors'],
      ['type', 'lora'],
      ['name', 'early.safetensors'],
    ]);
    expect(first.status).toBe(400);
    expect(first.json.message).toBe('file: must come after the type and name field(s) in the form');
    await expectNothingLeft('lora', 'early.safetensors');

    const late = await form('POST', '/models', [
      ['type', 'lora'],
      ['file', safetensors(), 'late.safetensors'],
      ['name', 'late.safetensors'],
    ]);
    expect(late.status).toBe(400);
    expect(late.json.message).toMatch(/^file: must come after the name field/);

    // A field after the file refuses the whole form: the file is not committed.
    const before = (await api('GET', `/models/${CHECKPOINT}`)).json;
    const trailing = await form('PUT', `/models/${CHECKPOINT}`, [
      ['file', safetensors(), 'x.safetensors'],
      ['type', 'lora'],
    ]);
    expect(trailing.status).toBe(400);
    expect(trailing.json.message).toBe('type: must come before the file field in the form');
    expect((await api('GET', `/models/${CHECKPOINT}`)).json).toEqual(before);
    expect(sha256(readFileSync(modelFile('stableDiffusion', CHECKPOINT)))).toBe(before.etag);
  });

  it('a duplicate name is a 409, and the registered model is untouched', async () => {
    const before = (await api('GET', `/models/${CHECKPOINT}`)).json;
    const r = await upload('lora', CHECKPOINT, safetensors());
    expect(r.status).toBe(409);
    expect(r.json.message).toBe(`name: a model named ${CHECKPOINT} already exists`);
    const json = await api('POST', '/models', { type: 'lora', name: CHECKPOINT, ossPath: 'uploads/y.safetensors' });
    expect(json.status).toBe(409);
    expect((await api('GET', `/models/${CHECKPOINT}`)).json).toEqual(before);
    expect(existsSync(modelFile('lora', CHECKPOINT))).toBe(false);
  });

  it('traversal or a bad key in ossPath, or a path in name, is a 400 naming the field', async () => {
    for (const ossPath of ['../x', 'models/../../etc/passwd', '/etc/passwd', 'http://example.com/x', 'a\\b']) {
      const r = await api('POST', '/models', { type: 'lora', name: 'trav.safetensors', ossPath });
      expect(r.status, ossPath).toBe(400);
      expect(r.json.message, ossPath).toMatch(/^ossPath: /);
    }
    const missing = await api('POST', '/models', { type: 'lora', name: 'trav.safetensors', ossPath: 'uploads/none' });
    expect(missing.status).toBe(400);
    expect(missing.json.message).toBe('ossPath: no object at uploads/none');
    for (const name of ['../evil.safetensors', 'a/b.safetensors', '..', '.hidden', 'x\u0001y']) {
      const r = await upload('lora', name, safetensors());
      expect(r.status, name).toBe(400);
      expect(r.json.message, name).toMatch(/^name: /);
    }
    await expectNothingLeft('lora', 'trav.safetensors');
    expect(existsSync(join(stack.dataDir, 'objects', 'models', 'evil.safetensors'))).toBe(false);
  });

  it(`an upload over the limit (${UPLOAD_LIMIT_MB} MB) is a 413 naming it, with no row and no file left`, async () => {
    const big = safetensors(2 * 1024 * 1024);
    const r = await upload('lora', 'too-big.safetensors', big);
    expect(r.status).toBe(413);
    expect(r.json.message).toContain('SDFLOW_MAX_MODEL_UPLOAD_MB');
    await expectNothingLeft('lora', 'too-big.safetensors');

    // An update over the limit leaves the model as it was.
    const before = (await api('GET', `/models/${CHECKPOINT}`)).json;
    const put = await form('PUT', `/models/${CHECKPOINT}`, [['file', big, CHECKPOINT]]);
    expect(put.status).toBe(413);
    expect((await api('GET', `/models/${CHECKPOINT}`)).json).toEqual(before);
    expect(sha256(readFileSync(modelFile('stableDiffusion', CHECKPOINT)))).toBe(before.etag);
  });

  it('updating or deleting an unknown model is a 404', async () => {
    expect((await api('PUT', '/models/nope.safetensors', {})).status).toBe(404);
    expect((await api('DELETE', '/models/nope.safetensors')).status).toBe(404);
  });
});

describe('the CLI', () => {
  const sdflow = (...args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((res) => {
      execFile(process.execPath, [CLI_MAIN, ...args, '--url', stack.url], (err, stdout, stderr) =>
        res({ code: err ? Number(err.code) : 0, stdout, stderr }),
      );
    });

  it('registers from a local file and from a key, updates and deletes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdflow-cli-models-'));
    try {
      const first = safetensors();
      const second = safetensors();
      writeFileSync(join(dir, 'a.safetensors'), first);
      writeFileSync(join(dir, 'b.safetensors'), second);

      const reg = await sdflow(
        'models',
        'register',
        'cli-lora.safetensors',
        '--type',
        'lora',
        '--file',
        join(dir, 'a.safetensors'),
        '--wait',
        '--json',
      );
      expect(reg.code, reg.stderr).toBe(0);
      expect(JSON.parse(reg.stdout)).toMatchObject({
        name: 'cli-lora.safetensors',
        status: 'loaded',
        etag: sha256(first),
      });

      const upd = await sdflow(
        'models',
        'update',
        'cli-lora.safetensors',
        '--file',
        join(dir, 'b.safetensors'),
        '--wait',
        '--json',
      );
      expect(upd.code, upd.stderr).toBe(0);
      expect(JSON.parse(upd.stdout)).toMatchObject({ status: 'loaded', etag: sha256(second) });

      const copy = await sdflow(
        'models',
        'register',
        'cli-cn.safetensors',
        '--type',
        'controlNet',
        '--oss-path',
        'models/lora/cli-lora.safetensors',
        '--wait',
      );
      expect(copy.code, copy.stderr).toBe(0);
      expect(copy.stdout).toMatch(/^status\s+loaded$/m);

      const del = await sdflow('models', 'delete', 'cli-lora.safetensors');
      expect(del.code, del.stderr).toBe(0);
      expect(del.stdout.trim()).toBe('deleted cli-lora.safetensors');
      const again = await sdflow('models', 'delete', 'cli-lora.safetensors');
      expect(again.code).toBe(1);
      expect(again.stderr).toContain('unknown model cli-lora.safetensors (HTTP 404)');

      expect((await sdflow('models', 'register', 'x.safetensors', '--type', 'lora')).code).toBe(2);
      expect((await sdflow('models', 'register', 'x.safetensors', '--type', 'nope', '--file', 'a')).code).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the contract document', () => {
  it('/openapi.json lists the model routes with their request schemas', async () => {
    const doc = (await api('GET', '/openapi.json')).json;
    const post = doc.paths['/models'].post;
    expect(post.requestBody.content['application/json'].schema.required).toEqual(['type', 'name', 'ossPath']);
    expect(post.requestBody.content['multipart/form-data'].schema.properties.file.format).toBe('binary');
    expect(doc.paths['/models/{name}'].put).toBeDefined();
    expect(doc.paths['/models/{name}'].delete).toBeDefined();
  });
});
