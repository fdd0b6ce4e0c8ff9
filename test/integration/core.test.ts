import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { readBusyIntervals } from '../../src/sim/stats.js';
import { call, DEMO_MODEL, download, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// The core pipeline end to end on real processes: API → Temporal → worker → runtime → agent → simulator.

let stack: Stack;
let client: Client;
const api = (method: string, path: string, body?: unknown, headers?: Record<string, string>) =>
  call(stack.url, method, path, body, headers);

const pngSize = async (buf: Buffer) => {
  const meta = await sharp(buf).metadata();
  return `${meta.width}x${meta.height}`;
};

async function submitAsync(body: Record<string, unknown>, path = '/txt2img', headers: Record<string, string> = {}) {
  const r = await api('POST', path, body, { 'Request-Type': 'async', ...headers });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json.taskId as string;
}

async function waitForRunning(taskId: string, minProgress = 0) {
  const until = Date.now() + 30_000;
  for (;;) {
    const p = (await api('GET', `/tasks/${taskId}/progress`)).json;
    if (p.status === 'running' && p.progress > minProgress && p.progress < 1) return p;
    if (Date.now() > until) throw new Error(`never seen running: ${JSON.stringify(p)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The task's queuePosition once it is waiting in the semaphore's queue (at `expected`, when given). */
async function waitForQueuePosition(taskId: string, expected?: number) {
  const until = Date.now() + 15_000;
  for (;;) {
    const p = (await api('GET', `/tasks/${taskId}/progress`)).json;
    expect(p.status).toBe('waiting');
    if (p.queuePosition !== undefined && (expected === undefined || p.queuePosition === expected)) {
      return p.queuePosition as number;
    }
    if (Date.now() > until) throw new Error(`no queue position: ${JSON.stringify(p)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Generation and upscale jobs, from the simulators' own stats files. */
const simJobs = () => readBusyIntervals(stack.statsDir);

beforeAll(async () => {
  stack = await startStack({ env: { SDFLOW_MAX_CONCURRENCY: '1', SDFLOW_FUNCTION_MAX_INSTANCES: '2' } });
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
});

afterAll(async () => {
  await client?.connection.close();
  await stack?.stop();
});

describe('generation', () => {
  let syncTask: { taskId: string; ossUrl: string[] };

  it('sync txt2img answers succeeded with one signed URL per image', async () => {
    const r = await api('POST', '/txt2img', {
      stable_diffusion_model: DEMO_MODEL,
      prompt: 'a lighthouse on a cliff',
      negative_prompt: 'blurry',
      steps: 4,
      width: 512,
      height: 384,
      batch_size: 2,
      seed: 1234,
      cfg_scale: 7.5,
    });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json.status).toBe('succeeded');
    expect(r.json.ossUrl).toHaveLength(2);
    expect(await pngSize(await download(r.json.ossUrl[0]))).toBe('512x384');
    syncTask = r.json;
  });

  it('the result holds keys, URLs, seeds and parameters; a finished task reports progress 1', async () => {
    const r = await api('GET', `/tasks/${syncTask.taskId}/result`);
    expect(r.status).toBe(200);
    expect(r.json.images).toEqual([`images/local/${syncTask.taskId}_1.png`, `images/local/${syncTask.taskId}_2.png`]);
    expect(JSON.parse(r.json.info).all_seeds).toEqual([1234, 1235]);
    expect(r.json.parameters.prompt).toBe('a lighthouse on a cliff');
    expect(r.json.parameters.negative_prompt).toBe('blurry');
    const p = await api('GET', `/tasks/${syncTask.taskId}/progress`);
    expect(p.json).toMatchObject({ status: 'succeeded', progress: 1 });
  });

  it('a seed of -1 becomes a concrete seed recorded in the result', async () => {
    const r = await api('POST', '/txt2img', {
      stable_diffusion_model: DEMO_MODEL,
      prompt: 'x',
      steps: 2,
      width: 64,
      height: 64,
      seed: -1,
    });
    expect(r.json.status).toBe('succeeded');
    const seed = JSON.parse((await api('GET', `/tasks/${r.json.taskId}/result`)).json.info).seed;
    expect(Number.isInteger(seed) && seed >= 0).toBe(true);
  });

  it('async txt2img answers at once, reports rising step progress, then succeeds', async () => {
    const started = Date.now();
    const taskId = await submitAsync({
      stable_diffusion_model: DEMO_MODEL,
      prompt: 'progress',
      // Long enough (3 s at the stack's 10 ms a step) for more than one of the worker's once-a-second heartbeats.
      steps: 300,
      width: 512,
      height: 512,
    });
    expect(Date.now() - started).toBeLessThan(5000);
    const steps: number[] = [];
    let total = 0;
    for (;;) {
      const p = (await api('GET', `/tasks/${taskId}/progress`)).json;
      expect(p.progress).toBeGreaterThanOrEqual(0);
      expect(p.progress).toBeLessThanOrEqual(1);
      if (p.status === 'running' && p.state.sampling_step > 0) {
        steps.push(p.state.sampling_step);
        total = p.state.sampling_steps;
      }
      if (['succeeded', 'failed', 'cancelled'].includes(p.status)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(new Set(steps).size).toBeGreaterThanOrEqual(2);
    expect([...steps].sort((a, b) => a - b)).toEqual(steps);
    expect(total).toBe(300);
    expect((await waitForFinal(stack.url, taskId)).status).toBe('succeeded');
  });

  it('img2img takes a base64 init image (with and without a data: prefix) and an object key', async () => {
    const b64 = (await download(syncTask.ossUrl[0])).toString('base64');
    for (const init of [b64, `data:image/png;base64,${b64}`, `images/local/${syncTask.taskId}_1.png`]) {
      const r = await api('POST', '/img2img', {
        stable_diffusion_model: DEMO_MODEL,
        prompt: 'img2img',
        init_images: [init],
        denoising_strength: 0.5,
        steps: 3,
        width: 256,
        height: 256,
      });
      expect(r.status, JSON.stringify(r.json)).toBe(200);
      expect(await pngSize(await download(r.json.ossUrl[0]))).toBe('256x256');
    }
  });

  it('extra_images upscales 2x with Lanczos, from a key and from base64', async () => {
    const r = await api('POST', '/extra_images', {
      image: `images/local/${syncTask.taskId}_1.png`,
      resize_mode: 0,
      upscaling_resize: 2,
      upscaler_1: 'Lanczos',
    });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json.ossUrl).toHaveLength(1);
    expect(await pngSize(await download(r.json.ossUrl[0]))).toBe('1024x768');
    const small = await sharp({ create: { width: 40, height: 32, channels: 3, background: '#336699' } })
      .png()
      .toBuffer();
    const n = await api('POST', '/extra_images', {
      image: small.toString('base64'),
      upscaling_resize: 3,
      upscaler_1: 'Nearest',
    });
    expect(await pngSize(await download(n.json.ossUrl[0]))).toBe('120x96');
  });

  it('a 1.5 MB img2img leaves a workflow history under 64 KB', async () => {
    const noisy = Buffer.alloc(700 * 700 * 3);
    for (let i = 0; i < noisy.length; i++) noisy[i] = (i * 2654435761) >>> 24;
    const png = await sharp(noisy, { raw: { width: 700, height: 700, channels: 3 } })
      .png({ compressionLevel: 0 })
      .toBuffer();
    expect(png.length).toBeGreaterThan(1.4 * 1024 * 1024);
    const r = await api('POST', '/img2img', {
      stable_diffusion_model: DEMO_MODEL,
      prompt: 'big input',
      init_images: [png.toString('base64')],
      steps: 3,
      width: 256,
      height: 256,
    });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    const history = await client.workflow.getHandle(r.json.taskId).fetchHistory();
    const bytes = JSON.stringify(history).length;
    expect(bytes).toBeLessThan(64 * 1024);
  });

  it('the task is a workflow with id = taskId, findable by its model, status and user search attributes', async () => {
    const query = `WorkflowId = "${syncTask.taskId}" AND sdflowModel = "${DEMO_MODEL}" AND sdflowStatus = "succeeded" AND sdflowUser = "local"`;
    let found = 0;
    for (let i = 0; i < 50 && found === 0; i++) {
      for await (const wf of client.workflow.list({ query })) if (wf.workflowId === syncTask.taskId) found++;
      if (!found) await new Promise((r) => setTimeout(r, 200));
    }
    expect(found).toBe(1);
    const d = await client.workflow.getHandle(syncTask.taskId).describe();
    expect(d.type).toBe('generationWorkflow');
    expect(d.memo?.prompt).toBe('a lighthouse on a cliff');
  });
});

describe('cancellation', () => {
  it('cancelling a running task stops the simulator within about 2 s and ends it as cancelled', async () => {
    const taskId = await submitAsync({
      stable_diffusion_model: DEMO_MODEL,
      prompt: 'long',
      steps: 500,
      width: 1024,
      height: 1024,
    });
    await waitForRunning(taskId, 0.001);
    const before = Date.now();
    const c = await api('POST', `/tasks/${taskId}/cancellation`);
    expect(c.status).toBe(200);
    expect((await waitForFinal(stack.url, taskId, 15_000)).status).toBe('cancelled');
    // The simulator's own record shows the job ended shortly after the cancel, not after its 20 s of steps.
    const jobAtCancel = () => simJobs().find((j) => j.start < before && j.end > before);
    const until = Date.now() + 5000;
    while (jobAtCancel()?.open && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    const job = jobAtCancel();
    expect(job).toBeDefined();
    expect(job!.open).toBeFalsy();
    expect(job!.end - before).toBeLessThan(2500);
    const again = await api('POST', `/tasks/${taskId}/cancellation`);
    expect(again.status).toBe(409);
    expect((await api('GET', `/tasks/${taskId}/result`)).json.status).toBe('cancelled');
  });

  it('cancelling a queued task (the only slot is busy) means it never runs', async () => {
    const blocker = await submitAsync({
      stable_diffusion_model: DEMO_MODEL,
      prompt: 'blocker',
      // About 16 s (the simulator's step time grows with the pixels): the slot stays busy through the cancel.
      steps: 400,
      width: 1024,
      height: 1024,
    });
    await waitForRunning(blocker);
    const queued = await submitAsync({
      stable_diffusion_model: DEMO_MODEL,
      prompt: 'queued',
      steps: 2,
      width: 64,
      height: 64,
    });
    // The queue is FIFO by arrival at the semaphore, not by submit: let the first join before the second is sent.
    expect(await waitForQueuePosition(queued)).toBe(1);
    const behind = await submitAsync({
      stable_diffusion_model: DEMO_MODEL,
      prompt: 'behind',
      steps: 2,
      width: 64,
      height: 64,
    });
    // Both wait for the one slot, in the order they came; the position shows once each has joined the queue.
    expect(await waitForQueuePosition(behind)).toBe(2);
    expect(await waitForQueuePosition(queued)).toBe(1);
    const c = await api('POST', `/tasks/${queued}/cancellation`);
    expect(c.status).toBe(200);
    expect((await waitForFinal(stack.url, queued, 15_000)).status).toBe('cancelled');
    // The cancelled task left the line, so the one behind it moves up.
    expect(await waitForQueuePosition(behind, 1)).toBe(1);
    expect((await waitForFinal(stack.url, blocker, 60_000)).status).toBe('succeeded');
    const ran = await waitForFinal(stack.url, behind, 30_000);
    expect(ran.status).toBe('succeeded');
    expect((await api('GET', `/tasks/${behind}/progress`)).json.queuePosition).toBeUndefined();
    // Its workflow never scheduled an invoke.
    const history = await client.workflow.getHandle(queued).fetchHistory();
    const activities = (history.events ?? [])
      .map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name)
      .filter(Boolean);
    expect(activities).not.toContain('invokeFunction');
    // And the slot it never held is free: a new task runs at once.
    const after = await api('POST', '/txt2img', {
      stable_diffusion_model: DEMO_MODEL,
      prompt: 'after',
      steps: 2,
      width: 64,
      height: 64,
    });
    expect(after.json.status).toBe('succeeded');
  });
});

describe('live preview', () => {
  it('a running task links its newest preview, a JPEG of the picture so far; no preview is left once it ends', async () => {
    // 500 steps of 10 ms: previews are read every 2 s (the default), so a few appear while it runs.
    const taskId = await submitAsync({
      stable_diffusion_model: DEMO_MODEL,
      prompt: 'preview me',
      steps: 500,
      width: 512,
      height: 384,
    });
    const until = Date.now() + 30_000;
    let p: any;
    for (;;) {
      p = (await api('GET', `/tasks/${taskId}/progress`)).json;
      if (p.currentImageUrl || (p.status !== 'running' && p.status !== 'waiting') || Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(p.status, JSON.stringify(p)).toBe('running');
    expect(p.currentImage).toMatch(new RegExp(`^previews/local/${taskId}/\\d+\\.jpg$`));
    const preview = await download(p.currentImageUrl);
    expect(await sharp(preview).metadata()).toMatchObject({ format: 'jpeg', width: 512, height: 384 });

    const final = await waitForFinal(stack.url, taskId, 30_000);
    expect(final.status).toBe('succeeded');
    const image = await download(final.ossUrl[0]);
    expect(preview.equals(image)).toBe(false);
    const after = (await api('GET', `/tasks/${taskId}/progress`)).json;
    expect(after.currentImage).toBeNull();
    expect(after.currentImageUrl).toBeUndefined();
    let left: string[] = [];
    try {
      left = readdirSync(join(stack.dataDir, 'objects', 'previews', 'local', taskId));
    } catch {
      // No directory: nothing left.
    }
    expect(left).toEqual([]);
  });
});

describe('client task ids and bad input', () => {
  it('accepts a client taskId once; a duplicate answers 409 and an unknown well-formed id 404', async () => {
    const id = `client-${Date.now()}`;
    const body = { stable_diffusion_model: DEMO_MODEL, prompt: 'mine', steps: 2, width: 64, height: 64 };
    const first = await api('POST', '/txt2img', body, { taskId: id });
    expect(first.json).toMatchObject({ status: 'succeeded', taskId: id });
    const dup = await api('POST', '/txt2img', body, { taskId: id, 'Request-Type': 'async' });
    expect(dup.status).toBe(409);
    expect((await api('GET', `/tasks/${id}/result`)).json.status).toBe('succeeded');
    expect((await api('GET', '/tasks/never-submitted-42/result')).status).toBe(404);
    const bad = await api('POST', '/txt2img', body, { taskId: 'has a space' });
    expect(bad.status).toBe(400);
    expect(bad.json.message).toMatch(/taskId/);
  });

  const cases: [string, () => Promise<{ status: number; json: any }>, number[], RegExp][] = [
    ['malformed JSON', () => api('POST', '/txt2img', '{"prompt": '), [400], /JSON/],
    ['missing model', () => api('POST', '/txt2img', { prompt: 'x' }), [400], /stable_diffusion_model/],
    ['unknown model', () => api('POST', '/txt2img', { stable_diffusion_model: 'nope.safetensors' }), [404], /nope/],
    [
      'negative steps',
      () => api('POST', '/txt2img', { stable_diffusion_model: DEMO_MODEL, steps: -5 }),
      [400],
      /steps/,
    ],
    [
      'steps of the wrong type',
      () => api('POST', '/txt2img', { stable_diffusion_model: DEMO_MODEL, steps: 'many' }),
      [400],
      /steps/,
    ],
    [
      'width over the limit',
      () => api('POST', '/txt2img', { stable_diffusion_model: DEMO_MODEL, width: 100000 }),
      [400],
      /width/,
    ],
    [
      'too many images',
      () => api('POST', '/txt2img', { stable_diffusion_model: DEMO_MODEL, batch_size: 8, n_iter: 8 }),
      [400],
      /batch_size/,
    ],
    [
      'traversal in init_images',
      () =>
        api('POST', '/img2img', { stable_diffusion_model: DEMO_MODEL, init_images: ['../../../../etc/passwd.png'] }),
      [400, 403],
      /init_images\[0\]/,
    ],
    [
      'a scheme in init_images',
      () =>
        api('POST', '/img2img', { stable_diffusion_model: DEMO_MODEL, init_images: ['http://169.254.169.254/latest'] }),
      [400],
      /init_images\[0\]/,
    ],
    [
      'a key that does not exist',
      () => api('POST', '/extra_images', { image: 'images/local/missing_1.png' }),
      [400],
      /image/,
    ],
    [
      'base64 that is not an image',
      () =>
        api('POST', '/img2img', {
          stable_diffusion_model: DEMO_MODEL,
          init_images: [Buffer.from('not an image at all, just text padding padding').toString('base64')],
        }),
      [400],
      /init_images\[0\]/,
    ],
    [
      'empty init_images',
      () => api('POST', '/img2img', { stable_diffusion_model: DEMO_MODEL, init_images: [] }),
      [400],
      /init_images/,
    ],
    ['unknown task', () => api('GET', '/tasks/nosuchtask0000/result'), [404], /nosuchtask0000/],
    ['unknown route', () => api('GET', '/no/such/route'), [404], /no route/],
    ['a bad model filter', () => api('GET', '/models?type=pixelArt'), [400], /type/],
  ];
  for (const [name, run, codes, mention] of cases) {
    it(`a clear 4xx for ${name}`, async () => {
      const r = await run();
      expect(codes, JSON.stringify(r.json)).toContain(r.status);
      expect(r.json.message).toMatch(mention);
    });
  }
});

describe('catalog and files', () => {
  it('lists the demo checkpoints as loaded models', async () => {
    const r = await api('GET', '/models');
    const names = r.json
      .filter((m: any) => m.type === 'stableDiffusion' && m.status === 'loaded')
      .map((m: any) => m.name);
    expect(names).toContain(DEMO_MODEL);
    const one = await api('GET', `/models/${DEMO_MODEL}`);
    expect(one.json).toMatchObject({
      name: DEMO_MODEL,
      type: 'stableDiffusion',
      ossPath: `models/stableDiffusion/${DEMO_MODEL}`,
    });
    expect(one.json.etag).toMatch(/^[0-9a-f]{64}$/);
  });

  it('lists the function of a used checkpoint as <prefix>sd_<40 hex of sha256(model)>', async () => {
    const r = await api('GET', '/list/sdapi/functions');
    const misspelt = await api('GET', '/list/sdapi/fucntions');
    expect(misspelt.json).toEqual(r.json);
    const want = `sd_${createHash('sha256').update(DEMO_MODEL).digest('hex').slice(0, 40)}`;
    expect(r.json.functions).toContainEqual({ functionName: want, model: DEMO_MODEL });
  });

  it('signed URLs refuse tampering and expiry with 403', async () => {
    const r = await api('POST', '/txt2img', {
      stable_diffusion_model: DEMO_MODEL,
      prompt: 'f',
      steps: 2,
      width: 64,
      height: 64,
    });
    const url = new URL(r.json.ossUrl[0]);
    expect((await fetch(url)).status).toBe(200);
    const tampered = new URL(url);
    tampered.pathname = tampered.pathname.replace(/_1\.png$/, '_2.png');
    expect((await fetch(tampered)).status).toBe(403);
    const expired = new URL(url);
    expired.searchParams.set('expires', '1000');
    expect((await fetch(expired)).status).toBe(403);
  });

  it('keeps every image and input on disk under the documented keys', () => {
    const objects = join(stack.dataDir, 'objects');
    expect(readdirSync(join(objects, 'images', 'local')).length).toBeGreaterThan(0);
    expect(readdirSync(join(objects, 'inputs', 'local')).length).toBeGreaterThan(0);
    expect(readFileSync(join(objects, 'models', 'stableDiffusion', DEMO_MODEL)).length).toBeGreaterThan(0);
  });
});
