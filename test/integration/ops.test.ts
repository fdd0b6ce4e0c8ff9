import { existsSync } from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import { workflowMetadataQuery } from '@temporalio/workflow';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { createObjectStore } from '../../src/platform/index.js';
import type { ObjectStore } from '../../src/platform/object-store/port.js';
import { call, DEMO_MODEL, download, type Stack, startStack } from '../helpers/stack.js';

// Operating sdflow: /metrics moves as tasks run, /docs renders from this host alone, CORS answers the configured
// origin only, deleting a task (by request, and by age) removes its objects and keeps its record, and a task's
// workflow carries its summary and details for the Temporal Web UI.

const ALICE = 'alice-secret-1';
const BOB = 'bob-secret-22';
const OPS = 'ops-admin-333';
const APP_ORIGIN = 'https://app.example.test';
const CHROMIUM = '/usr/bin/chromium';
/** The retention age: long enough for a test to look at a finished task first, short enough to wait for. */
const RETENTION_S = 15;

let stack: Stack;
let store: ObjectStore;
let temporal: Client;
const as =
  (secret: string | undefined) =>
  (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    call(stack.url, method, path, body, secret ? { authorization: `Bearer ${secret}`, ...headers } : headers);
const alice = as(ALICE);
const bob = as(BOB);
const ops = as(OPS);
const anonymous = as(undefined);
const small = (prompt: string) => ({ stable_diffusion_model: DEMO_MODEL, prompt, steps: 3, width: 64, height: 64 });

beforeAll(async () => {
  stack = await startStack({
    env: {
      SDFLOW_API_KEYS: `alice:user:${ALICE},bob:user:${BOB},ops:admin:${OPS}`,
      SDFLOW_CORS_ORIGINS: `${APP_ORIGIN},http://localhost:5173`,
      SDFLOW_METRICS_MAX_AGE_MS: '0',
      SDFLOW_RETENTION_DAYS: String(RETENTION_S / 86_400),
      SDFLOW_RETENTION_PERIOD_S: '1',
    },
  });
  store = await createObjectStore(loadConfig({ ...process.env, ...stack.env }));
  temporal = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
});

afterAll(async () => {
  await temporal?.connection.close();
  await stack?.stop();
});

/** A sample's value from the Prometheus text format: the line of `name` whose labels include every one given. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    if (wanted.every((w) => (match[2] ?? '').includes(w))) return Number(match[3]);
  }
  return 0;
}

describe('metrics', () => {
  it('needs an admin key', async () => {
    expect((await anonymous('GET', '/metrics')).status).toBe(401);
    expect((await alice('GET', '/metrics')).status).toBe(403);
    const r = await ops('GET', '/metrics');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
  });

  it('moves as tasks run: task counts, timings, cold starts, HTTP requests; slots and process metrics are there', async () => {
    const before = (await ops('GET', '/metrics')).json as string;
    for (const prompt of ['first', 'second']) {
      expect((await alice('POST', '/txt2img', small(prompt))).json.status).toBe('succeeded');
    }
    const after = (await ops('GET', '/metrics')).json as string;
    const moved = (name: string, labels: Record<string, string>) =>
      sample(after, name, labels) - sample(before, name, labels);

    const model = { model: DEMO_MODEL };
    expect(moved('sdflow_tasks', { status: 'succeeded', ...model })).toBe(2);
    expect(moved('sdflow_end_to_end_seconds_count', { status: 'succeeded', ...model })).toBe(2);
    expect(moved('sdflow_queue_wait_seconds_count', model)).toBe(2);
    expect(moved('sdflow_sampling_seconds_count', model)).toBe(2);
    expect(moved('sdflow_end_to_end_seconds_sum', { status: 'succeeded', ...model })).toBeGreaterThan(0);
    // The stack's first task started its function's first instance.
    expect(sample(after, 'sdflow_cold_starts_total', model)).toBeGreaterThanOrEqual(1);
    expect(sample(after, 'sdflow_cold_start_seconds_count', model)).toBeGreaterThanOrEqual(1);
    expect(moved('sdflow_http_requests_total', { method: 'POST', route: '/txt2img', status: '200' })).toBe(2);
    expect(sample(after, 'sdflow_http_requests_total', { route: '/metrics', status: '200' })).toBeGreaterThanOrEqual(1);
    expect(sample(after, 'sdflow_slots_limit')).toBe(4);
    expect(sample(after, 'sdflow_slots_in_use')).toBe(0);
    expect(sample(after, 'sdflow_queue_depth')).toBe(0);
    expect(after).toMatch(/^# TYPE sdflow_checkpoint_loads_total counter$/m);
    expect(after).toMatch(/^# TYPE sdflow_webhook_deliveries_total counter$/m);
    expect(sample(after, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);

    // A task read again is observed once.
    const again = (await ops('GET', '/metrics')).json as string;
    await alice('GET', '/tasks?limit=10');
    const listed = (await ops('GET', '/metrics')).json as string;
    const count = (text: string) =>
      sample(text, 'sdflow_end_to_end_seconds_count', { status: 'succeeded', model: DEMO_MODEL });
    expect(count(listed)).toBe(count(again));
  });
});

describe('docs', () => {
  it('serves /docs, its files and /openapi.json without a key', async () => {
    const page = await fetch(`${stack.url}/docs`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'self'/);
    expect(await page.text()).toMatch(/swagger-ui-bundle\.js/);
    expect((await fetch(`${stack.url}/docs/swagger-ui-bundle.js`)).status).toBe(200);
    expect((await fetch(`${stack.url}/docs/swagger-ui.css`)).status).toBe(200);
    expect((await fetch(`${stack.url}/docs/package.json`)).status).toBe(401);
    const spec = await anonymous('GET', '/openapi.json');
    expect(spec.status).toBe(200);
    expect(spec.json.paths['/tasks/{taskId}'].delete).toBeDefined();
  });

  it.skipIf(!existsSync(CHROMIUM))('renders in Chromium, and no request leaves the host', async () => {
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu'],
    });
    try {
      const page = await browser.newPage();
      const requested: string[] = [];
      const problems: string[] = [];
      page.on('request', (r) => requested.push(r.url()));
      page.on('console', (m) => {
        if (m.type() === 'error') problems.push(m.text());
      });
      page.on('pageerror', (e) => problems.push(e.message));
      await page.goto(`${stack.url}/docs`, { waitUntil: 'networkidle' });
      await page.locator('.swagger-ui .info .title').filter({ hasText: 'sdflow' }).waitFor({ timeout: 20_000 });
      await page.locator('.opblock-summary-path', { hasText: '/sdapi/v1/txt2img' }).first().waitFor();
      expect(await page.locator('.opblock').count()).toBeGreaterThan(40);
      await page.screenshot({ path: `${stack.dataDir}/docs.png` });
      expect(requested.length).toBeGreaterThan(3);
      expect(requested.filter((url) => !url.startsWith(`${stack.url}/`) && !url.startsWith('data:'))).toEqual([]);
      expect(problems).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});

describe('CORS', () => {
  it('answers an allowed origin, its preflight included, and exposes the taskId header', async () => {
    const preflight = await fetch(`${stack.url}/txt2img`, {
      method: 'OPTIONS',
      headers: {
        Origin: APP_ORIGIN,
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'authorization,content-type',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(APP_ORIGIN);
    expect(preflight.headers.get('access-control-allow-methods')).toMatch(/POST/);
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(/authorization/);
    expect(preflight.headers.get('access-control-allow-credentials')).toBeNull();

    const r = await alice('POST', '/txt2img', small('from a page'), { Origin: APP_ORIGIN, 'Request-Type': 'async' });
    expect(r.status).toBe(200);
    expect(r.headers.get('access-control-allow-origin')).toBe(APP_ORIGIN);
    expect(r.headers.get('access-control-expose-headers')).toMatch(/taskId/);
    // An error answer carries the headers too, so the page can read it.
    const refused = await anonymous('GET', '/tasks', undefined, { Origin: APP_ORIGIN });
    expect(refused.status).toBe(401);
    expect(refused.headers.get('access-control-allow-origin')).toBe(APP_ORIGIN);
  });

  it('gives another origin no CORS headers', async () => {
    const preflight = await fetch(`${stack.url}/txt2img`, {
      method: 'OPTIONS',
      headers: { Origin: 'https://evil.example.test', 'Access-Control-Request-Method': 'POST' },
    });
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    const r = await alice('GET', '/models', undefined, { Origin: 'https://evil.example.test' });
    expect(r.status).toBe(200);
    expect(r.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('retention', () => {
  /** An img2img task of alice's from a base64 image, so it has an input object as well as outputs. */
  async function finishedTaskWithInput(prompt: string) {
    const source = await alice('POST', '/txt2img', small(`${prompt} source`));
    const png = (await download(source.json.ossUrl[0])).toString('base64');
    const r = await alice('POST', '/img2img', { ...small(prompt), init_images: [png], denoising_strength: 0.5 });
    expect(r.json.status).toBe('succeeded');
    const inputs = await store.list(`inputs/alice/${r.json.taskId}/`);
    expect(inputs.length).toBe(1);
    return { taskId: r.json.taskId as string, images: r.json.images as string[], ossUrl: r.json.ossUrl as string[] };
  }

  async function objectsOf(taskId: string, images: string[]) {
    const heads = await Promise.all(images.map((key) => store.head(key)));
    const inputs = await store.list(`inputs/alice/${taskId}/`);
    return [...heads.filter(Boolean), ...inputs];
  }

  it("deletes a final task's objects and keeps its record as deleted; another user gets 404", async () => {
    const task = await finishedTaskWithInput('to delete');
    expect(await objectsOf(task.taskId, task.images)).toHaveLength(2);

    expect((await bob('DELETE', `/tasks/${task.taskId}`)).status).toBe(404);
    const r = await alice('DELETE', `/tasks/${task.taskId}`);
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ taskId: task.taskId, status: 'deleted' });

    expect(await objectsOf(task.taskId, task.images)).toEqual([]);
    expect((await fetch(task.ossUrl[0])).status).toBe(404);
    const result = await alice('GET', `/tasks/${task.taskId}/result`);
    expect(result.json).toMatchObject({ taskId: task.taskId, status: 'deleted', images: [], ossUrl: [] });
    const listed = await alice('GET', '/tasks?status=deleted');
    expect(listed.json.tasks.map((t: { taskId: string }) => t.taskId)).toContain(task.taskId);
    expect((await alice('GET', `/tasks/${task.taskId}/progress`)).json).toMatchObject({ status: 'deleted' });
    // Deleting again answers the same; a deleted task is neither cancelled nor retried.
    expect((await alice('DELETE', `/tasks/${task.taskId}`)).json.status).toBe('deleted');
    expect((await alice('POST', `/tasks/${task.taskId}/cancellation`)).status).toBe(409);
    expect((await alice('POST', `/tasks/${task.taskId}/retry`)).status).toBe(409);
  });

  it("lets an admin delete a user's task, and refuses an open task with 409", async () => {
    const done = await alice('POST', '/txt2img', small('an admin deletes it'));
    expect((await ops('DELETE', `/tasks/${done.json.taskId}`)).json.status).toBe('deleted');

    const open = await alice(
      'POST',
      '/txt2img',
      { stable_diffusion_model: DEMO_MODEL, prompt: 'long', steps: 500, width: 1024, height: 1024 },
      { 'Request-Type': 'async' },
    );
    const refused = await alice('DELETE', `/tasks/${open.json.taskId}`);
    expect(refused.status).toBe(409);
    expect(refused.json.status).toMatch(/waiting|running/);
    await alice('POST', `/tasks/${open.json.taskId}/cancellation`);
  });

  it(`deletes final tasks older than SDFLOW_RETENTION_DAYS (here ${RETENTION_S} s) on its own`, async () => {
    const task = await finishedTaskWithInput('kept a while');
    expect((await alice('GET', `/tasks/${task.taskId}/result`)).json.status).toBe('succeeded');
    const until = Date.now() + (RETENTION_S + 30) * 1000;
    let status = 'succeeded';
    while (status !== 'deleted' && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      status = (await alice('GET', `/tasks/${task.taskId}/result`)).json.status;
    }
    expect(status).toBe('deleted');
    expect(await objectsOf(task.taskId, task.images)).toEqual([]);
  }, 90_000);
});

describe('the Temporal Web UI', () => {
  it("shows a task's kind, checkpoint and prompt as its summary, and its ending as its current details", async () => {
    const r = await alice('POST', '/txt2img', {
      ...small('a lighthouse on a cliff at dusk with seagulls circling above the waves'),
    });
    const handle = temporal.workflow.getHandle(r.json.taskId);
    const description = await handle.describe();
    expect(await description.staticSummary()).toBe(`txt2img · ${DEMO_MODEL} · "a lighthouse on a cliff at dusk with…"`);
    expect(await description.staticDetails()).toMatch(/for user `alice`/);
    expect((await handle.query(workflowMetadataQuery)).currentDetails).toBe('**succeeded**');
  });
});
