import { afterAll, beforeAll, expect, it } from 'vitest';
import { call, DEMO_MODEL, type Stack, startStack } from '../helpers/stack.js';

// Per-key limits: a rate limit per minute and a maximum of tasks in flight per user. Going over answers 429 with
// Retry-After; other keys are not affected; the local principal of auth-off mode is never limited.

const RATE = 15;
const QUEUED = 2;
let stack: Stack;
const as =
  (secret: string) =>
  (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    call(stack.url, method, path, body, { authorization: `Bearer ${secret}`, ...headers });

beforeAll(async () => {
  stack = await startStack({
    env: {
      SDFLOW_API_KEYS: 'rita:user:rita-secret-1,quinn:user:quinn-secret-1,olga:user:olga-secret-1',
      SDFLOW_KEY_RATE_PER_MIN: String(RATE),
      SDFLOW_KEY_MAX_QUEUED: String(QUEUED),
      SDFLOW_QUEUE_RETRY_AFTER_S: '7',
    },
  });
});

afterAll(async () => {
  await stack?.stop();
});

it('answers 429 with Retry-After past the per-minute rate of a key, and only for that key', async () => {
  const rita = as('rita-secret-1');
  const answers = [];
  for (let i = 0; i < RATE + 5; i++) answers.push(await rita('GET', '/models'));
  const limited = answers.filter((a) => a.status === 429);
  // The window is a fixed minute: the first RATE pass unless the minute turned during the burst.
  expect(answers.filter((a) => a.status === 200).length).toBeGreaterThanOrEqual(RATE);
  expect(limited.length).toBeGreaterThan(0);
  const retryAfter = Number(limited[0].headers.get('retry-after'));
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(60);
  expect(limited[0].json.message).toMatch(/at most 15 requests per minute/);
  expect((await as('olga-secret-1')('GET', '/models')).status).toBe(200);
});

it('answers 429 with Retry-After once a user has too many tasks in flight, and accepts again when one ends', async () => {
  const quinn = as('quinn-secret-1');
  const long = { stable_diffusion_model: DEMO_MODEL, prompt: 'slow', steps: 500, width: 1024, height: 1024 };
  const first = await quinn('POST', '/txt2img', long, { 'Request-Type': 'async' });
  const second = await quinn('POST', '/txt2img', long, { 'Request-Type': 'async' });
  expect([first.status, second.status]).toEqual([200, 200]);
  const third = await quinn('POST', '/txt2img', long, { 'Request-Type': 'async' });
  expect(third.status).toBe(429);
  expect(third.headers.get('retry-after')).toBe('7');
  expect(third.json.message).toMatch(/too many tasks in flight: 2 waiting or running; the limit is 2/);
  // The A1111 drop-in route counts too.
  expect((await quinn('POST', '/sdapi/v1/txt2img', { prompt: 'x' }, { Prefer: 'respond-async' })).status).toBe(429);

  expect((await quinn('POST', `/tasks/${first.json.taskId}/cancellation`)).status).toBe(200);
  const fourth = await quinn(
    'POST',
    '/txt2img',
    { ...long, steps: 2, width: 64, height: 64 },
    { 'Request-Type': 'async' },
  );
  expect(fourth.status).toBe(200);
  await quinn('POST', `/tasks/${second.json.taskId}/cancellation`);
});
