import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { a1111OptionDefaults } from '../../src/a1111/options.js';
import { startSimServer } from '../../src/sim/server.js';

// The simulator's options, seen the way an A1111 1.10.1 client sees them.

interface Sim {
  port: number;
  close(): Promise<void>;
}

const root = mkdtempSync(join(tmpdir(), 'sdflow-sim-options-'));
const modelsDir = join(root, 'models');
let fast: Sim;

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

beforeAll(async () => {
  for (const d of ['stableDiffusion', 'sdVae', 'lora']) mkdirSync(join(modelsDir, d), { recursive: true });
  writeFileSync(join(modelsDir, 'stableDiffusion', 'alpha.safetensors'), 'alpha checkpoint');
  fast = await startSimServer({ host: '127.0.0.1', port: 0, loadMs: 0, vaeMs: 0, modelsDir, stepMs: 0 });
});

afterAll(async () => {
  await fast?.close();
  rmSync(root, { recursive: true, force: true });
});

describe('sim: options are A1111 1.10.1 options', () => {
  it("answers every key of 1.10.1's shared_options.py and its built-in extensions, at their defaults", async () => {
    const options = await ok(fast, 'GET', '/sdapi/v1/options');
    // 281 from modules/shared_options.py, 1 prompt comments, 10 Lora, 12 canvas hotkeys, 4 extra options,
    // 7 LDSR/ScuNET/SwinIR, 9 hypertile, and 5 settings-page explanations.
    expect(Object.keys(options)).toHaveLength(329);
    expect(options).toMatchObject({
      send_seed: true,
      send_size: true,
      samples_format: 'png',
      sd3_enable_t5: false,
      ESRGAN_tile: 192,
      DAT_tile: 192,
      outdir_txt2img_samples: 'outputs/txt2img-images',
      quicksettings_list: ['sd_model_checkpoint'],
      keyedit_delimiters: '.,\\/!?%^*;:{}=`~() ',
      sd_lora: 'None',
      lora_preferred_name: 'Alias from file',
      lora_add_hashes_to_infotext: true,
      lora_bundled_ti_to_infotext: true,
      lora_show_all: false,
      lora_hide_unknown_for_versions: [],
      lora_in_memory_limit: 0,
      lora_not_found_warning_console: false,
      lora_not_found_gradio_warning: false,
      lora_functional: false,
      enable_prompt_comments: true,
      canvas_hotkey_zoom: 'Alt',
      hypertile_max_tile_vae: 128,
      SWIN_tile: 192,
    });
    // Explanations are answered as A1111's response model fills them in (a short text of ours, not its HTML);
    // k_sched_type is no 1.10.1 option.
    expect(options.sd_vae_explanation).toEqual(expect.any(String));
    expect(options).not.toHaveProperty('k_sched_type');
  });

  it('hands out a fresh copy of the defaults each time', () => {
    const a = a1111OptionDefaults();
    (a.hide_samplers as string[]).push('Euler');
    a.send_seed = false;
    expect(a1111OptionDefaults()).toMatchObject({ hide_samplers: [], send_seed: true });
  });

  it('refuses an unknown key with a 422 naming it, applying nothing of the body', async () => {
    const one = await call(fast, 'POST', '/sdapi/v1/options', { samples_format: 'jpg', foo: 1 });
    expect(one.status).toBe(422);
    expect(one.json.detail).toBe('unknown option: foo');
    const two = await call(fast, 'POST', '/sdapi/v1/options', { foo: 1, bar: 2 });
    expect(two.json.detail).toBe('unknown options: foo, bar');
    expect((await ok(fast, 'GET', '/sdapi/v1/options')).samples_format).toBe('png');
  });

  it('merges known keys, and ignores the ones A1111 keeps from the API', async () => {
    await ok(fast, 'POST', '/sdapi/v1/options', {
      jpeg_quality: 90,
      lora_show_all: true,
      api_useragent: 'changed',
      sd_vae_explanation: 'html',
    });
    const options = await ok(fast, 'GET', '/sdapi/v1/options');
    expect(options).toMatchObject({ jpeg_quality: 90, lora_show_all: true, api_useragent: '' });
    expect(options.sd_vae_explanation).not.toBe('html');
    await ok(fast, 'POST', '/sdapi/v1/options', { jpeg_quality: 80, lora_show_all: false });
  });
});
