import { afterAll, beforeAll, expect, it } from 'vitest';
import { maxOverlap, readBusyIntervals } from '../../src/sim/stats.js';
import { call, DEMO_MODEL, DEMO_MODEL_2, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// The global cap, for real: two worker processes, two checkpoints (so two functions of up to 4 instances each),
// SDFLOW_MAX_CONCURRENCY=2, and 12 tasks. The simulators' own busy intervals, summed across every simulator
// process, must never show more than 2 jobs at once.

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    workers: 2,
    env: { SDFLOW_MAX_CONCURRENCY: '2', SDFLOW_FUNCTION_MAX_INSTANCES: '4', SDFLOW_SIM_STEP_MS: '20' },
  });
});

afterAll(async () => {
  await stack?.stop();
});

it('never runs more than SDFLOW_MAX_CONCURRENCY jobs at once across workers and functions', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 12; i++) {
    const r = await call(
      stack.url,
      'POST',
      '/txt2img',
      {
        stable_diffusion_model: i % 2 ? DEMO_MODEL_2 : DEMO_MODEL,
        prompt: `cap ${i}`,
        steps: 20,
        width: 512,
        height: 512,
      },
      { 'Request-Type': 'async' },
    );
    expect(r.status).toBe(200);
    ids.push(r.json.taskId);
  }
  const results = await Promise.all(ids.map((id) => waitForFinal(stack.url, id, 180_000)));
  expect(results.map((r) => r.status)).toEqual(Array(12).fill('succeeded'));

  const work = readBusyIntervals(stack.statsDir);
  expect(work).toHaveLength(12);
  expect(new Set(work.map((w) => w.pid)).size).toBeGreaterThanOrEqual(2);
  const peak = maxOverlap(work);
  expect(peak).toBeLessThanOrEqual(2);
  // The cap is reached, not just respected: two jobs did run side by side.
  expect(peak).toBe(2);
}, 240_000);
