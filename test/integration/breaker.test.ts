import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { maxOverlap, readBusyIntervals } from '../../src/sim/stats.js';
import {
  call,
  DEMO_MODEL,
  DEMO_MODEL_2,
  type Stack,
  semaphoreState,
  startStack,
  waitForFinal,
} from '../helpers/stack.js';

// The circuit breaker per checkpoint on the real stack. A checkpoint's function gets a fault injected through its
// env (SDFLOW_SIM_FAULT, which its instances' simulator reads): its instances crash or run out of memory, the breaker
// opens, new tasks for it get a 503 while the tasks already queued wait, and once the function is healthy again a
// probe closes the breaker (or an admin lifts the quarantine). The other checkpoint keeps running meanwhile, under
// the cap of 2.

const CAP = 2;
const COOLDOWN_S = 8;
const ADMIN = 'ops-secret-01';
const USER = 'alice-secret-1';
const admin = { authorization: `Bearer ${ADMIN}` };
const user = { authorization: `Bearer ${USER}` };

let stack: Stack;
let client: Client;

beforeAll(async () => {
  stack = await startStack({
    env: {
      SDFLOW_MAX_CONCURRENCY: String(CAP),
      SDFLOW_API_KEYS: `ops:admin:${ADMIN},alice:user:${USER}`,
      SDFLOW_FUNCTION_MAX_INSTANCES: '2',
      SDFLOW_BREAKER_FAILURES: '3',
      SDFLOW_BREAKER_COOLDOWN_S: String(COOLDOWN_S),
      // Enough attempts that the queued tasks outlive the crash loop: only the attempts that ran and crashed count.
      SDFLOW_INVOKE_MAX_ATTEMPTS: '10',
      SDFLOW_INVOKE_RETRY_INITIAL_S: '0.2',
    },
  });
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
});

afterAll(async () => {
  await client?.connection.close();
  await stack?.stop();
});

const semaphore = () => semaphoreState(client, stack);

const small = (model: string, prompt: string) => ({ stable_diffusion_model: model, prompt, steps: 5 });

async function submit(model: string, prompt: string): Promise<string> {
  const r = await call(stack.url, 'POST', '/txt2img', small(model, prompt), { 'Request-Type': 'async', ...user });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json.taskId;
}

interface ModelHealth {
  health: 'ok' | 'quarantined' | 'probing';
  healthReason: string | null;
  healthSince: string | null;
}

const healthOf = async (model: string): Promise<ModelHealth> =>
  (await call(stack.url, 'GET', `/models/${model}`, undefined, user)).json;

async function until<T>(read: () => Promise<T>, ok: (v: T) => boolean, what: string, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not reached in time; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function injectFault(model: string, fault: 'none' | 'crash-at-job' | 'oom-at-job') {
  const r = await call(
    stack.url,
    'POST',
    '/batch_update_sd_resource',
    {
      models: [model],
      env: { SDFLOW_SIM_FAULT: fault },
    },
    admin,
  );
  expect(r.status, JSON.stringify(r.json)).toBe(200);
}

/** The attempt a task's runTask activity is on (the attempts it has used, the current one included). */
async function attemptOf(taskId: string): Promise<number> {
  const d = await client.workflow.getHandle(taskId).describe();
  return d.raw.pendingActivities?.find((a) => a.activityType?.name === 'runTask')?.attempt ?? 0;
}
const attemptsOf = async (ids: string[]) => (await Promise.all(ids.map(attemptOf))).reduce((a, b) => a + b, 0);

const statusOf = async (taskId: string) =>
  (await call(stack.url, 'GET', `/tasks/${taskId}/result`, undefined, user)).json.status as string;

it('a crash loop quarantines a checkpoint; its queued tasks wait; a failed probe re-opens it, a healthy one closes it', async () => {
  // Both functions exist and have served once.
  for (const model of [DEMO_MODEL, DEMO_MODEL_2]) {
    expect((await waitForFinal(stack.url, await submit(model, 'warm'), 60_000, user)).status).toBe('succeeded');
  }
  await injectFault(DEMO_MODEL, 'crash-at-job');
  const queued = [await submit(DEMO_MODEL, 'crash 1'), await submit(DEMO_MODEL, 'crash 2')];
  const others = await Promise.all(Array.from({ length: 6 }, (_, i) => submit(DEMO_MODEL_2, `healthy ${i}`)));

  const opened = await until(
    () => healthOf(DEMO_MODEL),
    (h) => h.health === 'quarantined',
    'the crashing checkpoint quarantined',
  );
  expect(opened.healthReason).toMatch(/3 instance failures in a row .* crashed/);
  expect(Date.parse(opened.healthSince ?? '')).toBeGreaterThan(0);

  // A new task for it is refused, on the platform route and the A1111 drop-in alike, with when to come back.
  const refused = await call(stack.url, 'POST', '/txt2img', small(DEMO_MODEL, 'refused'), user);
  expect(refused.status, JSON.stringify(refused.json)).toBe(503);
  expect(refused.json.message).toContain(DEMO_MODEL);
  expect(refused.json.message).toContain('crashed');
  const retryAfter = Number(refused.headers.get('retry-after'));
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(COOLDOWN_S);
  const dropIn = await call(
    stack.url,
    'POST',
    '/sdapi/v1/txt2img',
    { prompt: 'refused', steps: 5, override_settings: { sd_model_checkpoint: DEMO_MODEL } },
    user,
  );
  expect(dropIn.status, JSON.stringify(dropIn.json)).toBe(503);
  // The other checkpoint is not affected.
  expect((await healthOf(DEMO_MODEL_2)).health).toBe('ok');
  // Both queued tasks wait at the semaphore: from now on only a probe runs, one per cooldown.
  await until(
    semaphore,
    (st) => queued.every((id) => st.queue.some((w) => w.workflowId === id)),
    'both tasks queued behind the breaker',
  );
  const attemptsWhileQuarantined = await attemptsOf(queued);

  // The cooldown ends, a queued task runs as the probe, crashes: quarantined again, from then.
  const reopened = await until(
    () => healthOf(DEMO_MODEL),
    (h) => h.health === 'quarantined' && h.healthSince !== opened.healthSince,
    'the breaker re-opened by the failed probe',
  );
  expect(reopened.healthReason).toContain("the probe's instance crashed");
  // The queued tasks are still open, and the quarantine burnt one attempt between them: the probe's.
  for (const taskId of queued) expect(['waiting', 'running']).toContain(await statusOf(taskId));
  await until(
    () => attemptsOf(queued),
    (n) => n > attemptsWhileQuarantined,
    "the probe's failed attempt recorded",
    10_000,
  );
  expect(await attemptsOf(queued)).toBe(attemptsWhileQuarantined + 1);

  await injectFault(DEMO_MODEL, 'none');
  for (const taskId of queued) expect((await waitForFinal(stack.url, taskId, 120_000, user)).status).toBe('succeeded');
  // The API reads the semaphore's state at most SDFLOW_QUEUE_POSITION_MAX_AGE_MS late.
  const closed = await until(
    () => healthOf(DEMO_MODEL),
    (h) => h.health === 'ok',
    'the model shown healthy',
    10_000,
  );
  expect(closed).toMatchObject({ healthReason: null, healthSince: null });
  for (const taskId of others) expect((await waitForFinal(stack.url, taskId, 60_000, user)).status).toBe('succeeded');
  expect((await waitForFinal(stack.url, await submit(DEMO_MODEL, 'healthy again'), 60_000, user)).status).toBe(
    'succeeded',
  );
}, 300_000);

it('out-of-memory errors quarantine a checkpoint too, and an admin lifts the quarantine', async () => {
  await injectFault(DEMO_MODEL_2, 'oom-at-job');
  const waiting = await submit(DEMO_MODEL_2, 'out of memory');
  const opened = await until(
    () => healthOf(DEMO_MODEL_2),
    (h) => h.health === 'quarantined',
    'the checkpoint quarantined by out-of-memory errors',
  );
  expect(opened.healthReason).toContain('ran out of memory');

  const notAdmin = await call(stack.url, 'DELETE', `/models/${DEMO_MODEL_2}/quarantine`, undefined, user);
  expect(notAdmin.status).toBe(403);
  const unknown = await call(stack.url, 'DELETE', '/models/no-such-model.safetensors/quarantine', undefined, admin);
  expect(unknown.status).toBe(404);
  expect((await healthOf(DEMO_MODEL_2)).health).toBe('quarantined');

  // Healed, then lifted well before the cooldown ends: the lift, not a probe, closes the breaker.
  await injectFault(DEMO_MODEL_2, 'none');
  const lifted = await call(stack.url, 'DELETE', `/models/${DEMO_MODEL_2}/quarantine`, undefined, admin);
  expect(lifted.status, JSON.stringify(lifted.json)).toBe(200);
  expect(lifted.json).toMatchObject({ name: DEMO_MODEL_2, health: 'ok', healthReason: null });
  const state = await until(
    semaphore,
    (s) => s.breakers?.[DEMO_MODEL_2] === undefined,
    "the semaphore's breaker closed",
    10_000,
  );
  expect(state.breakers?.[DEMO_MODEL_2]).toBeUndefined();
  expect((await waitForFinal(stack.url, waiting, 60_000, user)).status).toBe('succeeded');
  await until(
    () => healthOf(DEMO_MODEL_2),
    (h) => h.health === 'ok',
    'the model shown healthy',
    10_000,
  );
}, 180_000);

it(`never ran more than the cap of ${CAP} jobs at once`, () => {
  expect(maxOverlap(readBusyIntervals(stack.statsDir))).toBeLessThanOrEqual(CAP);
});
