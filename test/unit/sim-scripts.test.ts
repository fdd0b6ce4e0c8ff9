import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimServer } from '../../src/sim/server.js';

// The simulator's scripts (script_name, script_args), seen the way an A1111 1.10.1 client sees them. One instance
// that takes no time per step, for counts and sizes, and a slower one for progress and interrupt during a script.

type Json = Record<string, any>;
interface Sim {
  port: number;
  close(): Promise<void>;
}

const root = mkdtempSync(join(tmpdir(), 'sdflow-sim-scripts-'));
const modelsDir = join(root, 'models');
let fast: Sim;
let slow: Sim;
let init: string;

async function call(sim: Sim, method: string, path: string, body?: unknown) {
  const res = await fetch(`http://127.0.0.1:${sim.port}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as any };
}

async function ok(sim: Sim, method: string, path: string, body?: unknown): Promise<any> {
  const r = await call(sim, method, path, body);
  if (r.status !== 200) throw new Error(`${method} ${path} -> ${r.status} ${JSON.stringify(r.json).slice(0, 300)}`);
  return r.json;
}

const sizeOf = (b64: string) => {
  const buf = Buffer.from(b64, 'base64');
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
};
const small = { steps: 2, width: 64, height: 64, seed: 10 };
const img2img = (body: Json) => ok(fast, 'POST', '/sdapi/v1/img2img', { ...small, init_images: [init], ...body });
const txt2img = (body: Json) => ok(fast, 'POST', '/sdapi/v1/txt2img', { ...small, ...body });

beforeAll(async () => {
  for (const d of ['stableDiffusion', 'sdVae', 'lora']) mkdirSync(join(modelsDir, d), { recursive: true });
  writeFileSync(join(modelsDir, 'stableDiffusion', 'alpha.safetensors'), 'alpha checkpoint');
  const common = { host: '127.0.0.1', port: 0, loadMs: 0, vaeMs: 0, modelsDir };
  fast = await startSimServer({ ...common, stepMs: 0 });
  slow = await startSimServer({ ...common, stepMs: 40 });
  const png = await sharp({ create: { width: 100, height: 60, channels: 3, background: '#4080c0' } })
    .png()
    .toBuffer();
  init = png.toString('base64');
});

afterAll(async () => {
  await Promise.all([fast?.close(), slow?.close()]);
  rmSync(root, { recursive: true, force: true });
});

describe('sim: scripts', () => {
  it('lists the scripts A1111 1.10.1 lists, always-on ones included', async () => {
    expect(await ok(fast, 'GET', '/sdapi/v1/scripts')).toEqual({
      txt2img: [
        'prompt matrix',
        'prompts from file or textbox',
        'x/y/z plot',
        'extra options',
        'Hypertile',
        'refiner',
        'sampler',
        'seed',
      ],
      img2img: [
        'img2img alternative test',
        'loopback',
        'outpainting mk2',
        "poor man's outpainting",
        'prompt matrix',
        'prompts from file or textbox',
        'sd upscale',
        'x/y/z plot',
        'extra options',
        'Hypertile',
        'soft inpainting',
        'refiner',
        'sampler',
        'seed',
      ],
    });
  });

  it("answers an unknown script_name with A1111's 422, and takes a title in any case", async () => {
    for (const [path, name] of [
      ['/sdapi/v1/txt2img', 'nope'],
      ['/sdapi/v1/txt2img', 'SD upscale'],
      ['/sdapi/v1/txt2img', 'hypertile'],
    ]) {
      const r = await call(fast, 'POST', path, { ...small, script_name: name });
      expect(r.status).toBe(422);
      expect(r.json.detail).toBe(`Script '${name}' not found`);
    }
    expect((await txt2img({ script_name: 'PROMPT MATRIX', prompt: 'a|b' })).images).toHaveLength(3);
    expect((await txt2img({ script_name: '', batch_size: 2 })).images).toHaveLength(2);
    expect((await txt2img({ script_name: null, batch_size: 2 })).images).toHaveLength(2);
  });

  it('SD upscale: each side floor(side × scale / 8) × 8, by upscaler index or name, one image per n_iter', async () => {
    const byIndex = await img2img({ script_name: 'SD upscale', script_args: [null, 16, 1, 2], n_iter: 3 });
    expect(byIndex.images).toHaveLength(3);
    for (const image of byIndex.images) expect(sizeOf(image)).toEqual({ width: 200, height: 120 });
    const info = JSON.parse(byIndex.info);
    expect(info.infotexts[0]).toContain('SD upscale overlap: 16, SD upscale upscaler: Lanczos');
    const byName = await img2img({ script_name: 'sd upscale', script_args: ['', 16, 'lAnCzOs', 2.5] });
    expect(byName.images.map(sizeOf)).toEqual([{ width: 248, height: 144 }]);
    const none = await img2img({ script_name: 'SD upscale', script_args: [null, 16, 0, 3], batch_size: 2 });
    expect(none.images.map(sizeOf)).toEqual([{ width: 100, height: 60 }]);
  });

  it('SD upscale: a bad upscaler fails as A1111 does, a 500 naming the Python exception', async () => {
    const index = await call(fast, 'POST', '/sdapi/v1/img2img', {
      ...small,
      init_images: [init],
      script_name: 'SD upscale',
      script_args: [null, 16, 99, 2],
    });
    expect(index.status).toBe(500);
    expect(index.json).toMatchObject({ error: 'IndexError', errors: 'list index out of range' });
    const name = await call(fast, 'POST', '/sdapi/v1/img2img', {
      ...small,
      init_images: [init],
      script_name: 'SD upscale',
      script_args: [null, 16, 'Bogus', 2],
    });
    expect(name.status).toBe(500);
    expect(name.json).toMatchObject({ error: 'ValueError', errors: "'bogus' is not in list" });
  });

  it('prompt matrix: a grid, then one image per combination of the parts', async () => {
    const r = await txt2img({ script_name: 'Prompt matrix', prompt: 'a|b|c', batch_size: 3 });
    expect(r.images).toHaveLength(5);
    expect(sizeOf(r.images[0])).toEqual({ width: 128, height: 128 });
    const info = JSON.parse(r.info);
    expect(info.all_prompts).toEqual(['a', 'a, b', 'a, c', 'a, b, c']);
    expect(info.index_of_first_image).toBe(1);
    const bad = await call(fast, 'POST', '/sdapi/v1/txt2img', {
      ...small,
      script_name: 'Prompt matrix',
      script_args: [false, false, 'both'],
    });
    expect([bad.status, bad.json.error]).toEqual([500, 'ValueError']);
  });

  it('prompts from file: every line a job of batch_size × n_iter images, a line may set its own, no grid', async () => {
    const r = await txt2img({
      script_name: 'Prompts from file or textbox',
      script_args: [false, false, 'start', 'red\n\n  blue  \n--prompt "green hill" --n_iter 2 --steps 1'],
      prompt: 'fox',
      batch_size: 2,
      save_images: true,
    });
    expect(r.images).toHaveLength(8);
    const texts: string[] = JSON.parse(r.info).infotexts;
    expect(texts[0]).toMatch(/^red fox\n/);
    expect(texts[2]).toMatch(/^blue fox\n/);
    expect(texts[7]).toMatch(/^green hill fox\nSteps: 1,/);
  });

  it('x/y/z plot: the grid, then sub grids and cell images when asked', async () => {
    // x: Steps 1-3 (a range), y: nothing, z: Seed 1, 2.
    const args = [4, '1-3', [], 0, '', [], 1, '1, 2', [], true, false, false];
    const gridOnly = await txt2img({ script_name: 'X/Y/Z plot', script_args: args });
    expect(gridOnly.images).toHaveLength(1);
    expect(sizeOf(gridOnly.images[0])).toEqual({ width: 6 * 64, height: 64 });
    const all = await txt2img({ script_name: 'x/y/z plot', script_args: [...args.slice(0, 10), true, true] });
    expect(all.images).toHaveLength(1 + 2 + 6);
    expect(sizeOf(all.images[1])).toEqual({ width: 3 * 64, height: 64 });
    const texts: string[] = JSON.parse(all.info).infotexts;
    expect(texts[0]).toContain('Script: X/Y/Z plot, X Type: Steps, X Values: 1-3, Z Type: Seed, Z Values: "1, 2"');
    expect(texts[3]).toContain('Steps: 1,');
    expect(texts[5]).toContain('Steps: 3,');
    const bad = await call(fast, 'POST', '/sdapi/v1/txt2img', {
      ...small,
      script_name: 'X/Y/Z plot',
      script_args: [4, '1, x'],
    });
    expect([bad.status, bad.json.error]).toEqual([500, 'ValueError']);
  });

  it('loopback: every loop with n_iter 1, the last of each otherwise, after a grid of more than one', async () => {
    const loops = async (n: number, n_iter: number) =>
      (await img2img({ script_name: 'Loopback', script_args: [n, 0.5, 'Linear', 'None'], n_iter })).images.length;
    expect(await loops(3, 1)).toBe(4);
    expect(await loops(3, 2)).toBe(3);
    expect(await loops(1, 1)).toBe(1);
  });

  it("outpainting mk2 grows each chosen side to a multiple of 64; poor man's makes one image", async () => {
    const mk2 = await img2img({ script_name: 'Outpainting mk2', script_args: [null, 32], batch_size: 2 });
    expect(mk2.images.map(sizeOf)).toEqual([
      { width: 384, height: 128 },
      { width: 192, height: 128 },
      { width: 192, height: 128 },
    ]);
    const left = await img2img({ script_name: 'Outpainting mk2', script_args: [null, 32, 8, ['left']] });
    expect(left.images.map(sizeOf)).toEqual([{ width: 192, height: 60 }]);
    const poor = await img2img({ script_name: "Poor man's outpainting", script_args: [32], n_iter: 2 });
    expect(poor.images.map(sizeOf)).toEqual([{ width: 192, height: 128 }]);
  });

  it('img2img alternative test: an ordinary job with its overrides', async () => {
    const r = await img2img({
      script_name: 'img2img alternative test',
      script_args: [null, true, true, 'orig', '', true, 3],
      n_iter: 2,
    });
    expect(r.images).toHaveLength(2);
    expect(JSON.parse(r.info).infotexts[0]).toMatch(/^orig\nSteps: 3, Sampler: Euler, .*Decode steps: 3/);
  });

  it('reports script progress against its job count, and stops on interrupt with what it made', async () => {
    const running = ok(slow, 'POST', '/sdapi/v1/img2img', {
      ...small,
      width: 512,
      height: 512,
      steps: 10,
      denoising_strength: 1,
      init_images: [init],
      script_name: 'Loopback',
      script_args: [5, 0.5, 'Linear', 'None'],
    });
    let state: Json = {};
    for (let i = 0; i < 400 && !(state.job_no >= 1); i++) {
      state = (await ok(slow, 'GET', '/sdapi/v1/progress?skip_current_image=true')).state;
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(state).toMatchObject({ job_count: 5, job: expect.stringMatching(/^Iteration \d\/5, batch 1\/1$/) });
    await ok(slow, 'POST', '/sdapi/v1/interrupt');
    const r = await running;
    expect(r.images.length).toBeGreaterThanOrEqual(1);
    expect(r.images.length).toBeLessThan(6);
  });
});
