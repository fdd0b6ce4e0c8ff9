import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { maxOverlap, readBusyIntervals } from '../../src/sim/stats.js';
import type { SemaphoreState } from '../../src/types.js';
import {
  call,
  DEMO_MODEL,
  DEMO_MODEL_2,
  type Stack,
  semaphoreState,
  startStack,
  waitForFinal,
} from '../helpers/stack.js';

// The grant order on the real stack, at a cap of 1 so that the order of grants is the order of starts: fair share
// between users, FIFO within a user and lane, lanes, aging, deadlines in the queue, and the headers' 4xx. The order
// is read from the semaphore's own lease records (`recent`, with each lease's grant time).

const AGING_S = 3;
const KEYS = {
  alice: 'alice-secret-1',
  bob: 'bob-secret-12',
  carol: 'carol-secret-1',
  dave: 'dave-secret-12',
};
const auth = (user: keyof typeof KEYS) => ({ authorization: `Bearer ${KEYS[user]}` });

let stack: Stack;
let client: Client;

beforeAll(async () => {
  stack = await startStack({
    env: {
      SDFLOW_MAX_CONCURRENCY: '1',
      SDFLOW_KEY_MAX_QUEUED: '250',
      SDFLOW_PRIORITY_AGING_S: String(AGING_S),
      SDFLOW_API_KEYS: `alice:user:${KEYS.alice},bob:user:${KEYS.bob},carol:user:${KEYS.carol};lane=low;maxLane=normal,dave:user:${KEYS.dave}`,
      SDFLOW_FUNCTION_MAX_INSTANCES: '1',
      // Once a second: in the warm-checkpoint case the blocker's instance turns idle just after its release, and a
      // report of that reaching the semaphore before a delayed release makes both checkpoints warm (the grant then
      // rightly goes by arrival). A longer period makes that window rarer; at 0.2 s the case failed once in CI.
      SDFLOW_WARMTH_REPORT_S: '1',
    },
  });
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
});

afterAll(async () => {
  await client?.connection.close();
  await stack?.stop();
});

const semaphore = () => semaphoreState(client, stack);

const small = (prompt: string) => ({ stable_diffusion_model: DEMO_MODEL, prompt, steps: 1, width: 64, height: 64 });

async function submit(user: keyof typeof KEYS, body: object, headers: Record<string, string> = {}): Promise<string> {
  const r = await call(stack.url, 'POST', '/txt2img', body, { 'Request-Type': 'async', ...auth(user), ...headers });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json.taskId;
}

/** A task that holds the only slot for about `seconds`, so that what is submitted next queues behind it. */
async function blocker(seconds: number): Promise<string> {
  // 10 ms a step at 512×512, 40 ms at 1024×1024 (the simulator scales by pixels); at most 500 steps.
  const large = seconds > 5;
  const taskId = await submit('alice', {
    ...small('blocker'),
    steps: Math.round(seconds * (large ? 25 : 100)),
    width: large ? 1024 : 512,
    height: large ? 1024 : 512,
  });
  await until(async () => (await semaphore()).holders.some((h) => h.workflowId === taskId));
  return taskId;
}

async function until(check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until every one of `ids` waits at the semaphore, then cancels the blocker: the slot frees at once. */
async function releaseWhenQueued(blocking: string, ids: string[]): Promise<void> {
  await until(async () => {
    const queued = new Set((await semaphore()).queue.map((w) => w.workflowId));
    return ids.every((id) => queued.has(id));
  });
  await call(stack.url, 'POST', `/tasks/${blocking}/cancellation`, undefined, auth('alice'));
}

/** Task ids in the order the semaphore granted them (ended leases and the current holder). */
function grantOrder(state: SemaphoreState): string[] {
  return [...(state.recent ?? []), ...state.holders].sort((a, b) => a.grantedAt - b.grantedAt).map((l) => l.workflowId);
}

const finals = (ids: string[], user: keyof typeof KEYS, timeoutMs = 120_000) =>
  Promise.all(ids.map((id) => waitForFinal(stack.url, id, timeoutMs, auth(user))));

// First, while no task has succeeded yet: the estimate then stands on its prior timings (1.6 s a slot), so a task
// behind the blocker is estimated to start later than now.
describe('estimates', () => {
  it('tells a waiting task when it should start and finish, and refuses a Task-Deadline the estimate misses', async () => {
    const blocking = await blocker(3);
    const r = await call(stack.url, 'POST', '/txt2img', small('estimated'), {
      'Request-Type': 'async',
      ...auth('alice'),
    });
    expect(r.status).toBe(200);
    // The answer never waits on the semaphore: its estimate comes from the last state the API read.
    expect(r.json.estimatedFinishS, JSON.stringify(r.json)).toBeGreaterThan(r.json.estimatedStartS);
    // Within SDFLOW_QUEUE_POSITION_MAX_AGE_MS (500) of a read, the API sees the blocker: the task starts later.
    let waiting: { status: string; phase: string; estimatedStartS?: number; estimatedFinishS?: number } = {
      status: '',
      phase: '',
    };
    await until(async () => {
      waiting = (await call(stack.url, 'GET', `/tasks/${r.json.taskId}/progress`, undefined, auth('alice'))).json;
      return (waiting.estimatedStartS ?? 0) > 0 || waiting.status !== 'waiting';
    });
    expect(waiting).toMatchObject({ status: 'waiting', phase: 'queued' });
    expect(waiting.estimatedFinishS).toBeGreaterThan(waiting.estimatedStartS ?? 0);

    const newest = async () => (await call(stack.url, 'GET', '/tasks?limit=1', undefined, auth('alice'))).json.tasks[0];
    const before = await newest();
    const big = { ...small('too big for its deadline'), steps: 400, width: 1024, height: 1024 };
    const refused = await call(stack.url, 'POST', '/txt2img', big, { ...auth('alice'), 'Task-Deadline': '2' });
    expect(refused.status).toBe(409);
    expect(refused.json.message).toMatch(/^Task-Deadline header: the task is estimated to finish in [\d.]+ s/);
    expect(refused.json.estimatedFinishS).toBeGreaterThan(2);
    expect(refused.json.estimatedStartS).toBeGreaterThanOrEqual(0);
    // No task was created.
    expect((await newest()).taskId).toBe(before.taskId);

    const results = await finals([blocking, r.json.taskId], 'alice');
    expect(results.map((x) => x.status)).toEqual(['succeeded', 'succeeded']);
    // A finished task carries no estimate.
    const ended = await call(stack.url, 'GET', `/tasks/${r.json.taskId}/progress`, undefined, auth('alice'));
    expect(ended.json.estimatedStartS).toBeUndefined();
  }, 60_000);
});

describe('fair share', () => {
  it('starts a second user’s 5 tasks among the first user’s 200, at most 2 of the first’s between them', async () => {
    // The blocker holds the only slot until everything is queued and Bob's place is read, then it is cancelled.
    const blocking = await blocker(20);
    const flood: string[] = [];
    for (let batch = 0; batch < 10; batch++) {
      flood.push(
        ...(await Promise.all(Array.from({ length: 20 }, (_, i) => submit('alice', small(`flood ${batch}.${i}`))))),
      );
    }
    await until(async () => (await semaphore()).queue.filter((w) => w.user === 'alice').length === flood.length);
    const bobs: string[] = [];
    for (let i = 0; i < 5; i++) bobs.push(await submit('bob', small(`bob ${i}`)));
    await until(async () => (await semaphore()).queue.filter((w) => w.user === 'bob').length === bobs.length);
    // Bob's last task's place is the grant order's (his 5 interleaved with Alice's: 10th), not behind the 200 of hers
    // that arrived first.
    let place: { status: string; queuePosition?: number } = { status: 'waiting' };
    await until(async () => {
      place = (await call(stack.url, 'GET', `/tasks/${bobs[4]}/progress`, undefined, auth('bob'))).json;
      return place.queuePosition !== undefined;
    });
    expect(place).toMatchObject({ status: 'waiting', queuePosition: 10 });
    await call(stack.url, 'POST', `/tasks/${blocking}/cancellation`, undefined, auth('alice'));

    const results = await finals(bobs, 'bob');
    expect(results.map((r) => r.status)).toEqual(Array(5).fill('succeeded'));
    const order = grantOrder(await semaphore());
    const firstBob = order.indexOf(bobs[0]);
    const bobPlaces = bobs.map((id) => order.indexOf(id));
    expect(bobPlaces.every((p) => p >= 0)).toBe(true);
    // Between consecutive starts of Bob's tasks, at most 2 of Alice's.
    for (let i = 1; i < bobPlaces.length; i++) expect(bobPlaces[i] - bobPlaces[i - 1] - 1).toBeLessThanOrEqual(2);
    // Within one user and lane, arrival order.
    expect([...bobPlaces].sort((a, b) => a - b)).toEqual(bobPlaces);
    // Bob's first task did not wait for the flood: only a few of Alice's started after he submitted.
    expect(order.slice(0, firstBob).filter((id) => flood.includes(id)).length).toBeLessThan(50);

    // The rest of the flood is cancelled, so that the next tests start from an empty queue.
    for (let i = 0; i < flood.length; i += 25) {
      await Promise.all(
        flood
          .slice(i, i + 25)
          .map((id) => call(stack.url, 'POST', `/tasks/${id}/cancellation`, undefined, auth('alice'))),
      );
    }
    await until(async () => (await semaphore()).queue.length === 0 && (await semaphore()).holders.length === 0);
  }, 240_000);
});

describe('lanes', () => {
  it('grants a high task before the normal ones queued ahead of it, which keep their order', async () => {
    const blocking = await blocker(20);
    const normals: string[] = [];
    for (let i = 0; i < 3; i++) normals.push(await submit('alice', small(`normal ${i}`)));
    const high = await submit('alice', small('high'), { 'Task-Priority': 'high' });
    await releaseWhenQueued(blocking, [...normals, high]);
    await finals([...normals, high], 'alice');
    const order = grantOrder(await semaphore());
    const places = normals.map((id) => order.indexOf(id));
    expect(order.indexOf(high)).toBeLessThan(Math.min(...places));
    expect([...places].sort((a, b) => a - b)).toEqual(places);
  }, 120_000);

  it(`moves a low task up a lane once it has waited SDFLOW_PRIORITY_AGING_S (${AGING_S} s)`, async () => {
    const blocking = await blocker(20);
    const aged = await submit('carol', small('low, aged'));
    await new Promise((r) => setTimeout(r, AGING_S * 1000 + 500));
    const normal = await submit('alice', small('normal'));
    const fresh = await submit('carol', small('low, fresh'));
    await releaseWhenQueued(blocking, [aged, normal, fresh]);
    await finals([aged, fresh], 'carol');
    await finals([normal], 'alice');
    const order = grantOrder(await semaphore());
    // The aged low task counts as normal and arrived first; the fresh one is still low, after the normal task.
    expect(order.indexOf(aged)).toBeLessThan(order.indexOf(normal));
    expect(order.indexOf(normal)).toBeLessThan(order.indexOf(fresh));
  }, 120_000);

  it('refuses a lane above the key’s maxLane (403) and a value that is not a lane (400), naming the header', async () => {
    const above = await call(stack.url, 'POST', '/txt2img', small('x'), { ...auth('carol'), 'Task-Priority': 'high' });
    expect(above.status).toBe(403);
    expect(above.json.message).toMatch(/^Task-Priority header: .*normal/);
    const bad = await call(stack.url, 'POST', '/txt2img', small('x'), { ...auth('alice'), 'Task-Priority': 'urgent' });
    expect(bad.status).toBe(400);
    expect(bad.json.message).toMatch(/^Task-Priority header: must be one of high, normal, low/);
    const dropIn = await call(
      stack.url,
      'POST',
      '/sdapi/v1/txt2img',
      { prompt: 'x' },
      {
        ...auth('carol'),
        'Task-Priority': 'high',
      },
    );
    expect(dropIn.status).toBe(403);
    const deadline = await call(stack.url, 'POST', '/txt2img', small('x'), { ...auth('alice'), 'Task-Deadline': '-3' });
    expect(deadline.status).toBe(400);
    expect(deadline.json.message).toMatch(/^Task-Deadline header: /);
  });
});

describe('warm checkpoints', () => {
  it('gives a free slot to the task whose checkpoint has an idle instance when fairness leaves a choice', async () => {
    await finals([await submit('alice', { ...small('warm up 2'), stable_diffusion_model: DEMO_MODEL_2 })], 'alice');
    // The first checkpoint's only instance runs the blocker; the second's idles, and the worker says so.
    // It ends on its own (its slot released when SD returns, its instance still busy): a cancel would free the
    // instance before the slot, and the worker could report it idle in between.
    // Long enough that both tasks below wait at the semaphore before it ends, even on a loaded machine.
    const blocking = await blocker(12);
    await until(async () => {
      const warm = (await semaphore()).warm ?? {};
      return (warm[DEMO_MODEL_2] ?? 0) > 0 && (warm[DEMO_MODEL] ?? 0) === 0;
    });
    // Two users level in share and lane: Bob first in time, for the busy checkpoint; Dave after, for the idle one.
    const bobs = await submit('bob', small('needs the busy checkpoint'));
    const daves = await submit('dave', { ...small('has an idle instance'), stable_diffusion_model: DEMO_MODEL_2 });
    await until(async () => {
      const state = await semaphore();
      const queued = new Set(state.queue.map((w) => w.workflowId));
      return queued.has(bobs) && queued.has(daves);
    });
    // The choice is the grant's, not the order of arrival: both waited while the blocker still held the slot.
    expect((await semaphore()).holders.map((h) => h.workflowId)).toEqual([blocking]);
    await finals([bobs], 'bob');
    await finals([daves], 'dave');
    await finals([blocking], 'alice');
    const order = grantOrder(await semaphore());
    expect(order.indexOf(daves)).toBeLessThan(order.indexOf(bobs));
  }, 60_000);
});

describe('deadlines', () => {
  it('fails a task whose Task-Deadline passes while it waits, with errorKind task_deadline and no slot', async () => {
    // The blocker outlasts the deadline by far, even on a loaded machine; it is cancelled once the check is done.
    const blocking = await blocker(12);
    const late = await submit('alice', small('too late'), { 'Task-Deadline': '1' });
    const result = await waitForFinal(stack.url, late, 30_000, auth('alice'));
    expect(result).toMatchObject({ status: 'failed', errorKind: 'task_deadline', images: [] });
    expect(result.message).toMatch(/Task-Deadline/);
    // It ended while the blocker still held the only slot, and was never granted one.
    expect((await semaphore()).holders.map((h) => h.workflowId)).toEqual([blocking]);
    const listed = await call(stack.url, 'GET', '/tasks?status=failed', undefined, auth('alice'));
    expect(listed.json.tasks.find((t: { taskId: string }) => t.taskId === late)).toMatchObject({
      errorKind: 'task_deadline',
    });
    await call(stack.url, 'POST', `/tasks/${blocking}/cancellation`, undefined, auth('alice'));
    await finals([blocking], 'alice');
    expect(grantOrder(await semaphore())).not.toContain(late);
  }, 60_000);

  it('runs a task that starts before its Task-Deadline as usual', async () => {
    const onTime = await submit('alice', small('on time'), { 'Task-Deadline': '60' });
    expect((await waitForFinal(stack.url, onTime, 30_000, auth('alice'))).status).toBe('succeeded');
  });
});

it('never ran more than the cap of 1 job at once', () => {
  expect(maxOverlap(readBusyIntervals(stack.statsDir))).toBe(1);
});
