import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { a1111OptionDefaults } from '../../src/a1111/options.js';
import { loadConfig } from '../../src/config/index.js';
import { functionNameFor } from '../../src/platform/functions/naming.js';
import { createMetaStore } from '../../src/platform/index.js';
import type { MetaStore } from '../../src/platform/meta-store/port.js';
import { call, DEMO_MODEL, DEMO_MODEL_2, type Stack, startStack } from '../helpers/stack.js';

// What the A1111 drop-in answers from sdflow's own records, keys on: the caller's options (which choose the checkpoint
// of their drop-in generations), the model lists from the registry, the function's own WebUI settings (an admin
// route), and a passthrough GET run as a task with `Task-Flag: true`.

const ALICE = { authorization: 'Bearer alicesecret1' };
const BOB = { authorization: 'Bearer bobsecret01' };
const OPS = { authorization: 'Bearer opssecret1' };
const NOT_LOADED = 'warming-up.safetensors';

let stack: Stack;
let meta: MetaStore;
let runtimeUrl: string;

const api = (method: string, path: string, body?: unknown, headers: Record<string, string> = ALICE) =>
  call(stack.url, method, path, body, headers);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const stem = (name: string) => name.replace(/\.safetensors$/, '');
const titleOf = (name: string) =>
  `${name} [${sha256(readFileSync(join(stack.dataDir, 'objects', 'models', 'stableDiffusion', name))).slice(0, 10)}]`;

/** A valid safetensors file: one u8 tensor over `dataBytes` random bytes. */
function safetensors(dataBytes = 1024): Buffer {
  const header = Buffer.from(JSON.stringify({ w: { dtype: 'U8', shape: [dataBytes], data_offsets: [0, dataBytes] } }));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  return Buffer.concat([length, header, randomBytes(dataBytes)]);
}

async function upload(type: string, name: string, bytes: Buffer) {
  const body = new FormData();
  body.append('type', type);
  body.append('name', name);
  body.append('file', new Blob([new Uint8Array(bytes)]), 'upload.safetensors');
  const res = await fetch(`${stack.url}/models?wait=true`, { method: 'POST', body, headers: OPS });
  return { status: res.status, json: (await res.json()) as any };
}

/** The ids of every instance the runtime runs, of every function. */
async function instanceIds(): Promise<string[]> {
  const functions = (await (await fetch(`${runtimeUrl}/functions`)).json()) as { instances?: { id: string }[] }[];
  return functions.flatMap((f) => (f.instances ?? []).map((i) => i.id)).sort();
}

/** A small drop-in txt2img; returns the checkpoint its infotext names and the task's recorded params. */
async function dropInTxt2img(headers: Record<string, string>, extra: Record<string, unknown> = {}) {
  const r = await api(
    'POST',
    '/sdapi/v1/txt2img',
    { prompt: 'switch', steps: 1, width: 64, height: 64, ...extra },
    headers,
  );
  expect(r.status, JSON.stringify(r.json).slice(0, 300)).toBe(200);
  const info = JSON.parse(r.json.info);
  const task = await meta.getTask(r.headers.get('taskId')!);
  return { model: /Model: ([^,]+)/.exec(info.infotexts[0])?.[1], info, params: task!.params };
}

beforeAll(async () => {
  stack = await startStack({
    env: { SDFLOW_API_KEYS: 'alice:user:alicesecret1,bob:user:bobsecret01,ops:admin:opssecret1' },
  });
  const config = loadConfig({ ...process.env, ...stack.env });
  runtimeUrl = config.runtime.url;
  meta = await createMetaStore(config);
  const now = new Date().toISOString();
  await meta.putModel({
    type: 'stableDiffusion',
    name: NOT_LOADED,
    ossPath: `models/stableDiffusion/${NOT_LOADED}`,
    etag: 'e'.repeat(64),
    status: 'loading',
    registeredTime: now,
    lastModificationTime: now,
  });
});

afterAll(async () => {
  await meta?.close();
  await stack?.stop();
});

describe('model lists from the registry', () => {
  it('list loaded models in A1111 shapes, with object keys for paths, and start no instance', async () => {
    expect(await instanceIds()).toEqual([]);
    const lora = await upload('lora', 'fresh-lora.safetensors', safetensors());
    expect(lora.status, JSON.stringify(lora.json)).toBe(200);
    // A registration that fails is never listed.
    const broken = await upload('lora', 'broken-lora.safetensors', Buffer.from('not a safetensors file'));
    expect(broken.status).toBe(422);

    const loras = await api('GET', '/sdapi/v1/loras');
    expect(loras.json).toEqual([
      { name: 'fresh-lora', alias: 'fresh-lora', path: 'models/lora/fresh-lora.safetensors', metadata: {} },
    ]);
    const models = await api('GET', '/sdapi/v1/sd-models', undefined, BOB);
    expect(models.json).toContainEqual({
      title: titleOf(DEMO_MODEL),
      model_name: stem(DEMO_MODEL),
      hash: titleOf(DEMO_MODEL).slice(-11, -1),
      sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
      filename: `models/stableDiffusion/${DEMO_MODEL}`,
      config: null,
    });
    // Only loaded checkpoints: one still loading is not servable.
    expect(models.json.map((m: { model_name: string }) => m.model_name).sort()).toEqual(
      [stem(DEMO_MODEL), stem(DEMO_MODEL_2)].sort(),
    );
    expect((await api('GET', '/sdapi/v1/sd-vae')).json).toEqual([]);
    expect((await api('GET', '/sdapi/v1/hypernetworks')).json).toEqual([]);
    expect((await api('GET', '/sdapi/v1/embeddings')).json).toEqual({ loaded: {}, skipped: {} });
    expect((await api('GET', '/controlnet/model_list')).json).toEqual({ model_list: [] });
    for (const list of ['checkpoints', 'vae', 'loras', 'embeddings']) {
      const refreshed = await api('POST', `/sdapi/v1/refresh-${list}`, undefined, BOB);
      expect(refreshed.status, list).toBe(200);
      expect(refreshed.json, list).toBeNull();
    }
    // Lists sdflow answers itself are not tasks, whatever the header says.
    const flagged = await api('GET', '/sdapi/v1/loras', undefined, { ...ALICE, 'Task-Flag': 'true' });
    expect(flagged.headers.get('taskId')).toBeNull();
    expect(await instanceIds()).toEqual([]);
  });
});

describe("the caller's options", () => {
  it("GET answers A1111's whole option set, with the default checkpoint's title, whatever ?model= says", async () => {
    const r = await api('GET', `/sdapi/v1/options?model=${DEMO_MODEL_2}`);
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      sd_model_checkpoint: titleOf(DEMO_MODEL),
      samples_format: 'png',
      sd_vae: 'Automatic',
    });
    expect(Object.keys(r.json).sort()).toEqual(Object.keys(a1111OptionDefaults()).sort());
    expect(r.json.send_seed).toBe(true);
  });

  it('a client switches checkpoints between two drop-in generations with POST /sdapi/v1/options', async () => {
    const set = await api('POST', '/sdapi/v1/options', { sd_model_checkpoint: stem(DEMO_MODEL_2) });
    expect(set.status, JSON.stringify(set.json)).toBe(200);
    expect(set.json).toBeNull();
    expect((await api('GET', '/sdapi/v1/options')).json.sd_model_checkpoint).toBe(titleOf(DEMO_MODEL_2));
    expect((await dropInTxt2img(ALICE)).model).toBe(stem(DEMO_MODEL_2));

    await api('POST', '/sdapi/v1/options', { sd_model_checkpoint: titleOf(DEMO_MODEL) });
    expect((await dropInTxt2img(ALICE)).model).toBe(stem(DEMO_MODEL));
    // A checkpoint the request names itself still wins.
    const named = await dropInTxt2img(ALICE, { override_settings: { sd_model_checkpoint: DEMO_MODEL_2 } });
    expect(named.model).toBe(stem(DEMO_MODEL_2));
  });

  it('are per caller: another user keeps the default checkpoint', async () => {
    await api('POST', '/sdapi/v1/options', { sd_model_checkpoint: DEMO_MODEL_2 });
    expect((await api('GET', '/sdapi/v1/options', undefined, BOB)).json.sd_model_checkpoint).toBe(titleOf(DEMO_MODEL));
    expect((await dropInTxt2img(BOB)).model).toBe(stem(DEMO_MODEL));
    expect((await dropInTxt2img(ALICE)).model).toBe(stem(DEMO_MODEL_2));
  });

  it('merge into new versions of the same options as /options; a null puts a setting back to its default', async () => {
    await api('POST', '/sdapi/v1/options', { CLIP_stop_at_last_layers: 2 });
    const stored = (await api('GET', '/options')).json;
    expect(stored.data).toEqual({ sd_model_checkpoint: DEMO_MODEL_2, CLIP_stop_at_last_layers: 2 });
    expect((await api('GET', '/sdapi/v1/options')).json.CLIP_stop_at_last_layers).toBe(2);
    const rendered = await dropInTxt2img(ALICE);
    expect(rendered.info.infotexts[0]).toMatch(/Clip skip: 2/);
    expect(rendered.params.override_settings).toEqual({ CLIP_stop_at_last_layers: 2 });

    await api('POST', '/sdapi/v1/options', { CLIP_stop_at_last_layers: null });
    expect((await api('GET', '/sdapi/v1/options')).json.CLIP_stop_at_last_layers).toBe(1);
    expect((await api('GET', '/options')).json).toEqual({
      version: stored.version + 1,
      data: { sd_model_checkpoint: DEMO_MODEL_2 },
    });
    // Setting what is already set stores no new version.
    await api('POST', '/sdapi/v1/options', { sd_model_checkpoint: DEMO_MODEL_2 });
    expect((await api('GET', '/options')).json.version).toBe(stored.version + 1);
  });

  it('refuse an unknown checkpoint (404), one not loaded (409) and an unknown key (422), applying nothing', async () => {
    const before = (await api('GET', '/options')).json;
    const unknown = await api('POST', '/sdapi/v1/options', { sd_model_checkpoint: 'nope [0123456789]' });
    expect(unknown.status).toBe(404);
    expect(unknown.json.message).toMatch(/sd_model_checkpoint: unknown checkpoint nope \[0123456789\]/);
    const loading = await api('POST', '/sdapi/v1/options', { sd_model_checkpoint: NOT_LOADED });
    expect(loading.status).toBe(409);
    expect(loading.json.message).toMatch(/warming-up\.safetensors is loading/);
    const key = await api('POST', '/sdapi/v1/options', { CLIP_stop_at_last_layers: 3, no_such_setting: true });
    expect(key.status).toBe(422);
    expect(key.json.detail).toMatch(/no_such_setting/);
    expect((await api('GET', '/options')).json).toEqual(before);
  });

  it('platform routes still require stable_diffusion_model', async () => {
    const r = await api('POST', '/txt2img', { prompt: 'x', steps: 1 });
    expect(r.status).toBe(400);
    expect(r.json.message).toMatch(/^stable_diffusion_model: is required/);
  });

  it('touch no instance, so every read agrees however many instances run', async () => {
    const before = await instanceIds();
    expect(before.length).toBeGreaterThan(0);
    await api('POST', '/sdapi/v1/options', { sd_model_checkpoint: DEMO_MODEL, eta_noise_seed_delta: 31337 });
    const reads = await Promise.all(Array.from({ length: 8 }, () => api('GET', '/sdapi/v1/options')));
    for (const read of reads) {
      expect(read.json).toMatchObject({ sd_model_checkpoint: titleOf(DEMO_MODEL), eta_noise_seed_delta: 31337 });
    }
    expect(await instanceIds()).toEqual(before);
  });
});

describe("a function's own WebUI settings", () => {
  it('an admin sets them for every instance of the function, new ones included; a user may not', async () => {
    const path = `/functions/${DEMO_MODEL}/options`;
    expect((await api('POST', path, { CLIP_stop_at_last_layers: 3 })).status).toBe(403);
    const set = await api('POST', path, { CLIP_stop_at_last_layers: 3 }, OPS);
    expect(set.status, JSON.stringify(set.json)).toBe(200);
    expect(set.json).toEqual({
      status: 'success',
      functionName: functionNameFor(DEMO_MODEL),
      model: DEMO_MODEL,
      options: { CLIP_stop_at_last_layers: 3 },
    });
    expect((await api('GET', path, undefined, BOB)).json.options).toEqual({ CLIP_stop_at_last_layers: 3 });
    // Bob has no options of his own: his generation runs with the function's settings.
    expect((await dropInTxt2img(BOB)).info.infotexts[0]).toMatch(/Clip skip: 3/);
    // Kept for instances started later.
    await api('POST', '/restart', {}, OPS);
    expect((await dropInTxt2img(BOB)).info.infotexts[0]).toMatch(/Clip skip: 3/);

    await api('POST', path, { CLIP_stop_at_last_layers: null }, OPS);
    expect((await dropInTxt2img(BOB)).info.infotexts[0]).not.toMatch(/Clip skip/);
  });

  it('refuses the checkpoint, unknown settings and unknown functions, naming them', async () => {
    const path = `/functions/${DEMO_MODEL}/options`;
    const checkpoint = await api('POST', path, { sd_model_checkpoint: DEMO_MODEL_2 }, OPS);
    expect(checkpoint.status).toBe(400);
    expect(checkpoint.json.message).toMatch(/^sd_model_checkpoint: /);
    const unknown = await api('POST', path, { no_such_setting: 1 }, OPS);
    expect(unknown.status).toBe(400);
    expect(unknown.json.message).toMatch(/no_such_setting/);
    expect((await api('POST', '/functions/nope.safetensors/options', {}, OPS)).status).toBe(404);
  });
});

describe('Task-Flag on a passthrough GET', () => {
  it('runs as a recorded task behind the cap, with the taskId header', async () => {
    const r = await api('GET', '/sdapi/v1/samplers', undefined, { ...ALICE, 'Task-Flag': 'true' });
    expect(r.status, JSON.stringify(r.json).slice(0, 200)).toBe(200);
    expect(r.json.map((s: { name: string }) => s.name)).toContain('Euler a');
    const taskId = r.headers.get('taskId');
    expect(taskId).toBeTruthy();
    const result = await api('GET', `/tasks/${taskId}/result`);
    expect(result.json).toMatchObject({
      status: 'succeeded',
      parameters: { method: 'GET', path: '/sdapi/v1/samplers' },
    });
    expect(JSON.parse(result.json.info).status).toBe(200);
    // Without the header it is a plain read, not a task.
    const plain = await api('GET', '/sdapi/v1/samplers');
    expect(plain.status).toBe(200);
    expect(plain.headers.get('taskId')).toBeNull();
  });
});

describe("the simulator's options and scripts, through the stack", () => {
  it("an instance's simulator answers A1111 1.10.1's option set, and refuses an unknown key with 422", async () => {
    const fn = functionNameFor(DEMO_MODEL);
    const onInstance = (method: string, path: string, body?: unknown) =>
      fetch(`${runtimeUrl}/functions/${fn}/proxy${path}`, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    const options = (await (await onInstance('GET', '/sdapi/v1/options')).json()) as Record<string, unknown>;
    expect(Object.keys(options).sort()).toEqual(Object.keys(a1111OptionDefaults()).sort());
    expect(options.send_seed).toBe(true);
    const refused = await onInstance('POST', '/sdapi/v1/options', { no_such_setting: 1 });
    expect(refused.status).toBe(422);
    expect(((await refused.json()) as { detail: string }).detail).toBe('unknown option: no_such_setting');
  });

  it("lists A1111's scripts; an unknown script is SD's 422; SD upscale renders at its scale", async () => {
    const scripts = await api('GET', '/sdapi/v1/scripts');
    expect(scripts.json.img2img).toEqual(expect.arrayContaining(['sd upscale', 'loopback', 'x/y/z plot']));
    expect(scripts.json.txt2img).toEqual(expect.arrayContaining(['prompt matrix', 'x/y/z plot']));

    const source = await api('POST', '/txt2img', {
      stable_diffusion_model: DEMO_MODEL,
      prompt: 'to upscale',
      steps: 1,
      width: 64,
      height: 96,
    });
    const unknown = await api('POST', '/sdapi/v1/img2img', {
      init_images: [source.json.images[0]],
      steps: 1,
      script_name: 'Ultimate SD upscale',
    });
    expect(unknown.status, JSON.stringify(unknown.json)).toBe(422);
    expect(unknown.json.detail).toMatch(/Script 'Ultimate SD upscale' not found/);

    // script_args: [_, overlap, upscaler (an index or a name, any case), scale]; each side floor(side × 2.5 / 8) × 8.
    const upscaled = await api('POST', '/img2img', {
      stable_diffusion_model: DEMO_MODEL,
      init_images: [source.json.images[0]],
      steps: 1,
      n_iter: 2,
      script_name: 'SD upscale',
      script_args: [null, 8, 'lanczos', 2.5],
    });
    expect(upscaled.status, JSON.stringify(upscaled.json)).toBe(200);
    expect(upscaled.json.images).toHaveLength(2);
    const png = Buffer.from(await (await fetch(upscaled.json.ossUrl[0])).arrayBuffer());
    expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([160, 240]);
  });
});
