import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { functionNameFor } from '../../src/platform/functions/naming.js';
import { maxOverlap, readBusyIntervals } from '../../src/sim/stats.js';
import { type RuntimeInstance, simPidOf, until } from '../helpers/faults.js';
import {
  call,
  DEMO_MODEL,
  DEMO_MODEL_2,
  type Stack,
  semaphoreState,
  startStack,
  waitForFinal,
} from '../helpers/stack.js';

// Keep-warm and pre-warm on the real stack: a function's minInstances stay started through pauses longer than its
// keepAliveS (and are replaced when they die), and a burst of queued tasks for one checkpoint starts instances up to
// its share of the cap while every slot is still busy, which then serve the burst; the cap holds throughout.

const CAP = 3;
const FN_A = functionNameFor(DEMO_MODEL);

let stack: Stack;
let client: Client;

beforeAll(async () => {
  stack = await startStack({
    env: {
      SDFLOW_MAX_CONCURRENCY: String(CAP),
      SDFLOW_FUNCTION_MAX_INSTANCES: '4',
      SDFLOW_PREWARM_CHECK_S: '0.3',
      SDFLOW_WARM_RETRY_S: '0.5',
    },
  });
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
});

afterAll(async () => {
  await client?.connection.close();
  await stack?.stop();
});

const api = (method: string, path: string, body?: unknown) => call(stack.url, method, path, body);
const semaphore = () => semaphoreState(client, stack);

/** The function's instances that are not stopping, as the runtime lists them. */
async function live(functionName: string): Promise<RuntimeInstance[]> {
  const res = await fetch(`http://127.0.0.1:${stack.env.SDFLOW_RUNTIME_PORT}/functions/${functionName}`);
  if (res.status === 404) return [];
  const fn = (await res.json()) as { instances?: RuntimeInstance[] };
  return (fn.instances ?? []).filter((i) => i.state !== 'stopping');
}

async function update(body: object): Promise<void> {
  const r = await api('POST', '/batch_update_sd_resource', { models: [DEMO_MODEL], ...body });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
}

async function submit(model: string, steps: number, size = 64): Promise<string> {
  const r = await call(
    stack.url,
    'POST',
    '/txt2img',
    { stable_diffusion_model: model, prompt: 'warm', steps, width: size, height: size },
    { 'Request-Type': 'async' },
  );
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json.taskId;
}

describe('the fields', () => {
  it('refuses a minInstances above maxInstances, and counts that are not counts, naming the field', async () => {
    for (const body of [
      { minInstances: 3, maxInstances: 2 },
      // Above the runtime's default maximum (SDFLOW_FUNCTION_MAX_INSTANCES=4) when the function sets none.
      { minInstances: 5 },
      { minInstances: -1 },
      { minInstances: 1.5 },
      { prewarmQueueDepth: 0 },
    ]) {
      const r = await api('POST', '/batch_update_sd_resource', { models: [DEMO_MODEL], ...body });
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.json.message).toContain(Object.keys(body)[0]);
    }
  });
});

describe('minInstances', () => {
  it('keeps an instance through pauses longer than keepAliveS, replaces it when it dies, and lets it go at 0', async () => {
    await update({ minInstances: 1, keepAliveS: 1 });
    const [kept] = await until('a kept instance', async () => {
      const instances = await live(FN_A);
      return instances.length === 1 && instances[0].state === 'idle' ? instances : undefined;
    });
    // Four times the keep-alive, without a request.
    await sleep(4000);
    expect((await live(FN_A)).map((i) => i.id)).toEqual([kept.id]);

    // A task takes the kept instance: no other starts.
    const taskId = await submit(DEMO_MODEL, 2);
    expect((await waitForFinal(stack.url, taskId, 60_000)).status).toBe('succeeded');
    expect((await live(FN_A)).map((i) => i.id)).toEqual([kept.id]);

    process.kill(-kept.pid, 'SIGKILL');
    const replacement = await until('a replacement', async () => {
      const instances = await live(FN_A);
      return instances.length === 1 && instances[0].id !== kept.id && instances[0].state === 'idle'
        ? instances[0]
        : undefined;
    });
    expect(replacement.id).not.toBe(kept.id);

    await update({ minInstances: 0 });
    await until('the kept instance reaped', async () => ((await live(FN_A)).length === 0 ? true : undefined));
  }, 90_000);
});

describe('pre-warm on a burst', () => {
  it("starts the burst's instances up to its share of the cap while every slot is busy; they serve it", async () => {
    await update({ prewarmQueueDepth: 3, keepAliveS: 120 });
    expect(await live(FN_A)).toEqual([]);

    // Every slot held by another checkpoint's long tasks (40 ms a step at 1024×1024: about 12 s).
    const blockers: string[] = [];
    for (let i = 0; i < CAP; i++) blockers.push(await submit(DEMO_MODEL_2, 300, 1024));
    await until('the blockers hold every slot', async () => {
      const held = new Set((await semaphore()).holders.map((h) => h.workflowId));
      return blockers.every((id) => held.has(id)) ? true : undefined;
    });

    const burst: string[] = [];
    for (let i = 0; i < 5; i++) burst.push(await submit(DEMO_MODEL, 2));
    // The share: the whole cap (no other checkpoint waits), below the burst's 5 tasks and maxInstances 4.
    const warmed = await until('the burst pre-warmed', async () => {
      const instances = await live(FN_A);
      return instances.length === CAP && instances.every((i) => i.state === 'idle') ? instances : undefined;
    });
    const state = await semaphore();
    expect(state.holders.map((h) => h.workflowId).sort()).toEqual([...blockers].sort());
    expect(state.queue.filter((w) => burst.includes(w.workflowId))).toHaveLength(burst.length);
    // No more than the share, however often the workers look again.
    await sleep(1500);
    expect((await live(FN_A)).map((i) => i.id).sort()).toEqual(warmed.map((i) => i.id).sort());

    const warmedAt = Date.now();
    const warmSims = new Set(await Promise.all(warmed.map((i) => simPidOf(i))));
    const results = await Promise.all([...blockers, ...burst].map((id) => waitForFinal(stack.url, id, 120_000)));
    expect(results.map((r) => r.status)).toEqual(Array(blockers.length + burst.length).fill('succeeded'));

    // The burst ran on the pre-warmed instances only.
    const burstJobs = readBusyIntervals(stack.statsDir).filter((i) => i.start >= warmedAt);
    expect(burstJobs).toHaveLength(burst.length);
    expect(burstJobs.filter((i) => !warmSims.has(i.pid ?? 0))).toEqual([]);

    expect(maxOverlap(readBusyIntervals(stack.statsDir))).toBeLessThanOrEqual(CAP);
  }, 180_000);
});
