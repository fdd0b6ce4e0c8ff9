import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, DEMO_MODEL, DEMO_MODEL_2, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// An unchanged A1111 client against sdflow: A1111's routes and shapes, the checkpoint chosen by
// override_settings.sd_model_checkpoint (a title with or without its hash), progress, and interrupt.

let stack: Stack;
let title2: string;
const api = (method: string, path: string, body?: unknown, headers?: Record<string, string>) =>
  call(stack.url, method, path, body, headers);

const decodeSize = async (b64: string) => {
  const meta = await sharp(Buffer.from(b64, 'base64')).metadata();
  return `${meta.width}x${meta.height}`;
};

beforeAll(async () => {
  stack = await startStack({ env: { SDFLOW_MAX_CONCURRENCY: '2' } });
  const file = readFileSync(join(stack.dataDir, 'objects', 'models', 'stableDiffusion', DEMO_MODEL_2));
  title2 = `${DEMO_MODEL_2} [${createHash('sha256').update(file).digest('hex').slice(0, 10)}]`;
});

afterAll(async () => {
  await stack?.stop();
});

describe('A1111 drop-in', () => {
  it('txt2img answers {images, parameters, info} with base64 PNGs, on the checkpoint its title names', async () => {
    const r = await api('POST', '/sdapi/v1/txt2img', {
      prompt: 'a drop-in client',
      steps: 3,
      width: 320,
      height: 256,
      batch_size: 2,
      seed: 77,
      override_settings: { sd_model_checkpoint: title2 },
    });
    expect(r.status, JSON.stringify(r.json).slice(0, 300)).toBe(200);
    expect(r.json.images).toHaveLength(2);
    expect(await decodeSize(r.json.images[0])).toBe('320x256');
    expect(r.json.parameters.prompt).toBe('a drop-in client');
    const info = JSON.parse(r.json.info);
    expect(info.all_seeds).toEqual([77, 78]);
    expect(info.sd_model_name).toBe(DEMO_MODEL_2.replace(/\.safetensors$/, ''));
    expect(r.headers.get('taskId')).toBeTruthy();
  });

  it('takes the title without its hash too, and the default checkpoint when none is named', async () => {
    const named = await api('POST', '/sdapi/v1/txt2img', {
      prompt: 'x',
      steps: 2,
      width: 64,
      height: 64,
      override_settings: { sd_model_checkpoint: DEMO_MODEL_2 },
    });
    expect(JSON.parse(named.json.info).sd_model_name).toBe(DEMO_MODEL_2.replace(/\.safetensors$/, ''));
    const plain = await api('POST', '/sdapi/v1/txt2img', { prompt: 'x', steps: 2, width: 64, height: 64 });
    expect(plain.status).toBe(200);
    expect(JSON.parse(plain.json.info).sd_model_name).toBe(DEMO_MODEL.replace(/\.safetensors$/, ''));
  });

  it("takes A1111's other checkpoint aliases: the name without extension, with [hash], the short hash", async () => {
    const shortHash = /\[([0-9a-f]{10})\]$/.exec(title2)![1]!;
    const bare = DEMO_MODEL_2.replace(/\.safetensors$/, '');
    for (const alias of [bare, `${bare} [${shortHash}]`, shortHash]) {
      const r = await api('POST', '/sdapi/v1/txt2img', {
        prompt: 'x',
        steps: 1,
        width: 64,
        height: 64,
        override_settings: { sd_model_checkpoint: alias },
      });
      expect(r.status, `${alias}: ${JSON.stringify(r.json).slice(0, 200)}`).toBe(200);
      expect(JSON.parse(r.json.info).sd_model_name, alias).toBe(bare);
    }
  });

  it('img2img and extra-single-image answer in A1111 shapes', async () => {
    const init = (
      await sharp({ create: { width: 96, height: 64, channels: 3, background: '#884422' } })
        .png()
        .toBuffer()
    ).toString('base64');
    const i2i = await api('POST', '/sdapi/v1/img2img', {
      prompt: 'y',
      init_images: [init],
      steps: 4,
      width: 128,
      height: 128,
      denoising_strength: 0.6,
    });
    expect(i2i.status).toBe(200);
    expect(await decodeSize(i2i.json.images[0])).toBe('128x128');
    const extra = await api('POST', '/sdapi/v1/extra-single-image', {
      image: init,
      upscaling_resize: 2,
      upscaler_1: 'Lanczos',
    });
    expect(extra.status).toBe(200);
    expect(typeof extra.json.html_info).toBe('string');
    expect(await decodeSize(extra.json.image)).toBe('192x128');
  });

  it('with Prefer: respond-async returns the taskId instead of waiting', async () => {
    const r = await api(
      'POST',
      '/sdapi/v1/txt2img',
      { prompt: 'later', steps: 2, width: 64, height: 64 },
      { Prefer: 'respond-async' },
    );
    expect(r.status).toBe(202);
    expect(r.headers.get('preference-applied')).toBe('respond-async');
    expect((await waitForFinal(stack.url, r.json.taskId)).status).toBe('succeeded');
  });

  it('progress answers for the caller’s latest task in A1111’s shape, and idle after it', async () => {
    // 500 steps of 10 ms: five seconds, while progress reaches the workflow about once a second.
    let done = false;
    const pending = api('POST', '/sdapi/v1/txt2img', {
      prompt: 'watch me',
      steps: 500,
      width: 512,
      height: 512,
    }).finally(() => {
      done = true;
    });
    const seen: number[] = [];
    let preview: string | null = null;
    while (!done) {
      const p = (await api('GET', '/sdapi/v1/progress?skip_current_image=true')).json;
      expect(Object.keys(p).sort()).toEqual(['current_image', 'eta_relative', 'progress', 'state', 'textinfo']);
      expect(p.current_image).toBeNull();
      if (p.state.sampling_step > 0 && !seen.includes(p.state.sampling_step)) seen.push(p.state.sampling_step);
      // Without skip_current_image, the live preview comes as plain base64, as A1111 sends it.
      preview ??= (await api('GET', '/sdapi/v1/progress')).json.current_image;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(preview).toEqual(expect.any(String));
    expect(Buffer.from(preview!, 'base64').subarray(0, 3)).toEqual(Buffer.from([0xff, 0xd8, 0xff]));
    expect((await pending).status).toBe(200);
    const idle = (await api('GET', '/sdapi/v1/progress')).json;
    expect(idle).toMatchObject({ progress: 0, state: { job_count: 0 } });
  });

  it('interrupt ends the running job early: the waiting call gets the images made so far, and it is no cancel', async () => {
    const started = Date.now();
    const pending = api('POST', '/sdapi/v1/txt2img', {
      prompt: 'cut short',
      steps: 400,
      n_iter: 3,
      width: 512,
      height: 512,
    });
    for (;;) {
      const p = (await api('GET', '/sdapi/v1/progress')).json;
      if (p.state.sampling_step > 5) break;
      if (Date.now() - started > 30_000) throw new Error('never saw sampling');
      await new Promise((r) => setTimeout(r, 50));
    }
    const interrupted = await api('POST', '/sdapi/v1/interrupt');
    expect(interrupted.status).toBe(200);
    const r = await pending;
    // Three iterations of 400 steps take 12 s; the interrupted call returns long before.
    expect(Date.now() - started).toBeLessThan(9000);
    expect(r.status).toBe(200);
    expect(r.json.images.length).toBeGreaterThanOrEqual(1);
    expect(r.json.images.length).toBeLessThan(3);
    const result = await api('GET', `/tasks/${r.headers.get('taskId')}/result`);
    expect(result.json.status).toBe('succeeded');
  });

  it('an unknown checkpoint is a 404 naming it', async () => {
    const r = await api('POST', '/sdapi/v1/txt2img', {
      prompt: 'x',
      override_settings: { sd_model_checkpoint: 'nope [0123456789]' },
    });
    expect(r.status).toBe(404);
    expect(r.json.message).toMatch(/override_settings\.sd_model_checkpoint.*nope/);
  });
});
