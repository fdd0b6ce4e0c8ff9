import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RoleProcess, spawnRole, waitForHttp } from '../../src/cli/processes.js';
import { freePort } from '../../src/http-util.js';
import { openSse, type SseEvent, type SseStream } from '../helpers/sse.js';
import { call, DEMO_MODEL, download, type Stack, startStack } from '../helpers/stack.js';

// GET /tasks/{id}/events on the real stack, read by a real HTTP client: every phase in order, progress and previews,
// the result at the end; a reconnect with Last-Event-ID to another API replica misses no status event; a waiting
// task's place in the queue and the heartbeat; the ownership rules of /progress.

const ALICE = 'alice-events-key-1';
const BOB = 'bob-events-key-1';

let stack: Stack;
let replica: RoleProcess;
let replicaUrl: string;
const auth = (key: string) => ({ authorization: `Bearer ${key}` });
const alice = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
  call(stack.url, method, path, body, { ...auth(ALICE), ...headers });

/** About 2 s at the test stack's 10 ms per 512×512 step. */
const medium = { stable_diffusion_model: DEMO_MODEL, prompt: 'a lighthouse', steps: 200, width: 512, height: 512 };
/** About 20 s: running until cancelled. */
const endless = { stable_diffusion_model: DEMO_MODEL, prompt: 'endless', steps: 500, width: 1024, height: 1024 };

async function submit(body: Record<string, unknown>) {
  const r = await alice('POST', '/txt2img', body, { 'Request-Type': 'async' });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json.taskId as string;
}

const stream = (base: string, taskId: string, headers: Record<string, string> = {}) =>
  openSse(`${base}/tasks/${taskId}/events`, { ...auth(ALICE), ...headers });

/** Every event until the server ends the stream, each passed to `onEvent` as it comes; fails past `timeoutMs`. */
async function readAll(s: SseStream, onEvent?: (e: SseEvent) => Promise<void>, timeoutMs = 60_000) {
  const events: SseEvent[] = [];
  const timer = setTimeout(() => s.close(), timeoutMs);
  for await (const event of s.events) {
    events.push(event);
    await onEvent?.(event);
  }
  clearTimeout(timer);
  expect(events.at(-1)?.event, `the stream ended without completed: ${JSON.stringify(events)}`).toBe('completed');
  return events;
}

/** Events until (and with) the first one `until` accepts; the stream is then closed. */
async function readUntil(s: SseStream, until: (e: SseEvent) => boolean): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  for await (const event of s.events) {
    events.push(event);
    if (until(event)) break;
  }
  s.close();
  return events;
}

const statuses = (events: SseEvent[]) => events.filter((e) => e.event === 'status' && e.id !== undefined);
/** The phases in order, a repeated phase (a cold start reported on `starting`) counted once. */
const phases = (events: SseEvent[]) =>
  statuses(events)
    .map((e) => e.data.phase)
    .filter((phase, i, all) => phase !== all[i - 1]);

beforeAll(async () => {
  stack = await startStack({
    env: {
      SDFLOW_API_KEYS: `alice:user:${ALICE},bob:user:${BOB}`,
      SDFLOW_MAX_CONCURRENCY: '1',
      SDFLOW_PREVIEW_INTERVAL_MS: '300',
      SDFLOW_EVENTS_POLL_MS: '100',
    },
  });
  // A second API replica on the same stores and Temporal.
  const port = await freePort();
  replicaUrl = `http://127.0.0.1:${port}`;
  replica = spawnRole('api2', ['api'], {
    env: { ...process.env, ...stack.env, PORT: String(port) },
    logFile: join(stack.dataDir, 'logs', 'api2.log'),
  });
  await waitForHttp(`${replicaUrl}/healthz`, 60_000, replica);
});

afterAll(async () => {
  await replica?.stop(5000);
  await stack?.stop();
});

describe('the event stream', () => {
  it('sends every phase in order, with ids counting per task, then completed with the result', async () => {
    // Long enough to be seen sampling while the first task's agent also loads its image library for previews.
    const taskId = await submit({ ...medium, steps: 400 });
    // A preview lives while its task runs: it is read as soon as its event comes.
    let preview: Buffer | undefined;
    const events = await readAll(await stream(stack.url, taskId), async (e) => {
      if (e.event === 'preview') preview ??= await download(e.data.currentImageUrl);
    });
    expect(phases(events)).toEqual(['queued', 'starting', 'sampling', 'uploading', 'finished']);
    const ids = statuses(events).map((e) => Number(e.id));
    expect(ids).toEqual(ids.map((_, i) => i + 1));
    // The stack's first task waited for its function's instance to start.
    expect(statuses(events).find((e) => e.data.coldStart)?.data).toEqual({
      status: 'running',
      phase: 'starting',
      coldStart: true,
    });
    expect(statuses(events).at(-1)?.data).toEqual({ status: 'succeeded', phase: 'finished' });

    const progress = events.filter((e) => e.event === 'progress');
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.every((e) => e.id === undefined && e.data.progress >= 0 && e.data.progress <= 1)).toBe(true);
    expect(progress.some((e) => e.data.state.sampling_step > 0 && e.data.state.sampling_steps === 400)).toBe(true);
    expect(events.find((e) => e.event === 'preview')?.data.currentImage).toMatch(/^previews\/alice\/.*\.jpg$/);
    expect([...preview!.subarray(0, 2)]).toEqual([0xff, 0xd8]);

    const completed = events.at(-1)!;
    const result = (await alice('GET', `/tasks/${taskId}/result`)).json;
    expect(completed.data).toMatchObject({ taskId, status: 'succeeded', images: result.images, info: result.info });
    expect(completed.data.ossUrl).toHaveLength(1);
    // Nothing follows a status event's order: finished comes before completed.
    expect(events.findIndex((e) => e.data.phase === 'finished')).toBe(events.length - 2);
  });

  it('resumes on another API replica from Last-Event-ID, missing no status event', async () => {
    const taskId = await submit({ ...medium, steps: 400 });
    const before = await readUntil(await stream(stack.url, taskId), (e) => e.data.phase === 'sampling');
    const lastId = statuses(before).at(-1)!.id!;
    expect(before.at(-1)?.data.phase).toBe('sampling');

    const after = await readAll(await stream(replicaUrl, taskId, { 'Last-Event-ID': lastId }));
    const ids = [...statuses(before), ...statuses(after)].map((e) => Number(e.id));
    expect(ids).toEqual(ids.map((_, i) => i + 1));
    expect(phases([...before, ...after])).toEqual(['queued', 'starting', 'sampling', 'uploading', 'finished']);
    // The replica starts with the latest progress, before any later status event.
    const firstProgress = after.findIndex((e) => e.event === 'progress');
    const firstStatus = after.findIndex((e) => e.event === 'status');
    expect(firstProgress).toBeGreaterThanOrEqual(0);
    expect(firstStatus < 0 || firstProgress < firstStatus || after[firstStatus].data.phase === 'sampling').toBe(true);
    expect(after.at(-1)?.data).toMatchObject({ taskId, status: 'succeeded' });

    // A finished task's stream, resumed after its last status event, is just the result.
    const finishedId = statuses(after).at(-1)!.id!;
    const again = await readAll(await stream(replicaUrl, taskId, { 'Last-Event-ID': finishedId }));
    expect(again.map((e) => e.event)).toEqual(['completed']);
  });

  it('tells a waiting task its place in the queue, and sends a heartbeat while nothing happens', async () => {
    const running = await submit(endless);
    const waiting = await submit({ ...medium, prompt: 'behind' });
    const s = await stream(stack.url, waiting);
    const seen = await readUntil(s, (e) => e.data.queuePosition !== undefined);
    expect(seen.at(-1)).toEqual({ event: 'status', data: { status: 'waiting', phase: 'queued', queuePosition: 1 } });
    expect(statuses(seen).map((e) => e.data.phase)).toEqual(['queued']);

    const quiet = await stream(replicaUrl, waiting, { 'Last-Event-ID': statuses(seen).at(-1)!.id! });
    const until = Date.now() + 17_000;
    while (!quiet.comments.includes('heartbeat') && Date.now() < until) {
      await Promise.race([quiet.events.next(), new Promise((r) => setTimeout(r, 500))]);
    }
    expect(quiet.comments).toContain('heartbeat');
    quiet.close();
    await alice('POST', `/tasks/${running}/cancellation`);
    await alice('POST', `/tasks/${waiting}/cancellation`);
  });

  it('follows the ownership rules of /progress', async () => {
    const taskId = await submit({ ...medium, steps: 2, width: 64, height: 64 });
    const other = await openSse(`${stack.url}/tasks/${taskId}/events`, auth(BOB));
    expect(other.status).toBe(404);
    other.close();
    expect((await openSse(`${stack.url}/tasks/never-submitted/events`, auth(ALICE))).status).toBe(404);
    const bad = await call(stack.url, 'GET', `/tasks/${taskId}/events`, undefined, {
      ...auth(ALICE),
      'Last-Event-ID': 'latest',
    });
    expect(bad.status).toBe(400);
    expect(bad.json.message).toMatch(/^Last-Event-ID header: /);
    expect((await call(stack.url, 'GET', `/tasks/${taskId}/events`)).status).toBe(401);
  });
});
