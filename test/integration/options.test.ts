import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { createMetaStore } from '../../src/platform/index.js';
import type { MetaStore } from '../../src/platform/meta-store/port.js';
import { call, DEMO_MODEL, DEMO_MODEL_2, type Stack, startStack } from '../helpers/stack.js';

// Per-user options on the real stack, keys on: stored in versions, applied to that user's generations as
// override_settings (the request's own keys win, the checkpoint never comes from options), chosen by the `version`
// header, and never carried over to another user's request on the same instance.

const ALICE = { authorization: 'Bearer alicesecret1' };
const BOB = { authorization: 'Bearer bobsecret01' };
const CLI = resolve('dist/cli/main.js');

let stack: Stack;
let meta: MetaStore;

const api = (method: string, path: string, body?: unknown, headers: Record<string, string> = ALICE) =>
  call(stack.url, method, path, body, headers);

/** Generates one small image and returns the task's A1111 info and its recorded params. */
async function generate(
  headers: Record<string, string>,
  extra: Record<string, unknown> = {},
  model = DEMO_MODEL,
): Promise<{ info: Record<string, any>; params: Record<string, unknown> }> {
  const r = await api(
    'POST',
    '/txt2img',
    { stable_diffusion_model: model, prompt: 'settings', steps: 2, width: 64, height: 64, seed: 3, ...extra },
    headers,
  );
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  const result = await api('GET', `/tasks/${r.json.taskId}/result`, undefined, headers);
  const task = await meta.getTask(r.json.taskId);
  return { info: JSON.parse(result.json.info), params: task!.params };
}

function sdflow(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, SDFLOW_URL: stack.url, SDFLOW_API_KEY: 'bobsecret01' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  return new Promise((res) => child.on('close', (code) => res({ code, stdout, stderr })));
}

beforeAll(async () => {
  stack = await startStack({
    env: {
      SDFLOW_API_KEYS: 'alice:user:alicesecret1,bob:user:bobsecret01',
      // One instance, so alice's and bob's requests share it.
      SDFLOW_FUNCTION_MAX_INSTANCES: '1',
    },
  });
  meta = await createMetaStore(loadConfig({ ...process.env, ...stack.env }));
});

afterAll(async () => {
  await meta?.close();
  await stack?.stop();
});

describe('per-user options', () => {
  it('a user with no options has version 0', async () => {
    expect((await api('GET', '/options')).json).toEqual({ version: 0, data: {} });
    expect((await api('GET', '/options/1')).status).toBe(404);
  });

  it('stores a version and applies it to that user’s generations', async () => {
    const r = await api('POST', '/options', { data: { CLIP_stop_at_last_layers: 2, eta_noise_seed_delta: 31337 } });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json).toMatchObject({ version: 1, data: { CLIP_stop_at_last_layers: 2, eta_noise_seed_delta: 31337 } });
    const { info, params } = await generate(ALICE);
    expect(info.clip_skip).toBe(2);
    expect(info.infotexts[0]).toMatch(/Clip skip: 2/);
    expect(info.infotexts[0]).toMatch(/ENSD: 31337/);
    expect(params.sdflow_options_version).toBe(1);
    expect(params.override_settings).toEqual({ CLIP_stop_at_last_layers: 2, eta_noise_seed_delta: 31337 });
  });

  it("the request's own override_settings keys win over the options", async () => {
    const { info, params } = await generate(ALICE, { override_settings: { CLIP_stop_at_last_layers: 3 } });
    expect(info.clip_skip).toBe(3);
    expect(info.infotexts[0]).toMatch(/ENSD: 31337/);
    expect(params.override_settings).toEqual({ CLIP_stop_at_last_layers: 3, eta_noise_seed_delta: 31337 });
  });

  it("another user's requests on the same instance get none of them", async () => {
    const { info, params } = await generate(BOB);
    expect(info.clip_skip).toBe(1);
    expect(info.infotexts[0]).not.toMatch(/ENSD/);
    expect(params.sdflow_options_version).toBeUndefined();
    expect((await api('GET', '/options', undefined, BOB)).json).toEqual({ version: 0, data: {} });
  });

  it('a second POST is version 2; GET reads the latest or a version; the version header picks one', async () => {
    const second = await api('POST', '/options', { data: { CLIP_stop_at_last_layers: 4 } });
    expect(second.json.version).toBe(2);
    expect((await api('GET', '/options')).json).toEqual({ version: 2, data: { CLIP_stop_at_last_layers: 4 } });
    expect((await api('GET', '/options/1')).json).toEqual({
      version: 1,
      data: { CLIP_stop_at_last_layers: 2, eta_noise_seed_delta: 31337 },
    });
    expect((await generate(ALICE)).info.clip_skip).toBe(4);
    const pinned = await generate({ ...ALICE, version: '1' });
    expect(pinned.info.clip_skip).toBe(2);
    expect(pinned.params.sdflow_options_version).toBe(1);

    const unknown = await api('POST', '/txt2img', { stable_diffusion_model: DEMO_MODEL }, { ...ALICE, version: '9' });
    expect(unknown.status).toBe(404);
    expect(unknown.json.message).toMatch(/version header: you have no options version 9/);
    const bad = await api('POST', '/txt2img', { stable_diffusion_model: DEMO_MODEL }, { ...ALICE, version: 'x' });
    expect(bad.status).toBe(400);
    expect(bad.json.message).toMatch(/version header/);
  });

  it('never chooses the checkpoint: sd_model_checkpoint in options is stored but not applied', async () => {
    await api('POST', '/options', { data: { sd_model_checkpoint: DEMO_MODEL_2, CLIP_stop_at_last_layers: 2 } });
    const { info, params } = await generate(ALICE);
    expect(info.sd_model_name).toBe(DEMO_MODEL.replace(/\.safetensors$/, ''));
    expect(params.override_settings).toEqual({ CLIP_stop_at_last_layers: 2 });
  });

  it('refuses malformed options with 400 naming the field', async () => {
    const r = await api('POST', '/options', { data: 'CLIP_stop_at_last_layers=2' });
    expect(r.status).toBe(400);
    expect(r.json.message).toMatch(/^data: must be an object/);
    expect((await api('GET', '/options/0')).status).toBe(400);
  });

  it('a VAE in the options must be registered: the refusal says it came from the options', async () => {
    const stored = await api('POST', '/options', { data: { sd_vae: 'gone-vae.safetensors' } });
    const r = await api('POST', '/txt2img', { stable_diffusion_model: DEMO_MODEL, prompt: 'x', steps: 1 });
    expect(r.status).toBe(404);
    expect(r.json.message).toBe(
      `override_settings.sd_vae (from your options, version ${stored.json.version}): unknown VAE "gone-vae.safetensors"`,
    );
    // The request's own setting wins, and is the one checked.
    const own = await api('POST', '/txt2img', {
      stable_diffusion_model: DEMO_MODEL,
      prompt: 'x',
      steps: 1,
      width: 64,
      height: 64,
      override_settings: { sd_vae: 'Automatic' },
    });
    expect(own.status, JSON.stringify(own.json)).toBe(200);
  });

  it('sdflow options set | get', async () => {
    const set = await sdflow([
      'options',
      'set',
      '--set',
      'CLIP_stop_at_last_layers=2',
      '--set',
      'sd_vae=None',
      '--json',
    ]);
    expect(set.code, set.stderr).toBe(0);
    expect(JSON.parse(set.stdout)).toMatchObject({ version: 1, data: { CLIP_stop_at_last_layers: 2, sd_vae: 'None' } });
    const got = await sdflow(['options', 'get', '1']);
    expect(got.code, got.stderr).toBe(0);
    expect(got.stdout).toMatch(/^version\s+1/m);
    expect(got.stdout).toMatch(/"CLIP_stop_at_last_layers": 2/);
  });
});
