import { readFileSync } from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { createMetaStore } from '../../src/platform/index.js';
import { maxOverlap, readBusyIntervals } from '../../src/sim/stats.js';
import { semaphoreStateQuery } from '../../src/workflows/definitions.js';
import { call, DEMO_MODEL, DEMO_MODEL_2, type Stack, startStack } from '../helpers/stack.js';

// 500 async tasks submitted at once with SDFLOW_MAX_CONCURRENCY=8: the semaphore takes the burst of acquires,
// every task succeeds, the simulators never run more than 8 jobs at once, and no request answers 5xx. Submit latency
// and the peak RSS of the API and the worker are reported (measured, not asserted).

const TASKS = 500;
const LIMIT = 8;
let stack: Stack;
let client: Client;

beforeAll(async () => {
  stack = await startStack({
    env: {
      SDFLOW_MAX_CONCURRENCY: String(LIMIT),
      SDFLOW_FUNCTION_MAX_INSTANCES: '4',
      SDFLOW_SIM_STEP_MS: '10',
      SDFLOW_SIM_VAE_MS: '5',
    },
  });
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
});

afterAll(async () => {
  await client?.connection.close();
  await stack?.stop();
});

/** Peak resident memory of a process, from the kernel's high-water mark. */
const peakRssMb = (pid: number) =>
  Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];

it(`runs ${TASKS} tasks submitted at once, never more than ${LIMIT} at a time, with no 5xx`, async () => {
  const semaphore = client.workflow.getHandle(`sdflow-semaphore-${stack.env.SDFLOW_DEPLOYMENT}`);
  let peakHolders = 0;
  let samples = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const s = await semaphore.query(semaphoreStateQuery).catch(() => undefined);
      if (s) {
        samples++;
        peakHolders = Math.max(peakHolders, s.holders.length);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();

  const started = Date.now();
  const submits = await Promise.all(
    Array.from({ length: TASKS }, async (_, i) => {
      const t0 = performance.now();
      const r = await call(
        stack.url,
        'POST',
        '/txt2img',
        {
          stable_diffusion_model: i % 2 ? DEMO_MODEL : DEMO_MODEL_2,
          prompt: `load ${i}`,
          steps: 4,
          width: 256,
          height: 256,
        },
        { 'Request-Type': 'async' },
      );
      return { status: r.status, ms: performance.now() - t0 };
    }),
  );
  const submitWall = Date.now() - started;
  expect(submits.filter((s) => s.status >= 500)).toEqual([]);
  expect(submits.every((s) => s.status === 200)).toBe(true);

  const meta = await createMetaStore(loadConfig({ ...process.env, ...stack.env }));
  try {
    const deadline = Date.now() + 540_000;
    for (;;) {
      const open = await meta.listTasks({ status: ['waiting', 'running'], limit: 1 });
      if (open.items.length === 0) break;
      if (Date.now() > deadline) throw new Error('tasks still open after 9 minutes');
      await new Promise((r) => setTimeout(r, 1000));
    }
    const done = Date.now() - started;
    let succeeded = 0;
    let cursor: string | undefined;
    do {
      const page = await meta.listTasks({ status: ['succeeded'], limit: 1000, cursor });
      succeeded += page.items.length;
      cursor = page.cursor;
    } while (cursor);
    expect(succeeded).toBe(TASKS);

    sampling = false;
    await sampler;
    const simPeak = maxOverlap(readBusyIntervals(stack.statsDir));
    expect(simPeak).toBeLessThanOrEqual(LIMIT);
    expect(peakHolders).toBeLessThanOrEqual(LIMIT);

    const latencies = submits.map((s) => s.ms).sort((a, b) => a - b);
    const report = {
      tasks: TASKS,
      limit: LIMIT,
      submitWallMs: submitWall,
      submitP50Ms: Math.round(percentile(latencies, 50)),
      submitP99Ms: Math.round(percentile(latencies, 99)),
      allDoneS: Math.round(done / 100) / 10,
      simulatorPeakConcurrency: simPeak,
      semaphorePeakHolders: peakHolders,
      semaphoreSamples: samples,
      apiPeakRssMb: Math.round(peakRssMb(stack.api.child.pid!)),
      workerPeakRssMb: Math.round(peakRssMb(stack.workers[0].child.pid!)),
    };
    console.log(`load report: ${JSON.stringify(report)}`);
  } finally {
    sampling = false;
    await meta.close();
  }
}, 600_000);
