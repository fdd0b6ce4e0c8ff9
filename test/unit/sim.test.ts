import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTextChunks } from '../../src/sim/png.js';
import { startSimServer } from '../../src/sim/server.js';
import { maxOverlap, readBusyIntervals } from '../../src/sim/stats.js';

// The simulator, in-process on port 0, seen the way an A1111 client sees it. Two instances: a fast one (5 ms per
// step at 512x512) for shapes and determinism, and a slower one (25 ms per step) for progress, interrupt, skip
// and the queue lock. Timing assertions are loose: the machine is small and shared.

type Json = Record<string, any>;
interface Sim {
  port: number;
  close(): Promise<void>;
}

const root = mkdtempSync(join(tmpdir(), 'sdflow-sim-test-'));
const modelsDir = join(root, 'models');
const fastStats = join(root, 'stats-fast');
const slowStats = join(root, 'stats-slow');
const ALPHA = Buffer.from('alpha checkpoint bytes '.repeat(100));
const BETA = Buffer.from('beta checkpoint bytes '.repeat(50));
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

let fast: Sim;
let slow: Sim;

function writeModels() {
  for (const d of ['stableDiffusion', 'sdVae', 'lora', 'controlNet'])
    mkdirSync(join(modelsDir, d), { recursive: true });
  writeFileSync(join(modelsDir, 'stableDiffusion', 'alpha.safetensors'), ALPHA);
  writeFileSync(join(modelsDir, 'stableDiffusion', 'beta.ckpt'), BETA);
  writeFileSync(join(modelsDir, 'stableDiffusion', 'alpha.yaml'), 'not a model');
  writeFileSync(join(modelsDir, 'sdVae', 'vae-ft-mse.safetensors'), 'vae');
  writeFileSync(join(modelsDir, 'lora', 'detail-tweaker.safetensors'), 'lora');
  writeFileSync(join(root, 'elsewhere.safetensors'), 'linked lora');
  symlinkSync(join(root, 'elsewhere.safetensors'), join(modelsDir, 'lora', 'linked.safetensors'));
  writeFileSync(join(modelsDir, 'controlNet', 'control_v11p_sd15_canny.pth'), 'cn');
}

async function call(sim: Sim, method: string, path: string, body?: unknown, raw?: string) {
  const res = await fetch(`http://127.0.0.1:${sim.port}${path}`, {
    method,
    headers: body !== undefined || raw !== undefined ? { 'content-type': 'application/json' } : {},
    body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

async function ok(sim: Sim, method: string, path: string, body?: unknown): Promise<any> {
  const r = await call(sim, method, path, body);
  if (r.status !== 200) throw new Error(`${method} ${path} -> ${r.status} ${r.text.slice(0, 300)}`);
  return r.json;
}

const txt2img = (sim: Sim, body: Json) => ok(sim, 'POST', '/sdapi/v1/txt2img', body);
const img2img = (sim: Sim, body: Json) => ok(sim, 'POST', '/sdapi/v1/img2img', body);
const png = (b64: string) => Buffer.from(b64, 'base64');
const pngSize = (buf: Buffer) => ({ width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const stats = (sim: Sim) => ok(sim, 'GET', '/sim/stats');

/** Polls until `cond` holds on the progress answer; returns it. */
async function waitForProgress(sim: Sim, cond: (p: any) => boolean, limitMs = 20_000) {
  const until = Date.now() + limitMs;
  while (Date.now() < until) {
    const p = await ok(sim, 'GET', '/sdapi/v1/progress');
    if (cond(p)) return p;
    await sleep(15);
  }
  throw new Error('progress condition not reached');
}

beforeAll(async () => {
  writeModels();
  fast = await startSimServer({
    host: '127.0.0.1',
    port: 0,
    stepMs: 5,
    loadMs: 50,
    vaeMs: 5,
    modelsDir,
    statsDir: fastStats,
  });
  slow = await startSimServer({
    host: '127.0.0.1',
    port: 0,
    stepMs: 25,
    loadMs: 50,
    vaeMs: 5,
    modelsDir,
    statsDir: slowStats,
  });
});

afterAll(async () => {
  await Promise.all([fast?.close(), slow?.close()]);
  rmSync(root, { recursive: true, force: true });
});

describe('sim: lists and models', () => {
  it('lists checkpoints with A1111 titles `name [hash10]` and sha256 of the file', async () => {
    const models = await ok(fast, 'GET', '/sdapi/v1/sd-models');
    expect(models.map((m: Json) => m.title)).toEqual([
      `alpha.safetensors [${sha(ALPHA).slice(0, 10)}]`,
      `beta.ckpt [${sha(BETA).slice(0, 10)}]`,
    ]);
    expect(models[0]).toEqual({
      title: `alpha.safetensors [${sha(ALPHA).slice(0, 10)}]`,
      model_name: 'alpha',
      hash: sha(ALPHA).slice(0, 10),
      sha256: sha(ALPHA),
      filename: join(modelsDir, 'stableDiffusion', 'alpha.safetensors'),
      config: null,
    });
  });

  it('lists VAEs, LoRAs, ControlNet models, samplers, schedulers, upscalers and the rest', async () => {
    expect(await ok(fast, 'GET', '/sdapi/v1/sd-vae')).toEqual([
      { model_name: 'vae-ft-mse.safetensors', filename: join(modelsDir, 'sdVae', 'vae-ft-mse.safetensors') },
    ]);
    const loras = await ok(fast, 'GET', '/sdapi/v1/loras');
    expect(loras).toEqual([
      { name: 'detail-tweaker', alias: 'detail-tweaker', path: expect.any(String), metadata: {} },
      { name: 'linked', alias: 'linked', path: join(modelsDir, 'lora', 'linked.safetensors'), metadata: {} },
    ]);
    const cn = await ok(fast, 'GET', '/controlnet/model_list');
    expect(cn.model_list).toHaveLength(1);
    expect(cn.model_list[0]).toMatch(/^control_v11p_sd15_canny \[[0-9a-f]{8}\]$/);
    expect(await ok(fast, 'GET', '/controlnet/version')).toEqual({ version: 2 });
    const samplers = await ok(fast, 'GET', '/sdapi/v1/samplers');
    expect(samplers).toContainEqual({
      name: 'Euler a',
      aliases: ['k_euler_a', 'k_euler_ancestral'],
      options: { uses_ensd: 'True' },
    });
    const schedulers = await ok(fast, 'GET', '/sdapi/v1/schedulers');
    expect(schedulers.map((s: Json) => s.label)).toContain('Karras');
    const upscalers = await ok(fast, 'GET', '/sdapi/v1/upscalers');
    expect(upscalers.map((u: Json) => u.name)).toEqual(
      expect.arrayContaining(['None', 'Lanczos', 'Nearest', 'ESRGAN_4x', 'R-ESRGAN 4x+']),
    );
    expect(Object.keys(upscalers[0]).sort()).toEqual(['model_name', 'model_path', 'model_url', 'name', 'scale']);
    expect(await ok(fast, 'GET', '/sdapi/v1/embeddings')).toEqual({ loaded: {}, skipped: {} });
    expect(await ok(fast, 'GET', '/internal/ping')).toEqual({});
    expect((await ok(fast, 'GET', '/sdapi/v1/cmd-flags')).api).toBe(true);
    expect((await ok(fast, 'GET', '/sdapi/v1/memory')).ram.total).toBeGreaterThan(0);
    const options = await ok(fast, 'GET', '/sdapi/v1/options');
    expect(options).toMatchObject({ samples_format: 'png', sd_vae: 'Automatic', CLIP_stop_at_last_layers: 1 });
  });

  it('answers progress as A1111 does when idle', async () => {
    const p = await ok(fast, 'GET', '/sdapi/v1/progress?skip_current_image=true');
    expect(p).toMatchObject({ progress: 0, eta_relative: 0, current_image: null, textinfo: null });
    expect(p.state).toMatchObject({ job_count: 0, skipped: false, job: '' });
    expect(Object.keys(p.state)).toEqual(
      expect.arrayContaining([
        'skipped',
        'interrupted',
        'job',
        'job_count',
        'job_timestamp',
        'job_no',
        'sampling_step',
        'sampling_steps',
      ]),
    );
  });

  it('finds a checkpoint added after start when a request names it, and on refresh', async () => {
    const gamma = Buffer.from('gamma');
    writeFileSync(join(modelsDir, 'stableDiffusion', 'gamma.safetensors'), gamma);
    const r = await txt2img(fast, {
      prompt: 'x',
      steps: 1,
      width: 64,
      height: 64,
      override_settings: { sd_model_checkpoint: 'gamma' },
    });
    expect(JSON.parse(r.info).sd_model_hash).toBe(sha(gamma).slice(0, 10));
    writeFileSync(join(modelsDir, 'stableDiffusion', 'delta.safetensors'), 'delta');
    expect((await ok(fast, 'GET', '/sdapi/v1/sd-models')).map((m: Json) => m.model_name)).not.toContain('delta');
    await ok(fast, 'POST', '/sdapi/v1/refresh-checkpoints');
    expect((await ok(fast, 'GET', '/sdapi/v1/sd-models')).map((m: Json) => m.model_name)).toContain('delta');
  });
});

describe('sim: txt2img', () => {
  it('returns batch_size x n_iter PNGs of the requested size, with A1111 seeds and info', async () => {
    const r = await txt2img(fast, {
      prompt: 'a lighthouse',
      negative_prompt: 'blurry',
      steps: 2,
      width: 512,
      height: 384,
      batch_size: 2,
      n_iter: 2,
      seed: 1234,
      subseed: 77,
      cfg_scale: 7,
      sampler_name: 'Euler a',
      alwayson_scripts: { controlnet: { args: [{ enabled: false }] } },
      some_extension_field: true,
    });
    expect(r.images).toHaveLength(4);
    for (const img of r.images) expect(pngSize(png(img))).toEqual({ width: 512, height: 384 });
    const meta = await sharp(png(r.images[0])).metadata();
    expect([meta.width, meta.height, meta.format]).toEqual([512, 384, 'png']);
    const info = JSON.parse(r.info);
    expect(info.all_seeds).toEqual([1234, 1235, 1236, 1237]);
    expect(info.all_subseeds).toEqual([77, 78, 79, 80]);
    expect(info).toMatchObject({
      prompt: 'a lighthouse',
      all_prompts: Array(4).fill('a lighthouse'),
      negative_prompt: 'blurry',
      seed: 1234,
      subseed: 77,
      width: 512,
      height: 384,
      sampler_name: 'Euler a',
      cfg_scale: 7,
      steps: 2,
      batch_size: 2,
      index_of_first_image: 0,
      is_using_inpainting_conditioning: false,
      version: 'sdflow-sim',
      sd_model_name: expect.any(String),
      sd_model_hash: expect.stringMatching(/^[0-9a-f]{10}$/),
    });
    expect(info.job_timestamp).toMatch(/^\d{14}$/);
    expect(info.infotexts).toHaveLength(4);
    expect(info.infotexts[1]).toContain('Seed: 1235');
    expect(r.parameters).toMatchObject({ prompt: 'a lighthouse', seed: 1234, steps: 2, batch_size: 2, n_iter: 2 });
  });

  it('with a variation strength keeps one seed and counts the subseeds up, as A1111 does', async () => {
    const r = await txt2img(fast, {
      steps: 1,
      width: 64,
      height: 64,
      batch_size: 3,
      seed: 5,
      subseed: 9,
      subseed_strength: 0.5,
    });
    const info = JSON.parse(r.info);
    expect(info.all_seeds).toEqual([5, 5, 5]);
    expect(info.all_subseeds).toEqual([9, 10, 11]);
    expect(info.infotexts[2]).toContain('Variation seed: 11, Variation seed strength: 0.5');
  });

  it('resolves seed -1 to a concrete seed, echoing -1 in parameters', async () => {
    const r = await txt2img(fast, { steps: 1, width: 64, height: 64, seed: -1 });
    expect(r.parameters.seed).toBe(-1);
    expect(JSON.parse(r.info).seed).toBeGreaterThanOrEqual(0);
  });

  it('is deterministic: same inputs same bytes, another seed other bytes', async () => {
    const body = { prompt: 'red fox', steps: 3, width: 256, height: 256, seed: 42, cfg_scale: 6.5 };
    const a = await txt2img(fast, body);
    const b = await txt2img(fast, body);
    const c = await txt2img(fast, { ...body, seed: 43 });
    const d = await txt2img(fast, { ...body, prompt: 'blue fox' });
    const [ha, hb, hc, hd] = [a, b, c, d].map((r) => sha(r.images[0]));
    expect(hb).toBe(ha);
    expect(hc).not.toBe(ha);
    expect(hd).not.toBe(ha);
    expect(pngSize(png(a.images[0]))).toEqual({ width: 256, height: 256 });
  });

  it('writes A1111 infotext into a tEXt `parameters` chunk that sharp can read back', async () => {
    const r = await txt2img(fast, {
      prompt: 'castle, night',
      negative_prompt: 'ugly',
      steps: 4,
      seed: 99,
      width: 64,
      height: 64,
    });
    const buf = png(r.images[0]);
    expect(buf.includes(Buffer.from('tEXtparameters\0'))).toBe(true);
    const text = readTextChunks(buf).parameters;
    expect(text).toMatch(
      /^castle, night\nNegative prompt: ugly\nSteps: 4, Sampler: \S.*, CFG scale: 7, Seed: 99, Size: 64x64, /,
    );
    expect(text).toMatch(/Model hash: [0-9a-f]{10}, Model: \w+/);
    expect(text).toContain('Version: sdflow-sim');
    expect(text).toBe(JSON.parse(r.info).infotexts[0]);
    const meta = await sharp(buf).metadata();
    expect(meta.comments).toContainEqual({ keyword: 'parameters', text });
    const { info } = await sharp(buf).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([64, 64, 3]);
  });

  it('maps sampler aliases and legacy "X Karras" names like A1111', async () => {
    const a = JSON.parse((await txt2img(fast, { steps: 1, width: 64, height: 64, sampler_name: 'k_euler_a' })).info);
    expect(a.sampler_name).toBe('Euler a');
    const b = JSON.parse(
      (await txt2img(fast, { steps: 1, width: 64, height: 64, sampler_name: 'DPM++ 2M Karras' })).info,
    );
    expect(b.sampler_name).toBe('DPM++ 2M');
    const c = JSON.parse((await txt2img(fast, { steps: 1, width: 64, height: 64, sampler_index: 'Euler a' })).info);
    expect(c.sampler_name).toBe('Euler a');
  });

  it('accepts floats and numeric strings where A1111 does', async () => {
    const r = await txt2img(fast, { steps: 2.0, width: '64', height: 64.0, cfg_scale: '7.5', batch_size: 1 });
    expect(pngSize(png(r.images[0]))).toEqual({ width: 64, height: 64 });
    expect(JSON.parse(r.info)).toMatchObject({ steps: 2, cfg_scale: 7.5 });
  });

  it('adds a grid first when save_images is set, like A1111', async () => {
    const r = await txt2img(fast, { steps: 1, width: 64, height: 64, batch_size: 4, seed: 1, save_images: true });
    expect(r.images).toHaveLength(5);
    expect(pngSize(png(r.images[0]))).toEqual({ width: 128, height: 128 });
    const info = JSON.parse(r.info);
    expect(info.index_of_first_image).toBe(1);
    expect(info.infotexts).toHaveLength(5);
  });
});

describe('sim: img2img', () => {
  let init: string;
  beforeAll(async () => {
    init = (await txt2img(fast, { prompt: 'source', steps: 2, width: 512, height: 384, seed: 7 })).images[0];
  });

  it('resizes to the requested size, accepts a data: URL, and is deterministic', async () => {
    const body = {
      prompt: 'p',
      init_images: [init],
      denoising_strength: 0.5,
      steps: 4,
      width: 256,
      height: 256,
      seed: 3,
    };
    const a = await img2img(fast, body);
    const b = await img2img(fast, { ...body, init_images: [`data:image/png;base64,${init}`] });
    const c = await img2img(fast, { ...body, seed: 4 });
    const d = await img2img(fast, { ...body, denoising_strength: 0.9 });
    expect(pngSize(png(a.images[0]))).toEqual({ width: 256, height: 256 });
    const [ha, hb, hc, hd] = [a, b, c, d].map((r) => sha(r.images[0]));
    expect(hb).toBe(ha);
    expect(hc).not.toBe(ha);
    expect(hd).not.toBe(ha);
    expect(a.parameters.init_images).toBeNull();
    expect(JSON.parse(a.info).infotexts[0]).toContain('Denoising strength: 0.5');
  });

  it('with denoising 0 returns the init image, resized', async () => {
    const r = await img2img(fast, {
      init_images: [init],
      denoising_strength: 0,
      steps: 2,
      width: 128,
      height: 96,
      seed: 1,
    });
    const out = await sharp(png(r.images[0])).raw().toBuffer();
    const want = await sharp(png(init))
      .resize(128, 96, { fit: 'fill', kernel: 'lanczos3' })
      .removeAlpha()
      .raw()
      .toBuffer();
    expect(out.equals(want)).toBe(true);
  });

  it('with a mask repaints only the white part', async () => {
    const src = (await txt2img(fast, { steps: 1, width: 64, height: 64, seed: 21 })).images[0];
    const maskRaw = Buffer.alloc(64 * 64);
    for (let y = 0; y < 64; y++) maskRaw.fill(255, y * 64 + 32, y * 64 + 64);
    const mask = await sharp(maskRaw, { raw: { width: 64, height: 64, channels: 1 } })
      .png()
      .toBuffer();
    const body = { init_images: [src], mask: mask.toString('base64'), mask_blur: 0, denoising_strength: 1 };
    const r = await img2img(fast, { ...body, steps: 2, width: 64, height: 64, seed: 2 });
    const out = await sharp(png(r.images[0])).raw().toBuffer();
    const init = await sharp(png(src)).raw().toBuffer();
    const row = (b: Buffer, y: number, x0: number, x1: number) => b.subarray((y * 64 + x0) * 3, (y * 64 + x1) * 3);
    for (const y of [0, 31, 63]) {
      expect(row(out, y, 0, 32).equals(row(init, y, 0, 32))).toBe(true);
      expect(row(out, y, 32, 64).equals(row(init, y, 32, 64))).toBe(false);
    }
    expect(JSON.parse(r.info).extra_generation_params).toEqual({ 'Denoising strength': 1, 'Mask blur': 0 });
  });

  it("answers 422 for an init image that does not decode, and A1111's 404 for none at all", async () => {
    const bad = await call(fast, 'POST', '/sdapi/v1/img2img', { init_images: ['bm90IGFuIGltYWdl'], steps: 1 });
    expect(bad.status).toBe(422);
    expect(JSON.stringify(bad.json.detail)).toMatch(/init_images\[0\].*does not decode/);
    const none = await call(fast, 'POST', '/sdapi/v1/img2img', { prompt: 'x', steps: 1 });
    expect(none.status).toBe(404);
    expect(none.json.detail).toBe('Init image not found');
    const empty = await call(fast, 'POST', '/sdapi/v1/img2img', { init_images: [], steps: 1 });
    expect(empty.status).toBe(422);
  });
});

describe('sim: checkpoints', () => {
  const title = (buf: Buffer, name: string) => `${name} [${sha(buf).slice(0, 10)}]`;

  it('pays a load once per switch and counts it, selecting by title, file name or stem', async () => {
    await ok(fast, 'POST', '/sdapi/v1/options', { sd_model_checkpoint: 'alpha.safetensors' });
    const before = (await stats(fast)).modelLoads;
    expect((await ok(fast, 'GET', '/sdapi/v1/options')).sd_model_checkpoint).toBe(title(ALPHA, 'alpha.safetensors'));

    let t = Date.now();
    await ok(fast, 'POST', '/sdapi/v1/options', { sd_model_checkpoint: title(BETA, 'beta.ckpt') });
    expect(Date.now() - t).toBeGreaterThanOrEqual(45);
    expect((await stats(fast)).modelLoads).toBe(before + 1);
    expect((await stats(fast)).loadedModel).toBe(title(BETA, 'beta.ckpt'));

    await ok(fast, 'POST', '/sdapi/v1/options', { sd_model_checkpoint: 'beta' });
    await ok(fast, 'POST', '/sdapi/v1/options', { sd_model_checkpoint: 'beta.ckpt [0000000000]' });
    const r = await txt2img(fast, { steps: 1, width: 64, height: 64 });
    expect(JSON.parse(r.info).sd_model_name).toBe('beta');
    expect((await stats(fast)).modelLoads).toBe(before + 1);

    t = Date.now();
    const o = await txt2img(fast, {
      steps: 1,
      width: 64,
      height: 64,
      override_settings: { sd_model_checkpoint: 'alpha.safetensors' },
      override_settings_restore_afterwards: false,
    });
    expect(Date.now() - t).toBeGreaterThanOrEqual(45);
    expect(JSON.parse(o.info)).toMatchObject({ sd_model_name: 'alpha', sd_model_hash: sha(ALPHA).slice(0, 10) });
    expect((await stats(fast)).modelLoads).toBe(before + 2);
    expect((await ok(fast, 'GET', '/sdapi/v1/options')).sd_model_checkpoint).toBe(title(ALPHA, 'alpha.safetensors'));
    await txt2img(fast, { steps: 1, width: 64, height: 64, override_settings: { sd_model_checkpoint: 'alpha' } });
    expect((await stats(fast)).modelLoads).toBe(before + 2);
  });

  it('with restore-afterwards (the default) goes back to the selected checkpoint on the next request, like A1111', async () => {
    await ok(fast, 'POST', '/sdapi/v1/options', { sd_model_checkpoint: 'alpha' });
    const before = (await stats(fast)).modelLoads;
    await txt2img(fast, { steps: 1, width: 64, height: 64, override_settings: { sd_model_checkpoint: 'beta' } });
    expect((await ok(fast, 'GET', '/sdapi/v1/options')).sd_model_checkpoint).toBe(title(ALPHA, 'alpha.safetensors'));
    const r = await txt2img(fast, { steps: 1, width: 64, height: 64 });
    expect(JSON.parse(r.info).sd_model_name).toBe('alpha');
    expect((await stats(fast)).modelLoads).toBe(before + 2);
  });

  it('unloads and reloads the checkpoint, paying the load again', async () => {
    const before = await stats(fast);
    expect(await ok(fast, 'POST', '/sdapi/v1/unload-checkpoint')).toEqual({});
    expect((await stats(fast)).loadedModel).toBeNull();
    expect(await ok(fast, 'POST', '/sdapi/v1/reload-checkpoint')).toEqual({});
    const after = await stats(fast);
    expect(after.modelLoads).toBe(before.modelLoads + 1);
    expect(after.loadedModel).toBe(before.loadedModel);
  });

  it('switches the VAE per request, reporting it like A1111', async () => {
    const r = await txt2img(fast, {
      steps: 1,
      width: 64,
      height: 64,
      override_settings: { sd_vae: 'vae-ft-mse.safetensors' },
    });
    const info = JSON.parse(r.info);
    expect(info.sd_vae_name).toBe('vae-ft-mse.safetensors');
    expect(info.sd_vae_hash).toBe(sha('vae').slice(0, 10));
    expect(info.infotexts[0]).toContain('VAE: vae-ft-mse.safetensors');
    const bad = await call(fast, 'POST', '/sdapi/v1/txt2img', { steps: 1, override_settings: { sd_vae: 'nope.pt' } });
    expect(bad.status).toBe(422);
    expect(bad.json.detail).toContain('nope.pt');
  });

  it('answers 422 naming an unknown checkpoint', async () => {
    const a = await call(fast, 'POST', '/sdapi/v1/options', { sd_model_checkpoint: 'no-such-model.safetensors' });
    expect(a.status).toBe(422);
    expect(a.json.detail).toContain('no-such-model.safetensors');
    const b = await call(fast, 'POST', '/sdapi/v1/txt2img', {
      override_settings: { sd_model_checkpoint: 'nope' },
      steps: 1,
    });
    expect(b.status).toBe(422);
    expect(b.json.detail).toContain("'nope'");
  });

  it('with no models dir answers a clear error, and does not crash', async () => {
    const empty = await startSimServer({
      host: '127.0.0.1',
      port: 0,
      stepMs: 0,
      loadMs: 0,
      vaeMs: 0,
      modelsDir: join(root, 'missing'),
    });
    try {
      expect(await ok(empty, 'GET', '/sdapi/v1/sd-models')).toEqual([]);
      const r = await call(empty, 'POST', '/sdapi/v1/txt2img', { prompt: 'x', steps: 1 });
      expect(r.status).toBe(422);
      expect(r.json.detail).toMatch(/no checkpoint available/);
      expect((await call(empty, 'GET', '/sdapi/v1/progress')).status).toBe(200);
    } finally {
      await empty.close();
    }
  });
});

describe('sim: extras', () => {
  let small: string;
  beforeAll(async () => {
    small = (await txt2img(fast, { steps: 1, width: 64, height: 48, seed: 11 })).images[0];
  });
  const extras = (body: Json) => call(fast, 'POST', '/sdapi/v1/extra-single-image', body);

  it('upscales 2x with real Lanczos', async () => {
    const r = await extras({
      image: small,
      resize_mode: 0,
      upscaling_resize: 2,
      upscaler_1: 'Lanczos',
      upscaler_2: 'None',
    });
    expect(r.status).toBe(200);
    const out = png(r.json.image);
    expect(pngSize(out)).toEqual({ width: 128, height: 96 });
    const want = await sharp(png(small)).resize(128, 96, { fit: 'fill', kernel: 'lanczos3' }).raw().toBuffer();
    expect((await sharp(out).raw().toBuffer()).equals(want)).toBe(true);
    expect(r.json.html_info).toContain('Postprocess upscale by: 2');
    expect(readTextChunks(out).postprocessing).toContain('Postprocess upscaler: Lanczos');
    expect(readTextChunks(out).parameters).toContain('Seed: 11');
  });

  it('upscales with Nearest: each pixel becomes a block', async () => {
    const raw = Buffer.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]);
    const tiny = await sharp(raw, { raw: { width: 2, height: 2, channels: 3 } })
      .png()
      .toBuffer();
    const r = await extras({ image: tiny.toString('base64'), upscaling_resize: 4, upscaler_1: 'Nearest' });
    expect(r.status).toBe(200);
    const { data, info } = await sharp(png(r.json.image)).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([8, 8]);
    expect([...data.subarray(0, 3)]).toEqual([255, 0, 0]);
    expect([...data.subarray((3 * 8 + 3) * 3, (3 * 8 + 3) * 3 + 3)]).toEqual([255, 0, 0]);
    expect([...data.subarray((7 * 8 + 7) * 3, (7 * 8 + 7) * 3 + 3)]).toEqual([255, 255, 255]);
  });

  it('upscales to a size with crop, and simulates model upscalers', async () => {
    const to = await extras({
      image: small,
      resize_mode: 1,
      upscaling_resize_w: 100,
      upscaling_resize_h: 100,
      upscaler_1: 'Lanczos',
    });
    expect(pngSize(png(to.json.image))).toEqual({ width: 100, height: 100 });
    const model = await extras({ image: small, upscaling_resize: 2, upscaler_1: 'R-ESRGAN 4x+' });
    expect(pngSize(png(model.json.image))).toEqual({ width: 128, height: 96 });
    const none = await extras({ image: small, upscaler_1: 'None' });
    expect(pngSize(png(none.json.image))).toEqual({ width: 64, height: 48 });
  });

  it('answers 422 naming an unknown upscaler, and for an image that does not decode', async () => {
    const r = await extras({ image: small, upscaler_1: 'SuperResolver 9000' });
    expect(r.status).toBe(422);
    expect(r.json.detail).toContain('SuperResolver 9000');
    const bad = await extras({ image: 'data:image/png;base64,AAAA' });
    expect(bad.status).toBe(422);
    expect(bad.json.detail).toMatch(/image/);
  });
});

describe('sim: bad input', () => {
  it('answers FastAPI-shaped 422s for wrong types and ranges', async () => {
    const a = await call(fast, 'POST', '/sdapi/v1/txt2img', { steps: 'abc' });
    expect(a.status).toBe(422);
    expect(a.json.detail[0]).toEqual({
      loc: ['body', 'steps'],
      msg: 'value is not a valid integer',
      type: 'type_error.integer',
    });
    const b = await call(fast, 'POST', '/sdapi/v1/txt2img', { width: -64 });
    expect(b.status).toBe(422);
    expect(b.json.detail[0].loc).toEqual(['body', 'width']);
    const c = await call(fast, 'POST', '/sdapi/v1/txt2img', { styles: 'not a list', batch_size: 0 });
    expect(c.json.detail.map((d: Json) => d.loc[1])).toEqual(['styles', 'batch_size']);
  });

  it('refuses a job too big to hold in memory, before queueing it', async () => {
    const r = await call(fast, 'POST', '/sdapi/v1/txt2img', { width: 4096, height: 4096, batch_size: 64, steps: 1 });
    expect(r.status).toBe(422);
    expect(r.json.detail).toMatch(/limit/);
  });

  it('reads infotext back with png-info', async () => {
    const r = await txt2img(fast, { prompt: 'a cat, sitting', steps: 3, seed: 99, width: 64, height: 64 });
    const info = await ok(fast, 'POST', '/sdapi/v1/png-info', { image: r.images[0] });
    expect(info.info).toBe(JSON.parse(r.info).infotexts[0]);
    expect(info.parameters).toMatchObject({ Prompt: 'a cat, sitting', Seed: '99', Steps: '3', Size: '64x64' });
  });

  it('answers 422 for malformed or missing JSON, 404 for unknown routes, 405 for a wrong method', async () => {
    const m = await call(fast, 'POST', '/sdapi/v1/txt2img', undefined, '{"prompt": ');
    expect(m.status).toBe(422);
    expect(m.json.detail[0].type).toBe('value_error.jsondecode');
    const e = await call(fast, 'POST', '/sdapi/v1/txt2img', undefined, '');
    expect(e.status).toBe(422);
    const arr = await call(fast, 'POST', '/sdapi/v1/txt2img', [1, 2]);
    expect(arr.status).toBe(422);
    const nf = await call(fast, 'GET', '/sdapi/v1/nope');
    expect([nf.status, nf.json]).toEqual([404, { detail: 'Not Found' }]);
    const na = await call(fast, 'GET', '/sdapi/v1/txt2img');
    expect([na.status, na.json]).toEqual([405, { detail: 'Method Not Allowed' }]);
    expect((await call(fast, 'GET', '/internal/ping')).status).toBe(200);
  });
});

describe('sim: job control (slow instance)', () => {
  it('reports step-wise progress while a job runs', async () => {
    let finished = false;
    const job = txt2img(slow, { prompt: 'slow', steps: 40, width: 512, height: 512, seed: 1 }).finally(() => {
      finished = true;
    });
    const seen: number[] = [];
    let last: any;
    while (!finished) {
      const p = await ok(slow, 'GET', '/sdapi/v1/progress');
      if (p.state.job_count > 0 && p.state.sampling_step > 0) {
        seen.push(p.state.sampling_step);
        last = p;
        expect(p.state.sampling_steps).toBe(40);
        expect(p.progress).toBeGreaterThan(0);
        expect(p.progress).toBeLessThanOrEqual(1);
        expect(p.state.job).toBe('scripts_txt2img');
        expect(p.state.job_timestamp).toMatch(/^\d{14}$/);
      }
      await sleep(20);
    }
    await job;
    expect(new Set(seen).size).toBeGreaterThanOrEqual(2);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(last.eta_relative).toBeGreaterThanOrEqual(0);
    const idle = await ok(slow, 'GET', '/sdapi/v1/progress');
    expect(idle).toMatchObject({ progress: 0, eta_relative: 0 });
    expect(idle.state.job_count).toBe(0);
  });

  it('progress carries a live preview every show_progress_every_n_steps steps, noisy until sampling ends', async () => {
    const job = txt2img(slow, { prompt: 'preview', steps: 40, width: 512, height: 384, seed: 11 });
    // The default is a preview every 10 steps: none before step 10, one from then on.
    const early = await waitForProgress(slow, (p) => p.state.job_count > 0 && p.state.sampling_step >= 1);
    if (early.state.sampling_step < 10) expect(early.current_image).toBeNull();
    const at10 = await waitForProgress(slow, (p) => p.state.sampling_step >= 10 && p.state.sampling_step < 40);
    expect(typeof at10.current_image).toBe('string');
    const preview = Buffer.from(at10.current_image, 'base64');
    expect(await sharp(preview).metadata()).toMatchObject({ format: 'png', width: 512, height: 384 });
    const skipped = await ok(slow, 'GET', '/sdapi/v1/progress?skip_current_image=true');
    expect(skipped.current_image).toBeNull();
    const final = Buffer.from((await job).images[0], 'base64');
    // The preview is the same picture with the noise of its unfinished steps: close to the result, yet not it.
    const [a, b] = await Promise.all([preview, final].map((buf) => sharp(buf).removeAlpha().raw().toBuffer()));
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff += Math.abs(a[i] - b[i]);
    expect(diff / a.length).toBeGreaterThan(1);
    expect(diff / a.length).toBeLessThan(100);
    expect((await ok(slow, 'GET', '/sdapi/v1/progress')).current_image).toBeNull();
  });

  it('sends no preview when live previews are off', async () => {
    const job = txt2img(slow, {
      prompt: 'no preview',
      steps: 30,
      width: 512,
      height: 512,
      override_settings: { live_previews_enable: false },
    });
    const p = await waitForProgress(slow, (q) => q.state.sampling_step >= 20 && q.state.sampling_step < 30);
    expect(p.current_image).toBeNull();
    await job;
  });

  it('interrupt ends the job at a step boundary, answering 200 with the partial image', async () => {
    const interruptedBefore = (await stats(slow)).interruptedJobs;
    const started = txt2img(slow, { steps: 400, n_iter: 3, width: 512, height: 512, seed: 5 });
    await waitForProgress(slow, (p) => p.state.job_count > 0 && p.state.sampling_step >= 2);
    const t = Date.now();
    expect(await ok(slow, 'POST', '/sdapi/v1/interrupt')).toEqual({});
    const r = await started;
    expect(Date.now() - t).toBeLessThan(3000); // the rest of the job would take > 20 s
    expect(r.images).toHaveLength(1);
    expect(pngSize(png(r.images[0]))).toEqual({ width: 512, height: 512 });
    expect(JSON.parse(r.info).all_seeds).toEqual([5, 6, 7]);
    const p = await ok(slow, 'GET', '/sdapi/v1/progress');
    expect(p.state.interrupted).toBe(true);
    expect((await stats(slow)).interruptedJobs).toBe(interruptedBefore + 1);
  });

  it('skip ends the current iteration and goes on with the next', async () => {
    const started = txt2img(slow, { steps: 400, n_iter: 2, width: 512, height: 512, seed: 8 });
    await waitForProgress(slow, (p) => p.state.job_count === 2 && p.state.job_no === 0 && p.state.sampling_step >= 2);
    await ok(slow, 'POST', '/sdapi/v1/skip');
    const next = await waitForProgress(slow, (p) => p.state.job_no === 1, 5000);
    expect(next.state.job).toBe('Batch 2 out of 2');
    expect(next.state.sampling_step).toBeLessThan(200);
    await waitForProgress(slow, (p) => p.state.job_no === 1 && p.state.sampling_step >= 1);
    await ok(slow, 'POST', '/sdapi/v1/interrupt');
    const r = await started;
    expect(r.images).toHaveLength(2);
  });

  it('runs one job at a time: concurrent requests queue and their busy intervals do not overlap', async () => {
    const before = (await stats(slow)).busyIntervals.length;
    const body = { steps: 8, width: 512, height: 512 };
    const results = await Promise.all([
      txt2img(slow, { ...body, seed: 1 }),
      txt2img(slow, { ...body, seed: 2 }),
      txt2img(slow, body),
    ]);
    expect(results.every((r) => r.images.length === 1)).toBe(true);
    const s = await stats(slow);
    expect(s.busy).toBe(false);
    const mine = s.busyIntervals.slice(before);
    expect(mine).toHaveLength(3);
    for (let i = 1; i < mine.length; i++) expect(mine[i].start).toBeGreaterThanOrEqual(mine[i - 1].end);
    expect(maxOverlap(mine)).toBe(1);
  });
});

describe('sim: stats', () => {
  it('accounts its time: active while a job holds the lock, idle since listening otherwise', async () => {
    await txt2img(slow, { steps: 4, width: 512, height: 512 });
    const first = await stats(slow);
    expect(first.busy).toBe(false);
    const held = first.busyIntervals.reduce((ms: number, i: { start: number; end: number }) => ms + i.end - i.start, 0);
    expect(first.accounting.activeS).toBeCloseTo(held / 1000, 6);
    expect(first.accounting.coldStartS).toBeGreaterThan(0);
    await sleep(50);
    const later = await stats(slow);
    expect(later.accounting.activeS).toBe(first.accounting.activeS);
    expect(later.accounting.idleS).toBeGreaterThan(first.accounting.idleS);
  });

  it('counts jobs and writes start/end NDJSON lines that read back as non-overlapping intervals', async () => {
    const s = await stats(slow);
    expect(s).toMatchObject({ pid: process.pid, port: slow.port, busy: false });
    expect(s.jobs).toBeGreaterThanOrEqual(5);
    const lines = readFileSync(join(slowStats, `${process.pid}.ndjson`), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const starts = lines.filter((l) => l.event === 'start');
    expect(starts.length).toBe(lines.filter((l) => l.event === 'end').length);
    expect(starts[0]).toMatchObject({
      event: 'start',
      job: 1,
      pid: process.pid,
      kind: 'txt2img',
      t: expect.any(Number),
    });
    const work = readBusyIntervals(slowStats);
    expect(work.length).toBe(s.jobs);
    expect(maxOverlap(work)).toBe(1);
    const all = readBusyIntervals(fastStats, { kinds: 'all' });
    expect(all.some((i) => i.kind === 'load')).toBe(true);
    expect(readBusyIntervals(fastStats).some((i) => i.kind === 'load')).toBe(false);
  });

  it('sums busy intervals across processes; a start without an end stays open', () => {
    const dir = join(root, 'stats-synthetic');
    mkdirSync(dir, { recursive: true });
    const line = (o: Json) => `${JSON.stringify(o)}\n`;
    writeFileSync(
      join(dir, '100.ndjson'),
      line({ event: 'start', job: 1, t: 1000, pid: 100, kind: 'txt2img' }) +
        line({ event: 'end', job: 1, t: 2000, pid: 100, kind: 'txt2img' }) +
        line({ event: 'start', job: 2, t: 2000, pid: 100, kind: 'load' }) +
        line({ event: 'end', job: 2, t: 2500, pid: 100, kind: 'load' }) +
        line({ event: 'start', job: 3, t: 3000, pid: 100, kind: 'extras' }),
    );
    writeFileSync(
      join(dir, '200.ndjson'),
      line({ event: 'start', job: 1, t: 1500, pid: 200, kind: 'img2img' }) +
        line({ event: 'end', job: 1, t: 3500, pid: 200, kind: 'img2img' }) +
        '{"event":"start","job":2,"t":', // cut short by a kill
    );
    const work = readBusyIntervals(dir);
    expect(work.map((i) => [i.pid, i.kind, i.start])).toEqual([
      [100, 'txt2img', 1000],
      [200, 'img2img', 1500],
      [100, 'extras', 3000],
    ]);
    expect(work[2].open).toBe(true);
    expect(work[2].end).toBeGreaterThan(Date.now() - 60_000);
    expect(maxOverlap(work)).toBe(2);
    expect(maxOverlap(readBusyIntervals(dir, { kinds: 'all' }))).toBe(2);
    expect(
      maxOverlap([
        { start: 0, end: 10 },
        { start: 10, end: 20 },
      ]),
    ).toBe(1);
    expect(maxOverlap([])).toBe(0);
  });
});
