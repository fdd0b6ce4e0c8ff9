import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { createMetaStore } from '../../src/platform/index.js';
import type { MetaStore } from '../../src/platform/meta-store/port.js';
import { call, DEMO_MODEL, download, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// A user's task history (GET /tasks) and retrying a failed or cancelled task (POST /tasks/{id}/retry), with keys on:
// each user sees and retries only their own tasks; an admin sees and retries anyone's.

const ALICE = 'alice-secret-1';
const BOB = 'bob-secret-22';
const OPS = 'ops-admin-333';
let stack: Stack;
const as =
  (secret: string) =>
  (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    call(stack.url, method, path, body, { authorization: `Bearer ${secret}`, ...headers });
const alice = as(ALICE);
const bob = as(BOB);
const ops = as(OPS);
const async = { 'Request-Type': 'async' };
let meta: MetaStore;
const small = { stable_diffusion_model: DEMO_MODEL, prompt: 'mine', steps: 2, width: 64, height: 64 };
const final = (taskId: string, secret: string) =>
  waitForFinal(stack.url, taskId, 60_000, { authorization: `Bearer ${secret}` });

beforeAll(async () => {
  stack = await startStack({
    env: {
      SDFLOW_API_KEYS: `alice:user:${ALICE},bob:user:${BOB},ops:admin:${OPS}`,
      SDFLOW_MAX_CONCURRENCY: '1',
      SDFLOW_INVOKE_MAX_ATTEMPTS: '2',
      SDFLOW_INVOKE_RETRY_INITIAL_S: '0.5',
    },
  });
  meta = await createMetaStore(loadConfig({ ...process.env, ...stack.env }));
});

afterAll(async () => {
  await meta?.close();
  await stack?.stop();
});

describe('retry', () => {
  it('runs a failed task again once its cause is fixed: a new task, retryOf the old, owned by the same user', async () => {
    // The object store refuses alice's images (a plain file where her image directory must be created), so every
    // attempt fails, and the task with it, until the operator clears the fault.
    const blocker = join(stack.dataDir, 'objects', 'images', 'alice');
    mkdirSync(join(stack.dataDir, 'objects', 'images'), { recursive: true });
    writeFileSync(blocker, 'not a directory');

    const failed = await alice('POST', '/txt2img', { ...small, prompt: 'store me' });
    expect(failed.status, JSON.stringify(failed.json)).toBe(500);
    expect(failed.json).toMatchObject({ status: 'failed', message: expect.stringMatching(/EEXIST|ENOTDIR/) });

    // Another user can neither see nor retry it; alice can, and it fails again while the fault lasts.
    expect((await bob('POST', `/tasks/${failed.json.taskId}/retry`)).status).toBe(404);
    const again = await alice('POST', `/tasks/${failed.json.taskId}/retry`);
    expect(again.status).toBe(500);
    expect(again.json).toMatchObject({ status: 'failed', retryOf: failed.json.taskId });
    expect(again.json.taskId).not.toBe(failed.json.taskId);

    // The operator clears the fault and retries alice's task: it succeeds, as alice's.
    rmSync(blocker);
    const fixed = await ops('POST', `/tasks/${failed.json.taskId}/retry`);
    expect(fixed.status, JSON.stringify(fixed.json)).toBe(200);
    expect(fixed.json).toMatchObject({ status: 'succeeded', retryOf: failed.json.taskId });
    expect(fixed.headers.get('taskId')).toBe(fixed.json.taskId);
    const result = await alice('GET', `/tasks/${fixed.json.taskId}/result`);
    expect(result.json).toMatchObject({ status: 'succeeded', retryOf: failed.json.taskId });
    expect(result.json.images).toEqual([`images/alice/${fixed.json.taskId}_1.png`]);
    expect(result.json.parameters.prompt).toBe('store me');
    expect((await download(result.json.ossUrl[0])).subarray(1, 4).toString()).toBe('PNG');

    // The original stays as it was: final records never change.
    expect((await alice('GET', `/tasks/${failed.json.taskId}/result`)).json.status).toBe('failed');
  });

  it('runs a cancelled task again with the options it was submitted with, not newer ones', async () => {
    expect((await alice('POST', '/options', { data: { eta_noise_seed_delta: 11 } })).status).toBe(200);
    // One slot: the blocker holds it, so the small task is cancelled while it waits.
    const blocker = await ops(
      'POST',
      '/txt2img',
      { ...small, prompt: 'blocker', steps: 400, width: 512, height: 512 },
      async,
    );
    const queued = await alice('POST', '/txt2img', { ...small, prompt: 'queued' }, async);
    expect((await alice('POST', `/tasks/${queued.json.taskId}/cancellation`)).status).toBe(200);
    expect((await final(queued.json.taskId, ALICE)).status).toBe('cancelled');
    expect((await ops('POST', `/tasks/${blocker.json.taskId}/cancellation`)).status).toBe(200);
    expect((await alice('POST', '/options', { data: { eta_noise_seed_delta: 22 } })).status).toBe(200);

    const retried = await alice('POST', `/tasks/${queued.json.taskId}/retry`, undefined, {
      ...async,
      taskId: 'alice-retry-1',
    });
    expect(retried.status, JSON.stringify(retried.json)).toBe(200);
    expect(retried.json).toEqual({ status: 'waiting', taskId: 'alice-retry-1', retryOf: queued.json.taskId });
    const result = await final('alice-retry-1', ALICE);
    expect(result).toMatchObject({ status: 'succeeded', retryOf: queued.json.taskId });
    expect(result.parameters.prompt).toBe('queued');
    expect(result.parameters.override_settings).toMatchObject({ eta_noise_seed_delta: 11 });
    expect((await meta.getTask('alice-retry-1'))?.params).toMatchObject({ sdflow_options_version: 1 });

    const succeeded = await alice('POST', '/tasks/alice-retry-1/retry');
    expect(succeeded.status).toBe(409);
    expect(succeeded.json.message).toMatch(/is succeeded: only a failed or cancelled task can be retried/);
  });

  it('refuses a task that is still open, a duplicate new taskId, and an unknown task', async () => {
    const open = await alice(
      'POST',
      '/txt2img',
      { ...small, prompt: 'still open', steps: 400, width: 512, height: 512 },
      async,
    );
    const r = await alice('POST', `/tasks/${open.json.taskId}/retry`);
    expect(r.status).toBe(409);
    expect(r.json.message).toMatch(/is (waiting|running): only a failed or cancelled task can be retried/);
    await alice('POST', `/tasks/${open.json.taskId}/cancellation`);
    expect((await final(open.json.taskId, ALICE)).status).toBe('cancelled');
    const dup = await alice('POST', `/tasks/${open.json.taskId}/retry`, undefined, { taskId: open.json.taskId });
    expect(dup.status).toBe(409);
    expect(dup.json.message).toMatch(/already exists/);
    expect((await alice('POST', '/tasks/no-such-task/retry')).status).toBe(404);
    expect((await alice('POST', '/tasks/bad%20id/retry')).status).toBe(400);
  });
});

describe('GET /tasks', () => {
  it("lists the caller's own tasks newest first, filtered by status, a page at a time", async () => {
    const mine: string[] = [];
    for (let i = 0; i < 3; i++)
      mine.push((await bob('POST', '/txt2img', { ...small, prompt: `bob ${i}` })).json.taskId);
    const all = await bob('GET', '/tasks');
    expect(all.status).toBe(200);
    expect(all.json.tasks.map((t: { taskId: string }) => t.taskId)).toEqual([...mine].reverse());
    expect(all.json.tasks[0]).toMatchObject({
      taskId: mine[2],
      user: 'bob',
      kind: 'txt2img',
      model: DEMO_MODEL,
      status: 'succeeded',
      images: [`images/bob/${mine[2]}_1.png`],
    });
    expect(all.json.cursor).toBeUndefined();

    // Two pages of one and a last page, with no task twice.
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await bob('GET', `/tasks?limit=1${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      seen.push(...page.json.tasks.map((t: { taskId: string }) => t.taskId));
      cursor = page.json.cursor;
    } while (cursor);
    expect(seen).toEqual([...mine].reverse());

    // Alice's failed and cancelled tasks, from the retry tests, and none of bob's.
    const failed = await alice('GET', '/tasks?status=failed,cancelled');
    expect(failed.json.tasks.length).toBeGreaterThanOrEqual(3);
    for (const t of failed.json.tasks) {
      expect(t.user).toBe('alice');
      expect(['failed', 'cancelled']).toContain(t.status);
    }
    expect(failed.json.tasks.some((t: { message?: string }) => /EEXIST|ENOTDIR/.test(t.message ?? ''))).toBe(true);
    expect((await alice('GET', '/tasks')).json.tasks.some((t: { retryOf?: string }) => t.retryOf)).toBe(true);
  });

  it("shows an admin every user's tasks, or one user's; a user asking for another's gets 403", async () => {
    const everyone = await ops('GET', '/tasks?limit=1000');
    const users = new Set(everyone.json.tasks.map((t: { user: string }) => t.user));
    expect(users).toEqual(new Set(['alice', 'bob', 'ops']));
    const bobs = await ops('GET', '/tasks?user=bob');
    expect(bobs.json.tasks).toHaveLength(3);
    expect((await bob('GET', '/tasks?user=bob')).json.tasks).toHaveLength(3);
    const peek = await bob('GET', '/tasks?user=alice');
    expect(peek.status).toBe(403);
    expect(peek.json.message).toMatch(/^user: /);
  });

  it('answers a bad query with a 400 naming the field', async () => {
    const cases: [string, RegExp][] = [
      ['status=done', /^status\[0\]: must be waiting, running, succeeded, failed, cancelled/],
      ['limit=0', /^limit: /],
      ['limit=1001', /^limit: /],
      ['limit=ten', /^limit: /],
      ['cursor=not-a-cursor', /^cursor: /],
      ['createdBefore=yesterday', /^createdBefore: /],
    ];
    for (const [query, message] of cases) {
      const r = await bob('GET', `/tasks?${query}`);
      expect(r.status, query).toBe(400);
      expect(r.json.message, query).toMatch(message);
    }
    const before = await bob('GET', '/tasks?createdBefore=2000-01-01T00:00:00Z');
    expect(before.json).toEqual({ tasks: [] });
  });
});
