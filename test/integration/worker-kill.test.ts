import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { readBusyIntervals } from '../../src/sim/stats.js';
import { call, DEMO_MODEL, download, type Stack, semaphoreState, startStack, waitForFinal } from '../helpers/stack.js';

// SIGKILL the only worker while the simulator is sampling, then start a new one. The task must still succeed,
// once, with the same keys and bytes as an undisturbed run, and its slot must come back.

let stack: Stack;
let client: Client;

beforeAll(async () => {
  stack = await startStack({
    env: {
      SDFLOW_MAX_CONCURRENCY: '1',
      SDFLOW_SIM_STEP_MS: '20',
      SDFLOW_INVOKE_HEARTBEAT_TIMEOUT_S: '3',
      SDFLOW_INVOKE_RETRY_INITIAL_S: '0.5',
    },
  });
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
});

afterAll(async () => {
  await client?.connection.close();
  await stack?.stop();
});

it('a task survives a worker SIGKILL mid-sampling: one record, same keys and bytes, slot returned', async () => {
  const body = {
    stable_diffusion_model: DEMO_MODEL,
    prompt: 'survivor',
    steps: 200,
    width: 512,
    height: 512,
    seed: 4242,
    batch_size: 2,
  };
  const submit = await call(stack.url, 'POST', '/txt2img', body, { 'Request-Type': 'async' });
  const taskId = submit.json.taskId as string;

  for (;;) {
    const p = (await call(stack.url, 'GET', `/tasks/${taskId}/progress`)).json;
    if (p.status === 'running' && p.progress > 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  stack.workers[0].child.kill('SIGKILL');
  await stack.workers[0].exited;
  stack.workers[0] = await stack.startWorker();

  const result = await waitForFinal(stack.url, taskId, 120_000);
  expect(result.status).toBe('succeeded');
  expect(result.images).toEqual([`images/local/${taskId}_1.png`, `images/local/${taskId}_2.png`]);

  // The job really ran twice: an interrupted attempt, then the one that finished.
  const jobs = readBusyIntervals(stack.statsDir);
  expect(jobs.length).toBe(2);

  // One record, and the images are exactly what an undisturbed run with the same seed renders.
  const reference = await call(stack.url, 'POST', '/txt2img', body);
  expect(reference.json.status).toBe('succeeded');
  for (let i = 0; i < 2; i++) {
    expect((await download(result.ossUrl[i])).equals(await download(reference.json.ossUrl[i]))).toBe(true);
  }
  const page = await call(stack.url, 'GET', `/tasks/${taskId}/result`);
  expect(page.json.status).toBe('succeeded');

  // The slot came back: nobody holds it, nobody waits.
  const state = await semaphoreState(client, stack);
  expect(state.holders).toEqual([]);
  expect(state.queue).toEqual([]);
}, 180_000);
