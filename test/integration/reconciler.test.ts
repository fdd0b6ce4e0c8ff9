import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { createMetaStore } from '../../src/platform/index.js';
import type { ModelRecord } from '../../src/records.js';
import { registrationWorkflowId } from '../../src/temporal.js';
import { call, DEMO_MODEL, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// Nothing stays open forever: a task whose workflow was terminated is marked failed with the reason, its slot comes
// back, a task row whose workflow never started (the API died between the two) is started, and a model left
// registering with nothing to finish it is marked failed.

let stack: Stack;
let client: Client;

beforeAll(async () => {
  stack = await startStack({
    env: {
      SDFLOW_MAX_CONCURRENCY: '1',
      SDFLOW_RECONCILE_PERIOD_S: '1',
      SDFLOW_RECONCILE_GRACE_S: '1',
      SDFLOW_REQUEST_RECEIVE_TIMEOUT_S: '1',
    },
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

it('starts the workflow of an accepted task that has none, placed as it was accepted', async () => {
  const meta = await createMetaStore(loadConfig({ ...process.env, ...stack.env }));
  const taskId = `orphan-${Date.now()}`;
  expect(
    await meta.insertTask({
      taskId,
      user: 'local',
      kind: 'txt2img',
      model: DEMO_MODEL,
      params: { prompt: 'never started', steps: 2, width: 64, height: 64 },
      scheduling: { owner: { user: 'local', lane: 'high', weight: 2 }, deadlineAt: Date.now() + 600_000 },
    }),
  ).toMatchObject({ taskId, status: 'waiting' });
  await meta.close();
  const final = await waitForFinal(stack.url, taskId, 30_000);
  expect(final.status).toBe('succeeded');
  expect(final.images).toEqual([`images/local/${taskId}_1.png`]);
  // The reconciler started it with the lane, share and deadline it was accepted with, not the defaults.
  const history = await client.workflow.getHandle(taskId).fetchHistory();
  const [payload] = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads ?? [];
  const input = defaultPayloadConverter.fromPayload(payload);
  expect(input).toMatchObject({ owner: { lane: 'high', weight: 2 }, deadlineAt: expect.any(Number) });
});

it('settles model rows stuck registering, and leaves a running registration alone', async () => {
  const config = loadConfig({ ...process.env, ...stack.env });
  const meta = await createMetaStore(config);
  const tenSecondsAgo = new Date(Date.now() - 10_000).toISOString();
  const row = (name: string): ModelRecord => ({
    type: 'lora',
    name,
    ossPath: `models/lora/${name}`,
    etag: '',
    status: 'registering',
    registeredTime: tenSecondsAgo,
    lastModificationTime: tenSecondsAgo,
  });
  // Stand-ins for registration workflows: a type no worker serves, on a queue nobody polls.
  const startStandIn = (name: string) =>
    client.workflow.start('sdflowTestHolder', {
      taskQueue: `nobody-${Date.now()}`,
      workflowId: registrationWorkflowId(config.deployment, name),
    });
  const stamp = Date.now();
  const cutOff = `cut-off-${stamp}.safetensors`;
  const terminated = `terminated-${stamp}.safetensors`;
  const live = `live-${stamp}.safetensors`;
  // An upload the API never finished: no registration workflow at all.
  expect(await meta.insertModel(row(cutOff))).toBe(true);
  // A registration terminated by an operator before it settled its row.
  await (await startStandIn(terminated)).terminate('operator stopped it');
  expect(await meta.insertModel(row(terminated))).toBe(true);
  // A registration still running, however long it takes.
  const running = await startStandIn(live);
  expect(await meta.insertModel(row(live))).toBe(true);
  await meta.close();

  const settledModel = async (name: string) => {
    const until = Date.now() + 20_000;
    for (;;) {
      const m = (await call(stack.url, 'GET', `/models/${name}`)).json;
      if (m.status !== 'registering' || Date.now() > until) return m;
      await new Promise((res) => setTimeout(res, 200));
    }
  };
  const a = await settledModel(cutOff);
  expect(a.status).toBe('failed');
  expect(a.message).toMatch(/registration never started/);
  const b = await settledModel(terminated);
  expect(b.status).toBe('failed');
  expect(b.message).toMatch(/ended as terminated/);
  // Rounds have run past it, and it is still registering.
  expect((await call(stack.url, 'GET', `/models/${live}`)).json.status).toBe('registering');
  await running.terminate('test over');
});
