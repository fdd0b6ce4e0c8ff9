import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createMetaStore } from '../../src/platform/index.js';
import { call, DEMO_MODEL, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// Nothing stays open forever: a task whose workflow was terminated is marked failed with the reason, its slot comes
// back, and a task row whose workflow never started (the API died between the two) is started.

let stack: Stack;
let client: Client;

beforeAll(async () => {
  stack = await startStack({
    env: { SDFLOW_MAX_CONCURRENCY: '1', SDFLOW_RECONCILE_PERIOD_S: '1', SDFLOW_RECONCILE_GRACE_S: '1' },
  });
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
});

afterAll(async () => {
  await client?.connection.close();
  await stack?.stop();
});

it('marks a task failed when its workflow was terminated, and frees its slot', async () => {
  const r = await call(
    stack.url,
    'POST',
    '/txt2img',
    { stable_diffusion_model: DEMO_MODEL, prompt: 'doomed', steps: 500, width: 1024, height: 1024 },
    { 'Request-Type': 'async' },
  );
  for (;;) {
    const p = (await call(stack.url, 'GET', `/tasks/${r.json.taskId}/progress`)).json;
    if (p.status === 'running') break;
    await new Promise((res) => setTimeout(res, 100));
  }
  await client.workflow.getHandle(r.json.taskId).terminate('operator stopped it');
  const final = await waitForFinal(stack.url, r.json.taskId, 20_000);
  expect(final.status).toBe('failed');
  expect(final.message).toMatch(/terminated/);
  // The only slot was held by the terminated task; the semaphore finds it closed and the next task runs.
  const next = await call(stack.url, 'POST', '/txt2img', {
    stable_diffusion_model: DEMO_MODEL,
    prompt: 'next',
    steps: 2,
    width: 64,
    height: 64,
  });
  expect(next.json.status).toBe('succeeded');
});

it('starts the workflow of an accepted task that has none', async () => {
  const meta = createMetaStore(loadConfig({ ...process.env, ...stack.env }));
  const taskId = `orphan-${Date.now()}`;
  expect(
    await meta.insertTask({
      taskId,
      user: 'local',
      kind: 'txt2img',
      model: DEMO_MODEL,
      params: { prompt: 'never started', steps: 2, width: 64, height: 64 },
    }),
  ).toBe(true);
  await meta.close();
  const final = await waitForFinal(stack.url, taskId, 30_000);
  expect(final.status).toBe('succeeded');
  expect(final.images).toEqual([`images/local/${taskId}_1.png`]);
});
