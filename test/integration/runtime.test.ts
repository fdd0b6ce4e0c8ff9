import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalFunctionRuntime } from '../../src/platform/functions/local/client.js';
import { functionNameFor } from '../../src/platform/functions/naming.js';
import { FunctionNotFoundError, type RuntimeFunction } from '../../src/platform/functions/port.js';
import type { AgentEvent, ErrorEvent, ProgressEvent, ResultEvent } from '../../src/protocol/events.js';
import type { InvokeRequest } from '../../src/protocol/invoke.js';
import { maxOverlap, readBusyIntervals } from '../../src/sim/stats.js';
import {
  cleanup,
  isAlive,
  isPng,
  makeTestEnv,
  processesOf,
  type RuntimeProcess,
  startRuntimeProcess,
  type TestEnv,
  waitFor,
} from '../helpers/runtime-procs.js';

// The local function runtime as real processes: `sdflow runtime` spawning `sdflow agent` instances, each with its
// own simulator, driven over HTTP through LocalFunctionRuntime and raw requests.

const MODEL_A = 'rt-model-a.safetensors';
const MODEL_B = 'rt-model-b.safetensors';
const MODEL_C = 'rt-model-c.safetensors';
const FN_A = functionNameFor(MODEL_A);
const FN_B = functionNameFor(MODEL_B);
const FN_C = functionNameFor(MODEL_C);

type InstanceView = { id: string; busy: boolean; pid: number; port: number; state: string };

let t: TestEnv;
let runtime: RuntimeProcess;
let client: LocalFunctionRuntime;
let taskSeq = 0;

const taskId = () => `rt${Date.now().toString(36)}x${++taskSeq}`;

function txt2img(model: string, params: Record<string, unknown> = {}, id = taskId()): InvokeRequest {
  return {
    taskId: id,
    user: 'alice',
    kind: 'txt2img',
    model,
    params: { prompt: 'a lighthouse', steps: 20, width: 512, height: 512, seed: 42, ...params },
  };
}

async function collect(fn: string, request: InvokeRequest, onEvent?: (event: AgentEvent) => void) {
  const events: AgentEvent[] = [];
  for await (const event of client.invoke(fn, request, { signal: new AbortController().signal })) {
    events.push(event);
    onEvent?.(event);
  }
  return events;
}

const last = (events: AgentEvent[]) => events[events.length - 1];

function expectResult(events: AgentEvent[]): ResultEvent {
  const end = last(events);
  if (end.type !== 'result') throw new Error(`expected a result, got ${JSON.stringify(end)}`);
  return end;
}

async function instancesOf(fn: string): Promise<InstanceView[]> {
  const res = await fetch(`${runtime.url}/functions/${fn}`);
  expect(res.status).toBe(200);
  return ((await res.json()) as RuntimeFunction).instances as unknown as InstanceView[];
}

const objectPath = (key: string) => join(t.dataDir, 'objects', key);

beforeAll(async () => {
  t = makeTestEnv([MODEL_A, MODEL_B, MODEL_C], {
    SDFLOW_FUNCTION_MAX_INSTANCES: '2',
    SDFLOW_KEEP_ALIVE_S: '600',
    SDFLOW_INSTANCE_START_TIMEOUT_S: '90',
  });
  runtime = await startRuntimeProcess(t);
  client = new LocalFunctionRuntime({ url: runtime.url });
});

afterAll(async () => {
  await runtime?.stop();
  if (t) cleanup(t);
});

describe('local function runtime', () => {
  it('validates function names and answers unknown functions with 404', async () => {
    const bad = await fetch(`${runtime.url}/functions/not-a-function`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL_A }),
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { message: string }).message).toMatch(/invalid function name/);

    const unknown = functionNameFor('no-such-model.safetensors');
    expect((await fetch(`${runtime.url}/functions/${unknown}`)).status).toBe(404);
    const invoke = await fetch(`${runtime.url}/functions/${unknown}/invoke`, {
      method: 'POST',
      body: JSON.stringify(txt2img('no-such-model.safetensors')),
    });
    expect(invoke.status).toBe(404);
    expect(await invoke.json()).toHaveProperty('message');
    await expect(collect(unknown, txt2img('no-such-model.safetensors'))).rejects.toBeInstanceOf(FunctionNotFoundError);
    await expect(client.passthrough(unknown, { method: 'GET', path: '/sdapi/v1/sd-models' })).rejects.toBeInstanceOf(
      FunctionNotFoundError,
    );
  });

  it('ends the invoke with a retryable error event when no instance can start', async () => {
    const model = 'rt-broken.safetensors';
    const fn = functionNameFor(model);
    // An invalid setting makes the agent refuse to start, on both spawn attempts. (A function's env cannot empty
    // SD_MODEL: the platform's variables win over it.)
    await client.ensureFunction({ functionName: fn, model, resources: { env: { SDFLOW_SD_START_TIMEOUT_S: '0' } } });
    const events = await collect(fn, txt2img(model));
    expect(events[0]).toMatchObject({ type: 'progress', phase: 'starting' });
    const end = last(events) as ErrorEvent;
    expect(end).toMatchObject({ type: 'error', kind: 'internal', retryable: true });
    expect(end.message).toMatch(/failed to start/);
    await waitFor('the failed instance to be cleared', async () => (await instancesOf(fn)).length === 0);
    expect(processesOf(t.dataDir).filter((p) => p.pid !== runtime.pid)).toEqual([]);
    await client.deleteFunction(fn);
  });

  it('creates a function and runs txt2img: starting, rising sampling progress, then a result with PNG keys', async () => {
    await client.ensureFunction({ functionName: FN_A, model: MODEL_A, resources: {} });
    // ensure is idempotent
    await client.ensureFunction({ functionName: FN_A, model: MODEL_A, resources: {} });
    expect((await client.listFunctions()).map((f) => f.functionName)).toContain(FN_A);

    const id = taskId();
    // Enough steps for several of the agent's progress polls, however loaded the machine.
    const events = await collect(FN_A, txt2img(MODEL_A, { batch_size: 2, steps: 100 }, id));
    const progress = events.filter((e): e is ProgressEvent => e.type === 'progress');
    expect(progress[0].phase).toBe('starting');
    const sampling = progress.filter((e) => e.phase === 'sampling').map((e) => e.progress);
    expect(sampling.length).toBeGreaterThanOrEqual(2);
    expect(new Set(sampling).size).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < sampling.length; i++) expect(sampling[i]).toBeGreaterThanOrEqual(sampling[i - 1]);
    expect(progress.some((e) => e.phase === 'uploading')).toBe(true);

    const result = expectResult(events);
    expect(result.images).toEqual([`images/alice/${id}_1.png`, `images/alice/${id}_2.png`]);
    for (const key of result.images) expect(isPng(readFileSync(objectPath(key)))).toBe(true);
    expect(JSON.parse(result.info).all_seeds).toEqual([42, 43]);
    expect(result.parameters.prompt).toBe('a lighthouse');
    expect(JSON.stringify(result.parameters).length).toBeLessThan(10_000);
    expect(await instancesOf(FN_A)).toHaveLength(1);
  });

  it('reuses the warm instance, and a retried invoke rewrites the same keys with the same bytes', async () => {
    const [before] = await instancesOf(FN_A);
    const id = taskId();
    const first = expectResult(await collect(FN_A, txt2img(MODEL_A, { seed: 7, subseed: 9 }, id)));
    const bytes = readFileSync(objectPath(first.images[0]));
    const events = await collect(FN_A, txt2img(MODEL_A, { seed: 7, subseed: 9 }, id));
    expect(events.some((e) => e.type === 'progress' && e.phase === 'starting')).toBe(false);
    const second = expectResult(events);
    expect(second.images).toEqual(first.images);
    expect(readFileSync(objectPath(second.images[0])).equals(bytes)).toBe(true);

    const after = await instancesOf(FN_A);
    expect(after.map((i) => [i.id, i.pid])).toEqual([[before.id, before.pid]]);
    const stats = await client.passthrough(FN_A, { method: 'GET', path: '/sim/stats' });
    expect(stats.status).toBe(200);
    expect(JSON.parse(stats.body.toString()).modelLoads).toBe(1);
  });

  it("serves the agent's healthz, initialize and /sd passthrough, and the runtime's proxy", async () => {
    const [instance] = await instancesOf(FN_A);
    const agent = `http://127.0.0.1:${instance.port}`;
    const health = await fetch(`${agent}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({
      status: 'ok',
      instanceId: instance.id,
      functionName: FN_A,
      model: MODEL_A,
      busy: false,
      sdReady: true,
    });
    const init = await fetch(`${agent}/initialize`, { method: 'POST' });
    expect(init.status).toBe(200);
    const models = await fetch(`${agent}/sd/sdapi/v1/sd-models`);
    expect(models.status).toBe(200);
    const titles = ((await models.json()) as { title: string }[]).map((m) => m.title);
    expect(titles.some((title) => title.startsWith(`${MODEL_A} [`))).toBe(true);

    const proxied = await client.passthrough(FN_A, { method: 'GET', path: '/sdapi/v1/options' });
    expect(proxied.status).toBe(200);
    expect(JSON.parse(proxied.body.toString()).sd_model_checkpoint).toMatch(new RegExp(`^${MODEL_A} \\[`));
    const missing = await client.passthrough(FN_A, { method: 'GET', path: '/sdapi/v1/no-such-route' });
    expect(missing.status).toBe(404);
  });

  it('runs img2img from an object key, base64 and a data URL', async () => {
    const source = expectResult(await collect(FN_A, txt2img(MODEL_A, { width: 256, height: 256 })));
    const key = source.images[0];
    const base64 = readFileSync(objectPath(key)).toString('base64');
    for (const ref of [key, base64, `data:image/png;base64,${base64}`]) {
      const id = taskId();
      const events = await collect(FN_A, {
        taskId: id,
        user: 'alice',
        kind: 'img2img',
        model: MODEL_A,
        params: { prompt: 'a boat', steps: 10, width: 256, height: 256, seed: 3, init_images: [ref], mask: key },
      });
      const result = expectResult(events);
      expect(result.images).toEqual([`images/alice/${id}_1.png`]);
      expect(isPng(readFileSync(objectPath(result.images[0])))).toBe(true);
      // parameters carry the request's references, never image data
      expect(result.parameters.init_images).toEqual([ref]);
      expect(result.parameters.mask).toBe(key);
    }
  });

  it('refuses references it may not follow and input SD rejects, naming the field', async () => {
    const cases: { params: Record<string, unknown>; field: RegExp }[] = [
      { params: { init_images: ['images/bob/x_1.png'] }, field: /^init_images\[0\]: .*not one of the caller's own/ },
      { params: { init_images: ['inputs/alice/none/init.png'] }, field: /^init_images\[0\]: object not found/ },
      { params: { init_images: ['images/alice/../bob/x.png'] }, field: /^init_images\[0\]: object key must not/ },
      {
        params: {
          init_images: [],
          alwayson_scripts: { controlnet: { args: [{ enabled: true, image: 'images/bob/y_1.png' }] } },
        },
        field: /^alwayson_scripts\.controlnet\.args\[0\]\.image: /,
      },
    ];
    for (const c of cases) {
      const events = await collect(FN_A, {
        taskId: taskId(),
        user: 'alice',
        kind: 'img2img',
        model: MODEL_A,
        params: { prompt: 'x', steps: 5, ...c.params },
      });
      const end = last(events) as ErrorEvent;
      expect(end).toMatchObject({ type: 'error', kind: 'bad_input', retryable: false });
      expect(end.message).toMatch(c.field);
    }
    const rejected = last(await collect(FN_A, txt2img(MODEL_A, { steps: 0 }))) as ErrorEvent;
    expect(rejected).toMatchObject({ type: 'error', kind: 'bad_input', status: 422, retryable: false });
    expect(rejected.message).toMatch(/steps/);
  });

  it('queues invokes beyond maxInstances and never runs more than that at once', async () => {
    await client.ensureFunction({ functionName: FN_B, model: MODEL_B, resources: { maxInstances: 2 } });
    const started = Date.now();
    let peak = 0;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        peak = Math.max(peak, (await instancesOf(FN_B)).length);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const runs = await Promise.all(
      Array.from({ length: 5 }, (_, i) => collect(FN_B, txt2img(MODEL_B, { steps: 15, seed: 100 + i }))),
    );
    watching = false;
    await watcher;
    for (const events of runs) expectResult(events);
    expect(peak).toBeLessThanOrEqual(2);
    expect(await instancesOf(FN_B)).toHaveLength(2);

    const intervals = readBusyIntervals(t.statsDir).filter((i) => i.start >= started);
    expect(intervals).toHaveLength(5);
    expect(maxOverlap(intervals)).toBeLessThanOrEqual(2);
    expect(new Set(intervals.map((i) => i.pid)).size).toBeLessThanOrEqual(2);

    // restart recycles the idle instances now
    const pids = (await instancesOf(FN_B)).map((i) => i.pid);
    await client.restartInstances(FN_B);
    await waitFor('the recycled instances to stop', async () => (await instancesOf(FN_B)).length === 0);
    for (const pid of pids) await waitFor(`pid ${pid} to exit`, () => !isAlive(pid));
    await client.deleteFunction(FN_B);
    expect((await fetch(`${runtime.url}/functions/${FN_B}`)).status).toBe(404);
    await client.deleteFunction(FN_B);
  });

  it('interrupts SD within ~2 s when the invoke is aborted mid-sampling, and the instance stays usable', async () => {
    const [instance] = await instancesOf(FN_A);
    const controller = new AbortController();
    let abortedAt = 0;
    const request = txt2img(MODEL_A, { steps: 400 });
    await expect(
      (async () => {
        for await (const event of client.invoke(FN_A, request, { signal: controller.signal })) {
          if (event.type === 'progress' && event.phase === 'sampling' && event.progress > 0.02 && !abortedAt) {
            abortedAt = Date.now();
            controller.abort();
          }
        }
      })(),
    ).rejects.toThrow();
    expect(abortedAt).toBeGreaterThan(0);

    const interruptedEnd = await waitFor(
      'the simulator to record an interrupted job',
      () => {
        for (const file of readdirStats()) {
          for (const line of readFileSync(file, 'utf8').split('\n')) {
            if (!line) continue;
            const e = JSON.parse(line) as { event: string; t: number; interrupted?: boolean };
            if (e.event === 'end' && e.interrupted && e.t >= abortedAt) return e;
          }
        }
        return undefined;
      },
      10_000,
    );
    expect(interruptedEnd.t - abortedAt).toBeLessThan(2000);

    const events = await collect(FN_A, txt2img(MODEL_A, { steps: 5 }));
    expectResult(events);
    expect((await instancesOf(FN_A)).map((i) => i.id)).toEqual([instance.id]);
  });

  it('reaps an instance idle longer than its keep-alive, keeping its time in the function usage', async () => {
    await client.ensureFunction({ functionName: FN_C, model: MODEL_C, resources: { keepAliveS: 1 } });
    const { usage } = expectResult(await collect(FN_C, txt2img(MODEL_C, { steps: 5 })));
    const [instance] = await instancesOf(FN_C);
    expect(instance).toBeDefined();
    // The instance's first invoke carries its cold start.
    expect(usage).toMatchObject({
      coldStartS: expect.any(Number),
      activeS: expect.any(Number),
      idleS: expect.any(Number),
    });
    expect(usage!.coldStartS).toBeGreaterThan(0);
    // Its simulator's own account: the simulator started, listened and loaded the checkpoint within the instance's
    // cold start, and its job ran within the invoke's active time.
    const sim = (await (await fetch(`http://127.0.0.1:${instance.port}/sd/sim/stats`)).json()) as {
      accounting: { coldStartS: number; activeS: number };
      busyIntervals: { start: number; end: number; kind: string }[];
    };
    const heldS = (kind: string) =>
      sim.busyIntervals.filter((i) => i.kind === kind).reduce((s, i) => s + (i.end - i.start) / 1000, 0);
    expect(sim.accounting.coldStartS + heldS('load')).toBeLessThanOrEqual(usage!.coldStartS);
    expect(heldS('txt2img')).toBeLessThanOrEqual(usage!.activeS);
    await waitFor('the idle instance to be reaped', async () => (await instancesOf(FN_C)).length === 0, 15_000);
    await waitFor(`pid ${instance.pid} to exit`, () => !isAlive(instance.pid));
    const fn = (await (await fetch(`${runtime.url}/functions/${FN_C}`)).json()) as RuntimeFunction;
    expect(fn.usage).toMatchObject({ coldStartS: usage!.coldStartS, activeS: expect.any(Number), invokes: 1 });
    expect(fn.usage!.activeS).toBeGreaterThanOrEqual(usage!.activeS);
    // Idle until the keep-alive of 1 s reaped it.
    expect(fn.usage!.idleS).toBeGreaterThan(1);
  });

  it('ends the stream with a retryable error when the agent dies mid-invoke, then serves on a fresh instance', async () => {
    const [instance] = await instancesOf(FN_A);
    const simStats = await fetch(`http://127.0.0.1:${instance.port}/sd/sim/stats`);
    const simPid = ((await simStats.json()) as { pid: number }).pid;
    let killed = false;
    const events = await collect(FN_A, txt2img(MODEL_A, { steps: 400 }), (event) => {
      if (!killed && event.type === 'progress' && event.phase === 'sampling') {
        killed = true;
        process.kill(instance.pid, 'SIGKILL');
      }
    });
    expect(killed).toBe(true);
    const end = last(events) as ErrorEvent;
    expect(end).toMatchObject({ type: 'error', kind: 'internal', retryable: true });
    expect(end.message).toMatch(/failed mid-request/);
    await waitFor('the orphaned simulator to be killed', () => !isAlive(simPid));
    expect(await instancesOf(FN_A)).toHaveLength(0);

    expectResult(await collect(FN_A, txt2img(MODEL_A, { steps: 5 })));
    const fresh = await instancesOf(FN_A);
    expect(fresh).toHaveLength(1);
    expect(fresh[0].id).not.toBe(instance.id);
  });

  it('re-adopts its idle instance after a crash, drops a stale record, and duplicates nothing', async () => {
    const [instance] = await instancesOf(FN_A);
    const agentsBefore = processesOf(t.dataDir).filter((p) => / agent$/.test(p.cmdline));
    expect(agentsBefore.map((p) => p.pid)).toEqual([instance.pid]);

    runtime.child.kill('SIGKILL');
    await runtime.exited;
    expect(isAlive(instance.pid)).toBe(true);

    // A record whose process is long gone, as a crash during a stop could leave behind.
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    const instancesFile = join(t.dataDir, 'runtime', 'instances.json');
    const records = JSON.parse(readFileSync(instancesFile, 'utf8')) as { id: string }[];
    expect(records.map((r) => r.id)).toEqual([instance.id]);
    const stale = {
      id: 'i-stale',
      functionName: FN_A,
      model: MODEL_A,
      pid: dead,
      port: 1,
      startedAt: new Date().toISOString(),
    };
    writeFileSync(instancesFile, JSON.stringify([...records, stale]));

    runtime = await startRuntimeProcess(t, runtime.port);
    const adopted = await instancesOf(FN_A);
    expect(adopted.map((i) => [i.id, i.pid])).toEqual([[instance.id, instance.pid]]);
    const recorded = JSON.parse(readFileSync(instancesFile, 'utf8')) as { id: string }[];
    expect(recorded.map((r) => r.id)).toEqual([instance.id]);

    expectResult(await collect(FN_A, txt2img(MODEL_A, { steps: 5 })));
    expect((await instancesOf(FN_A)).map((i) => i.id)).toEqual([instance.id]);
    const agentsAfter = processesOf(t.dataDir).filter((p) => / agent$/.test(p.cmdline));
    expect(agentsAfter.map((p) => p.pid)).toEqual([instance.pid]);
  });

  it('stops every instance process on a graceful stop and clears the record', async () => {
    await client.ensureFunction({ functionName: FN_C, model: MODEL_C, resources: { keepAliveS: 600 } });
    expectResult(await collect(FN_C, txt2img(MODEL_C, { steps: 5 })));
    const children = processesOf(t.dataDir).filter((p) => p.pid !== runtime.pid);
    // two instances, each an agent and its simulator
    expect(children).toHaveLength(4);

    await runtime.stop();
    expect((await runtime.exited).code).toBe(0);
    for (const { pid } of children) expect(isAlive(pid)).toBe(false);
    expect(JSON.parse(readFileSync(join(t.dataDir, 'runtime', 'instances.json'), 'utf8'))).toEqual([]);
  });
});

function readdirStats(): string[] {
  return readdirSync(t.statsDir).map((n) => join(t.statsDir, n));
}
