import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Interval, maxOverlap, readBusyIntervals } from '../../src/sim/stats.js';
import type { TaskCost } from '../../src/types.js';
import { call, DEMO_MODEL, DEMO_MODEL_2, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// Cost per task on the real stack, against the runtime's and the simulator's own accounting. A cap of 1 and one
// instance per checkpoint make the story plain: the first task on each checkpoint waits for its instance's cold
// start, the later ones find it warm after some idle time, and tasks submitted together queue for the one slot.
//
// What must agree, and why exactly:
// - Each task's gpuS, coldStartS and idleS are its invoke's part of its instance's time, as the runtime measured it;
//   the runtime's per-instance counters come from the same state changes. Summed over the tasks they must equal the
//   instances' counters to the millisecond (each task's figure is rounded to the ms, so n tasks may differ by n × 0.5
//   ms): nothing lost, nothing counted twice.
// - Each simulator job runs inside one invoke's active time (the agent calls SD after the runtime hands it the
//   instance, and the result comes after SD returns), so the simulator's busy seconds are at most Σ gpuS, on the
//   same machine clock, with no tolerance.
// - billedGpuS is the arithmetic of SDFLOW_BILLING_RATES on those figures.

const RATES = { default: { activePerS: 0.001, idlePerS: 0.0002 } };
const IDLE_RATIO = RATES.default.idlePerS / RATES.default.activePerS;
const KEYS = { alice: 'alice-secret-1', bob: 'bob-secret-12', root: 'root-secret-1' };
const auth = (user: keyof typeof KEYS) => ({ authorization: `Bearer ${KEYS[user]}` });

interface Done {
  user: 'alice' | 'bob';
  model: string;
  cost: TaskCost;
}
interface RuntimeInstance {
  id: string;
  state: string;
  usage: { coldStartS: number; activeS: number; idleS: number; invokes: number };
}

let stack: Stack;
const done: Done[] = [];

beforeAll(async () => {
  stack = await startStack({
    env: {
      SDFLOW_MAX_CONCURRENCY: '1',
      SDFLOW_FUNCTION_MAX_INSTANCES: '1',
      SDFLOW_KEEP_ALIVE_S: '600',
      SDFLOW_BILLING_RATES: JSON.stringify(RATES),
      SDFLOW_API_KEYS: `alice:user:${KEYS.alice},bob:user:${KEYS.bob},root:admin:${KEYS.root}`,
    },
  });
});

afterAll(async () => {
  await stack?.stop();
});

async function submit(user: 'alice' | 'bob', model: string, batch = 1): Promise<() => Promise<void>> {
  const body = { stable_diffusion_model: model, prompt: `cost ${user}`, steps: 8, batch_size: batch };
  const r = await call(stack.url, 'POST', '/txt2img', body, { 'Request-Type': 'async', ...auth(user) });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  const taskId: string = r.json.taskId;
  return async () => {
    const result = await waitForFinal(stack.url, taskId, 120_000, auth(user));
    expect(result.status, JSON.stringify(result)).toBe('succeeded');
    expect(result.cost.images).toBe(result.images.length);
    done.push({ user, model, cost: result.cost });
  };
}

const sum = (costs: TaskCost[], field: keyof Omit<TaskCost, 'gpuType'>) =>
  costs.reduce((total, c) => total + c[field], 0);
const seconds = (intervals: Interval[]) => intervals.reduce((total, i) => total + (i.end - i.start) / 1000, 0);

async function runtimeInstances(): Promise<RuntimeInstance[]> {
  const res = await fetch(`http://127.0.0.1:${stack.env.SDFLOW_RUNTIME_PORT}/functions`);
  const functions = (await res.json()) as { instances: RuntimeInstance[] }[];
  return functions.flatMap((f) => f.instances);
}

describe('cost per task', () => {
  it('adds up to the runtime and simulator accounting, and the cap is never exceeded', async () => {
    // A cold start on each checkpoint, then warm tasks after idle time, then two that queue together.
    await (await submit('alice', DEMO_MODEL))();
    await (await submit('alice', DEMO_MODEL, 2))();
    await (await submit('bob', DEMO_MODEL))();
    await (await submit('bob', DEMO_MODEL_2))();
    const together = await Promise.all([submit('alice', DEMO_MODEL_2), submit('bob', DEMO_MODEL_2)]);
    await Promise.all(together.map((wait) => wait()));
    const costs = done.map((d) => d.cost);

    // One cold start per checkpoint, each charged to its instance's first task.
    expect(costs.filter((c) => c.coldStartS > 0)).toHaveLength(2);
    expect(costs.every((c) => c.gpuS > 0 && c.queueS >= 0 && c.idleS >= 0 && c.gpuType === 'default')).toBe(true);
    for (const c of costs) expect(c.billedGpuS).toBeCloseTo(c.gpuS + c.coldStartS + c.idleS * IDLE_RATIO, 3);

    // The runtime's own counters: every instance is idle now, so their ended periods are all there is to charge.
    const instances = await runtimeInstances();
    expect(instances.map((i) => i.state)).toEqual(['idle', 'idle']);
    const total = (field: keyof RuntimeInstance['usage']) => instances.reduce((t, i) => t + i.usage[field], 0);
    const tolerance = costs.length * 0.0005;
    expect(total('invokes')).toBe(costs.length);
    expect(Math.abs(sum(costs, 'gpuS') - total('activeS'))).toBeLessThanOrEqual(tolerance);
    expect(Math.abs(sum(costs, 'coldStartS') - total('coldStartS'))).toBeLessThanOrEqual(tolerance);
    expect(Math.abs(sum(costs, 'idleS') - total('idleS'))).toBeLessThanOrEqual(tolerance);

    // The simulators' own record: one job per task, all within the tasks' active time, never two at once.
    const work = readBusyIntervals(stack.statsDir);
    expect(work).toHaveLength(costs.length);
    expect(seconds(work)).toBeLessThanOrEqual(sum(costs, 'gpuS'));
    expect(maxOverlap(work)).toBeLessThanOrEqual(1);
  }, 240_000);

  it('sums into /usage by user and checkpoint: a user sees their own rows, an admin everyone’s', async () => {
    expect(done).toHaveLength(6);
    const expected = (user: string) =>
      [DEMO_MODEL, DEMO_MODEL_2]
        .map((model) => {
          const costs = done.filter((d) => d.user === user && d.model === model).map((d) => d.cost);
          return {
            user,
            model,
            tasks: costs.length,
            images: sum(costs, 'images'),
            queueS: sum(costs, 'queueS'),
            coldStartS: sum(costs, 'coldStartS'),
            gpuS: sum(costs, 'gpuS'),
            billedGpuS: sum(costs, 'billedGpuS'),
          };
        })
        .sort((a, b) => a.model.localeCompare(b.model));
    const near = (rows: ReturnType<typeof expected>) =>
      rows.map((row) => ({
        ...row,
        queueS: expect.closeTo(row.queueS, 3),
        coldStartS: expect.closeTo(row.coldStartS, 3),
        gpuS: expect.closeTo(row.gpuS, 3),
        billedGpuS: expect.closeTo(row.billedGpuS, 3),
      }));

    const alice = await call(stack.url, 'GET', '/usage', undefined, auth('alice'));
    expect(alice.status).toBe(200);
    expect(alice.json.rows).toEqual(near(expected('alice')));
    expect(alice.json.rows.map((r: { images: number }) => r.images)).toEqual([3, 1]);

    const all = await call(stack.url, 'GET', '/usage', undefined, auth('root'));
    expect(all.json.rows).toEqual(near([...expected('alice'), ...expected('bob')]));
    const bobOnly = await call(stack.url, 'GET', '/usage?user=bob', undefined, auth('root'));
    expect(bobOnly.json.rows).toEqual(near(expected('bob')));

    // A window that ends before the tasks were created holds none of them.
    const before = await call(stack.url, 'GET', '/usage?to=2020-01-01T00:00:00Z', undefined, auth('root'));
    expect(before.json).toMatchObject({ from: '2019-12-31T00:00:00.000Z', rows: [] });
  });

  it("refuses another user's usage with 403, and bad windows with 400 naming the parameter", async () => {
    const asBob = await call(stack.url, 'GET', '/usage?user=alice', undefined, auth('bob'));
    expect(asBob.status).toBe(403);
    expect(asBob.json.message).toMatch(/^user:/);
    for (const [query, field] of [
      ['from=yesterday', 'from'],
      ['to=2026-13-01T00:00:00Z', 'to'],
      ['from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z', 'from'],
    ]) {
      const r = await call(stack.url, 'GET', `/usage?${query}`, undefined, auth('alice'));
      expect(r.status, query).toBe(400);
      expect(r.json.message, query).toMatch(new RegExp(`^${field}:`));
    }
  });
});
