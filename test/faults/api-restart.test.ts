import { afterAll, beforeAll, expect, it } from 'vitest';
import { sampling } from '../helpers/faults.js';
import { call, DEMO_MODEL, download, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// The API restarts while a client waits on a sync request. The client gets an error; the task, owned by Temporal
// and the worker, still completes, and its result is there for the client's own taskId.

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ env: { SDFLOW_SIM_STEP_MS: '20' } });
});

afterAll(async () => {
  await stack?.stop();
});

it('a sync client loses its connection when the API restarts, and the task still completes', async () => {
  const taskId = `sync-through-restart-${Date.now()}`;
  const waiting = call(
    stack.url,
    'POST',
    '/txt2img',
    { stable_diffusion_model: DEMO_MODEL, prompt: 'outlive the api', steps: 200, width: 512, height: 512 },
    { taskId },
  ).then(
    (r) => ({ answered: r.status }),
    (err: Error) => ({ error: err.message }),
  );
  await sampling(stack, taskId);

  stack.api.child.kill('SIGKILL');
  await stack.api.exited;
  const outcome = await waiting;
  expect(outcome).toHaveProperty('error');

  stack.api = await stack.startApi();
  const final = await waitForFinal(stack.url, taskId, 60_000);
  expect(final.status).toBe('succeeded');
  expect((await download(final.ossUrl[0])).length).toBeGreaterThan(0);
});
