import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { until } from '../helpers/faults.js';
import { call, DEMO_MODEL, download, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// Writes to the object store fail: the upload is retried (a new runTask attempt), and a write that never
// succeeds is never reported as success. The failure is made real by putting a plain file where the user's image
// directory must be created.

let stack: Stack;
let client: Client;
let blocker: string;

beforeAll(async () => {
  stack = await startStack({ env: { SDFLOW_INVOKE_MAX_ATTEMPTS: '3', SDFLOW_INVOKE_RETRY_INITIAL_S: '1' } });
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
  blocker = join(stack.dataDir, 'objects', 'images', 'local');
  mkdirSync(join(stack.dataDir, 'objects', 'images'), { recursive: true });
});

afterAll(async () => {
  await client?.connection.close();
  await stack?.stop();
});

async function invokeAttempt(taskId: string): Promise<number> {
  const history = await client.workflow.getHandle(taskId).fetchHistory();
  const scheduled = new Map<string, string>();
  let attempt = 0;
  for (const e of history.events ?? []) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s) scheduled.set(String(e.eventId), s.activityType?.name ?? '');
    const started = e.activityTaskStartedEventAttributes;
    if (started && scheduled.get(String(started.scheduledEventId)) === 'runTask') attempt = started.attempt ?? 1;
  }
  return attempt;
}

it('a failed image write is retried, and the task succeeds once the store accepts writes', async () => {
  writeFileSync(blocker, 'not a directory');
  const r = await call(
    stack.url,
    'POST',
    '/txt2img',
    { stable_diffusion_model: DEMO_MODEL, prompt: 'retry my write', steps: 3, width: 64, height: 64 },
    { 'Request-Type': 'async' },
  );
  // Unblock only once a runTask attempt has failed on the write: Temporal then shows the retry pending.
  await until('a runTask attempt to fail on the write', async () => {
    const d = await client.workflow.getHandle(r.json.taskId).describe();
    const invoke = d.raw.pendingActivities?.find((a) => a.activityType?.name === 'runTask');
    return (invoke?.attempt ?? 0) >= 2 || undefined;
  });
  rmSync(blocker);
  const final = await waitForFinal(stack.url, r.json.taskId, 60_000);
  expect(final.status).toBe('succeeded');
  expect(await invokeAttempt(r.json.taskId)).toBeGreaterThanOrEqual(2);
  expect((await download(final.ossUrl[0])).length).toBeGreaterThan(0);
});

it('a write that never succeeds ends the task as failed, with no images', async () => {
  rmSync(blocker, { recursive: true, force: true });
  writeFileSync(blocker, 'not a directory');
  const r = await call(stack.url, 'POST', '/txt2img', {
    stable_diffusion_model: DEMO_MODEL,
    prompt: 'never written',
    steps: 3,
    width: 64,
    height: 64,
  });
  expect(r.status).toBe(500);
  expect(r.json.status).toBe('failed');
  expect(r.json.message).toMatch(/ENOTDIR|not a directory|EEXIST/i);
  const result = (await call(stack.url, 'GET', `/tasks/${r.json.taskId}/result`)).json;
  expect(result).toMatchObject({ status: 'failed', images: [] });
  expect(await invokeAttempt(r.json.taskId)).toBe(3);
  rmSync(blocker);
});
