import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { readBusyIntervals } from '../../src/sim/stats.js';
import { isAlive, runtimeInstances, sampling, simPidOf, until } from '../helpers/faults.js';
import { call, DEMO_MODEL, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// SIGKILL an instance's agent, or its simulator, once sampling has started: the invoke is retried on a fresh
// instance and the task succeeds. When every configured attempt dies, the task fails with the reason.

let stack: Stack;
let client: Client;

beforeAll(async () => {
  stack = await startStack({
    env: {
      SDFLOW_MAX_CONCURRENCY: '1',
      SDFLOW_INVOKE_MAX_ATTEMPTS: '3',
      SDFLOW_INVOKE_RETRY_INITIAL_S: '0.2',
      SDFLOW_SIM_STEP_MS: '20',
    },
  });
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
});

afterAll(async () => {
  await client?.connection.close();
  await stack?.stop();
});

const longTask = (prompt: string) =>
  call(
    stack.url,
    'POST',
    '/txt2img',
    { stable_diffusion_model: DEMO_MODEL, prompt, steps: 150, width: 512, height: 512, seed: 5 },
    { 'Request-Type': 'async' },
  ).then((r) => r.json.taskId as string);

it('a task whose agent is SIGKILLed mid-sampling is retried on a fresh instance and succeeds', async () => {
  const taskId = await longTask('agent dies');
  await sampling(stack, taskId);
  const [victim] = (await runtimeInstances(stack)).filter((i) => i.busy);
  expect(victim).toBeDefined();
  process.kill(victim.pid, 'SIGKILL');

  const final = await waitForFinal(stack.url, taskId, 60_000);
  expect(final.status).toBe('succeeded');
  expect(final.images).toEqual([`images/local/${taskId}_1.png`]);
  expect((await runtimeInstances(stack)).some((i) => i.id === victim.id)).toBe(false);
  const history = await client.workflow.getHandle(taskId).fetchHistory();
  const started = (history.events ?? []).filter((e) => e.activityTaskStartedEventAttributes);
  // The invoke's start event records the attempt that completed: the second.
  expect(Math.max(...started.map((e) => e.activityTaskStartedEventAttributes?.attempt ?? 1))).toBe(2);
});

it('a task whose simulator is SIGKILLed mid-sampling is retried and succeeds', async () => {
  const before = readBusyIntervals(stack.statsDir).length;
  const taskId = await longTask('sim dies');
  await sampling(stack, taskId);
  const [busy] = (await runtimeInstances(stack)).filter((i) => i.busy);
  const simPid = await simPidOf(busy);
  process.kill(simPid, 'SIGKILL');
  await until('the simulator to die', async () => !isAlive(simPid) || undefined);

  const final = await waitForFinal(stack.url, taskId, 60_000);
  expect(final.status).toBe('succeeded');
  // The killed job left an open interval; the retry ran to the end on a simulator that is alive.
  const jobs = readBusyIntervals(stack.statsDir).slice(before);
  expect(jobs.length).toBe(2);
  expect(jobs.some((j) => j.pid === simPid)).toBe(true);
  expect(jobs.some((j) => j.pid !== simPid && !j.open)).toBe(true);
});

it('when every attempt dies, the task ends as failed with the reason', async () => {
  const taskId = await longTask('always dies');
  const killed = new Set<string>();
  let final: { status: string; message?: string } | undefined;
  const deadline = Date.now() + 90_000;
  while (!final && Date.now() < deadline) {
    for (const i of await runtimeInstances(stack)) {
      if (i.busy && !killed.has(i.id)) {
        const p = (await call(stack.url, 'GET', `/tasks/${taskId}/progress`)).json;
        if (p.state?.sampling_step > 0) {
          killed.add(i.id);
          process.kill(i.pid, 'SIGKILL');
        }
      }
    }
    const r = (await call(stack.url, 'GET', `/tasks/${taskId}/result`)).json;
    if (['succeeded', 'failed', 'cancelled'].includes(r.status)) final = r;
    await new Promise((res) => setTimeout(res, 50));
  }
  expect(final?.status).toBe('failed');
  expect(killed.size).toBe(3);
  expect(final?.message).toMatch(/instance|invoke|died|exited|connection/i);
});
