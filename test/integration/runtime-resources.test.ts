import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalFunctionRuntime } from '../../src/platform/functions/local/client.js';
import { functionNameFor } from '../../src/platform/functions/naming.js';
import type { RuntimeFunction } from '../../src/platform/functions/port.js';
import type { AgentEvent, ErrorEvent } from '../../src/protocol/events.js';
import type { InvokeRequest } from '../../src/protocol/invoke.js';
import { readBusyIntervals } from '../../src/sim/stats.js';
import {
  cleanup,
  isAlive,
  makeTestEnv,
  type RuntimeProcess,
  startRuntimeProcess,
  type TestEnv,
  waitFor,
} from '../helpers/runtime-procs.js';

// Function resources in the local runtime, on real processes: env and extraArgs reach new instances (and replace the
// old ones), limits apply at once without a restart, a timeout ends a request that runs too long, and the resources
// it cannot apply are recorded for a cloud runtime.

const MODEL = 'res-model.safetensors';
const FN = functionNameFor(MODEL);

type InstanceView = { id: string; pid: number; state: string };
type FunctionView = Omit<RuntimeFunction, 'instances'> & { instances: InstanceView[] };

let t: TestEnv;
let runtime: RuntimeProcess;
let client: LocalFunctionRuntime;
let seq = 0;

const request = (params: Record<string, unknown> = {}): InvokeRequest => ({
  taskId: `res${Date.now().toString(36)}x${++seq}`,
  user: 'alice',
  kind: 'txt2img',
  model: MODEL,
  params: { prompt: 'p', steps: 3, width: 64, height: 64, seed: 1, ...params },
});

async function collect(req: InvokeRequest): Promise<AgentEvent[]> {
  const events: AgentEvent[] = [];
  for await (const event of client.invoke(FN, req, { signal: new AbortController().signal })) events.push(event);
  return events;
}

async function describeFn(): Promise<FunctionView> {
  const res = await fetch(`${runtime.url}/functions/${FN}`);
  expect(res.status).toBe(200);
  return (await res.json()) as FunctionView;
}

const live = async () => (await describeFn()).instances.filter((i) => i.state !== 'stopping');
const environ = (pid: number) => readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');

beforeAll(async () => {
  t = makeTestEnv([MODEL], { SDFLOW_FUNCTION_MAX_INSTANCES: '4', SDFLOW_KEEP_ALIVE_S: '600' });
  runtime = await startRuntimeProcess(t);
  client = new LocalFunctionRuntime({ url: runtime.url });
});

afterAll(async () => {
  await runtime?.stop();
  if (t) cleanup(t);
});

describe('function resources in the local runtime', () => {
  it('records what it cannot apply and shows the limits in effect', async () => {
    const resources = {
      env: { SDFLOW_TEST_FLAG: 'one' },
      extraArgs: '--api --xformers',
      image: 'registry.example/sd:1',
      cpu: 8,
      memorySize: 32768,
      gpuMemorySize: 24576,
      instanceType: 'fc.gpu.ampere.1',
      nasConfig: { mountPoints: [{ serverAddr: 'nas', mountDir: '/mnt/auto' }] },
    };
    await client.ensureFunction({ functionName: FN, model: MODEL, resources });
    const fn = await describeFn();
    expect(fn.resources).toEqual(resources);
    expect(fn.limits).toEqual({ maxInstances: 4, keepAliveS: 600, minInstances: 0 });
    const recorded = JSON.parse(readFileSync(join(t.dataDir, 'runtime', 'functions.json'), 'utf8'));
    expect(recorded).toContainEqual({ functionName: FN, model: MODEL, resources });
  });

  it('starts instances with the env and extraArgs', async () => {
    expect((await collect(request())).at(-1)?.type).toBe('result');
    const [instance] = await live();
    expect(environ(instance.pid)).toEqual(
      expect.arrayContaining(['SDFLOW_TEST_FLAG=one', 'SDFLOW_SD_EXTRA_ARGS=--api --xformers', `SD_MODEL=${MODEL}`]),
    );
  });

  it('applies limits at once and keeps the instances', async () => {
    const [before] = await live();
    const current = (await describeFn()).resources;
    await client.ensureFunction({
      functionName: FN,
      model: MODEL,
      resources: { ...current, maxInstances: 2, keepAliveS: 300, cpu: 4 },
    });
    const fn = await describeFn();
    expect(fn.limits).toEqual({ maxInstances: 2, keepAliveS: 300, minInstances: 0 });
    expect(fn.instances.map((i) => [i.id, i.state])).toEqual([[before.id, 'idle']]);
    expect(isAlive(before.pid)).toBe(true);
  });

  it('a lowered maxInstances stops the idle instances beyond it now', async () => {
    // Two requests at once need two instances.
    await Promise.all([collect(request({ steps: 20 })), collect(request({ steps: 20 }))]);
    expect(await live()).toHaveLength(2);
    const current = (await describeFn()).resources;
    await client.ensureFunction({ functionName: FN, model: MODEL, resources: { ...current, maxInstances: 1 } });
    await waitFor('one instance to be left', async () => (await live()).length === 1);
    expect((await describeFn()).limits?.maxInstances).toBe(1);
  });

  it('a changed env replaces the instances, and new ones carry it', async () => {
    const [old] = await live();
    const current = (await describeFn()).resources;
    await client.ensureFunction({
      functionName: FN,
      model: MODEL,
      resources: { ...current, env: { SDFLOW_TEST_FLAG: 'two' } },
    });
    await waitFor('the old instance to stop', () => !isAlive(old.pid));
    expect((await collect(request())).at(-1)?.type).toBe('result');
    const [fresh] = await live();
    expect(fresh.id).not.toBe(old.id);
    expect(environ(fresh.pid)).toContain('SDFLOW_TEST_FLAG=two');
  });

  it('ends a request that runs longer than the timeout with a retryable error, and SD stops the job', async () => {
    const current = (await describeFn()).resources;
    await client.ensureFunction({ functionName: FN, model: MODEL, resources: { ...current, timeout: 1 } });
    const started = Date.now();
    const events = await collect(request({ steps: 400, width: 512, height: 512 }));
    const end = events.at(-1) as ErrorEvent;
    expect(end).toMatchObject({ type: 'error', kind: 'deadline', retryable: true });
    expect(end.message).toMatch(/longer than the function's timeout of 1s/);
    expect(Date.now() - started).toBeLessThan(5000);
    const job = await waitFor(
      'the simulator to end the job',
      () => readBusyIntervals(t.statsDir).find((j) => j.start >= started - 100 && !j.open),
      10_000,
    );
    expect(job.end - started).toBeLessThan(4000);
    // Short requests still fit, on the same instance.
    const [instance] = await live();
    expect((await collect(request({ steps: 2 }))).at(-1)?.type).toBe('result');
    expect((await live()).map((i) => i.id)).toEqual([instance.id]);
  });
});
