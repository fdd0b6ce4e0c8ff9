import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import type { SemaphoreState } from '../../src/types.js';
import { semaphoreStateQuery } from '../../src/workflows/definitions.js';
import { sampling } from '../helpers/faults.js';
import { call, DEMO_MODEL, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// Slot holders under faults, with the semaphore's state sampled many times a second for the whole file: a holder
// that is only stalled (its worker is down) keeps its slot; one terminated without releasing loses it once the
// semaphore finds it closed; and no sample ever shows more holders than the limit.

const LIMIT = 1;
let stack: Stack;
let client: Client;
const samples: SemaphoreState[] = [];
let sampling_ = true;
let sampler: Promise<void>;

beforeAll(async () => {
  stack = await startStack({
    env: {
      SDFLOW_MAX_CONCURRENCY: String(LIMIT),
      SDFLOW_SEMAPHORE_LEASE_CHECK_S: '1',
      SDFLOW_INVOKE_HEARTBEAT_TIMEOUT_S: '3',
      SDFLOW_SIM_STEP_MS: '20',
    },
  });
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
  const semaphore = client.workflow.getHandle(`sdflow-semaphore-${stack.env.SDFLOW_DEPLOYMENT}`);
  sampler = (async () => {
    while (sampling_) {
      const s = await semaphore.query(semaphoreStateQuery).catch(() => undefined);
      if (s) samples.push(s);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
});

afterAll(async () => {
  sampling_ = false;
  await sampler;
  await client?.connection.close();
  await stack?.stop();
});

const submit = (prompt: string, steps: number) =>
  call(
    stack.url,
    'POST',
    '/txt2img',
    { stable_diffusion_model: DEMO_MODEL, prompt, steps, width: 512, height: 512 },
    { 'Request-Type': 'async' },
  ).then((r) => r.json.taskId as string);

const holders = () => samples.at(-1)?.holders.map((h) => h.workflowId) ?? [];

it('a holder whose worker is down keeps its slot until the worker is back', async () => {
  const stalled = await submit('stalled holder', 150);
  await sampling(stack, stalled);
  stack.workers[0].child.kill('SIGKILL');
  await stack.workers[0].exited;

  const next = await submit('waits its turn', 2);
  // Many lease checks pass; the stalled holder's workflow is open, so its GPU job may still be running.
  await new Promise((r) => setTimeout(r, 6000));
  expect(holders()).toEqual([stalled]);
  expect((await call(stack.url, 'GET', `/tasks/${next}/result`)).json.status).toBe('waiting');

  stack.workers[0] = await stack.startWorker();
  expect((await waitForFinal(stack.url, stalled, 90_000)).status).toBe('succeeded');
  expect((await waitForFinal(stack.url, next, 60_000)).status).toBe('succeeded');
});

it('a holder terminated without releasing has its slot freed once the semaphore finds it closed', async () => {
  const doomed = await submit('terminated holder', 400);
  await sampling(stack, doomed);
  const next = await submit('gets the slot', 2);
  await client.workflow.getHandle(doomed).terminate('operator');
  expect((await waitForFinal(stack.url, next, 30_000)).status).toBe('succeeded');
  expect(holders()).not.toContain(doomed);
});

it('never showed more holders than the limit in any sample', () => {
  expect(samples.length).toBeGreaterThan(100);
  expect(Math.max(...samples.map((s) => s.holders.length))).toBeLessThanOrEqual(LIMIT);
});
