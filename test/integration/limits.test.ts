import { afterAll, beforeAll, expect, it } from 'vitest';
import { readBusyIntervals } from '../../src/sim/stats.js';
import { call, DEMO_MODEL, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// The sync wait cap, the task deadline, the body limit and an input SD rejects, on a stack with small limits.

let stack: Stack;
const DEADLINE_S = 8;

beforeAll(async () => {
  stack = await startStack({
    env: { SDFLOW_SYNC_TIMEOUT_S: '1', SDFLOW_TASK_DEADLINE_S: String(DEADLINE_S), SDFLOW_MAX_BODY_MB: '1' },
  });
});

afterAll(async () => {
  await stack?.stop();
});

it('a sync wait longer than SDFLOW_SYNC_TIMEOUT_S answers 202 with the taskId; the task still completes', async () => {
  const r = await call(stack.url, 'POST', '/txt2img', {
    stable_diffusion_model: DEMO_MODEL,
    prompt: 'slow',
    steps: 250,
    width: 512,
    height: 512,
  });
  expect(r.status).toBe(202);
  expect(['waiting', 'running']).toContain(r.json.status);
  expect((await waitForFinal(stack.url, r.json.taskId, 30_000)).status).toBe('succeeded');
});

it('a drop-in A1111 call waits past SDFLOW_SYNC_TIMEOUT_S for its images; one past the deadline gets the error', async () => {
  const slow = await call(stack.url, 'POST', '/sdapi/v1/txt2img', {
    prompt: 'slow',
    steps: 250,
    width: 512,
    height: 512,
  });
  expect(slow.status, JSON.stringify(slow.json)).toBe(200);
  expect(slow.json.images).toHaveLength(1);
  const started = Date.now();
  const endless = await call(stack.url, 'POST', '/sdapi/v1/txt2img', {
    prompt: 'endless',
    steps: 500,
    width: 1024,
    height: 1024,
  });
  expect(endless.status).toBe(500);
  expect(endless.json).toMatchObject({ error: 'TaskFailed' });
  expect(endless.json.detail).toMatch(/deadline/);
  expect(Date.now() - started).toBeGreaterThan((DEADLINE_S - 1) * 1000);
});

it('a task past its deadline ends as failed with the reason, and its SD job is stopped', async () => {
  const submitted = Date.now();
  const r = await call(
    stack.url,
    'POST',
    '/txt2img',
    { stable_diffusion_model: DEMO_MODEL, prompt: 'endless', steps: 500, width: 1024, height: 1024 },
    { 'Request-Type': 'async' },
  );
  const final = await waitForFinal(stack.url, r.json.taskId, 60_000);
  expect(final.status).toBe('failed');
  expect(final.message).toMatch(/deadline/);
  // The interrupt reaches SD just after the record is written; give it a moment to land.
  const jobsSince = () => readBusyIntervals(stack.statsDir).filter((j) => j.start >= submitted);
  for (let i = 0; i < 50 && jobsSince().some((j) => j.open); i++) await new Promise((res) => setTimeout(res, 100));
  const jobs = jobsSince();
  expect(jobs).toHaveLength(1);
  expect(jobs[0].open).toBeFalsy();
  expect(jobs[0].end - submitted).toBeLessThan((DEADLINE_S + 3) * 1000);
});

it('a body over SDFLOW_MAX_BODY_MB answers 413', async () => {
  const big = 'A'.repeat(1.5 * 1024 * 1024);
  const r = await call(stack.url, 'POST', '/img2img', { stable_diffusion_model: DEMO_MODEL, init_images: [big] });
  expect(r.status).toBe(413);
  expect(r.json.message).toMatch(/SDFLOW_MAX_BODY_MB/);
});

it('an input SD rejects fails the task with SD’s reason and answers 422 to a sync caller', async () => {
  const r = await call(stack.url, 'POST', '/txt2img', {
    stable_diffusion_model: DEMO_MODEL,
    prompt: 'x',
    steps: 2,
    // A field the API passes through unchecked, which SD finds malformed.
    eta: 'fast',
  });
  expect(r.status).toBe(422);
  expect(r.json.status).toBe('failed');
  expect(r.json.message).toBe('eta: value is not a valid float');
  const result = await call(stack.url, 'GET', `/tasks/${r.json.taskId}/result`);
  expect(result.json).toMatchObject({ status: 'failed', images: [] });
});
