import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, DEMO_MODEL, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// Webhooks on the real stack, to a receiver in this test on a loopback port (allowed by SDFLOW_WEBHOOK_ALLOW): what
// arrives, signed as the Standard Webhooks specification says (verified here by our own implementation of its
// verification), retried and logged, redelivered on request, refused for a private target, and never in the way of
// the task it reports on.

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const ALICE = 'alice-webhooks-key-1';
const BOB = 'bob-webhooks-key-1';

/** Standard Webhooks verification: the signature of `id.timestamp.body` under the secret's key, and a fresh timestamp. */
function verifies(secret: string, headers: IncomingHttpHeaders, body: string, toleranceS = 300): boolean {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (typeof id !== 'string' || typeof timestamp !== 'string' || typeof signatures !== 'string') return false;
  if (!/^\d+$/.test(timestamp) || Math.abs(Date.now() / 1000 - Number(timestamp)) > toleranceS) return false;
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest();
  return signatures.split(' ').some((candidate) => {
    const [version, signature] = candidate.split(',');
    const given = Buffer.from(signature ?? '', 'base64');
    return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
  });
}

interface Delivery {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  json: any;
  receivedAt: number;
  answeredAt?: number;
}

/** An HTTP receiver: answers each path as planned (status, after a delay), 200 at once when nothing is planned. */
class Receiver {
  readonly deliveries: Delivery[] = [];
  private readonly plans = new Map<string, { status: number; delayMs?: number }[]>();
  private server!: Server;
  url = '';

  async start() {
    this.server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c.toString();
      });
      req.on('end', () => {
        const path = req.url ?? '';
        const delivery: Delivery = { path, headers: req.headers, body, json: JSON.parse(body), receivedAt: Date.now() };
        this.deliveries.push(delivery);
        const { status, delayMs = 0 } = this.plans.get(path)?.shift() ?? { status: 200 };
        setTimeout(() => {
          delivery.answeredAt = Date.now();
          res.writeHead(status).end();
        }, delayMs);
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  plan(path: string, ...answers: { status: number; delayMs?: number }[]) {
    this.plans.set(path, answers);
  }

  at(path: string) {
    return this.deliveries.filter((d) => d.path === path);
  }

  /** The deliveries to `path` once there are `count` of them. */
  async waitFor(path: string, count: number, timeoutMs = 30_000): Promise<Delivery[]> {
    const until = Date.now() + timeoutMs;
    while (this.at(path).length < count) {
      if (Date.now() > until) {
        throw new Error(
          `${count} deliveries to ${path} expected, got ${JSON.stringify(this.at(path).map((d) => d.json))}`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.at(path);
  }

  close() {
    this.server.closeAllConnections();
    return new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

let stack: Stack;
const receiver = new Receiver();
const as =
  (key: string) =>
  (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    call(stack.url, method, path, body, { authorization: `Bearer ${key}`, ...headers });
const alice = as(ALICE);
const bob = as(BOB);
const small = { stable_diffusion_model: DEMO_MODEL, prompt: 'a lighthouse', steps: 2, width: 64, height: 64 };
/** About 2 s at the test stack's 10 ms per 512×512 step: long enough to report progress. */
const long = { stable_diffusion_model: DEMO_MODEL, prompt: 'a long one', steps: 200, width: 512, height: 512 };
/** About 20 s: running until cancelled. */
const endless = { stable_diffusion_model: DEMO_MODEL, prompt: 'endless', steps: 500, width: 1024, height: 1024 };

async function submit(body: Record<string, unknown>) {
  const r = await alice('POST', '/txt2img', body, { 'Request-Type': 'async' });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json.taskId as string;
}

const finalOf = (taskId: string) => waitForFinal(stack.url, taskId, 60_000, { authorization: `Bearer ${ALICE}` });

beforeAll(async () => {
  await receiver.start();
  stack = await startStack({
    env: {
      SDFLOW_API_KEYS: `alice:user:${ALICE},bob:user:${BOB}`,
      SDFLOW_WEBHOOK_SECRET: SECRET,
      SDFLOW_WEBHOOK_ALLOW: '127.0.0.1/32',
      SDFLOW_WEBHOOK_RETRY_INITIAL_S: '0.2',
      SDFLOW_WEBHOOK_RETRY_HOURS: '0.02',
      SDFLOW_WEBHOOK_PROGRESS_INTERVAL_S: '0.3',
    },
  });
});

afterAll(async () => {
  await stack?.stop();
  await receiver.close();
});

describe('delivery', () => {
  it('sends completed, signed, with the result view; the webhook fields never reach SD or the params', async () => {
    const taskId = await submit({ ...small, webhook: `${receiver.url}/hook/done` });
    const [delivery] = await receiver.waitFor('/hook/done', 1);
    expect(verifies(SECRET, delivery.headers, delivery.body)).toBe(true);
    expect(verifies(`whsec_${randomBytes(32).toString('base64')}`, delivery.headers, delivery.body)).toBe(false);
    expect(delivery.headers['webhook-id']).toBe(`msg_${taskId}_completed`);
    expect(delivery.headers['content-type']).toBe('application/json');
    const result = (await alice('GET', `/tasks/${taskId}/result`)).json;
    expect(delivery.json).toMatchObject({
      type: 'completed',
      taskId,
      data: { taskId, status: 'succeeded', images: result.images, info: result.info },
    });
    expect(delivery.json.data.ossUrl).toHaveLength(1);
    expect(result.parameters).not.toHaveProperty('webhook');
    expect(result.parameters).not.toHaveProperty('webhook_events_filter');
  });

  it('sends start, progress and completed in order when the filter asks for them', async () => {
    const taskId = await submit({
      ...long,
      webhook: `${receiver.url}/hook/all`,
      webhook_events_filter: ['start', 'progress', 'completed'],
    });
    await finalOf(taskId);
    const deliveries = await receiver.waitFor('/hook/all', 3);
    await new Promise((r) => setTimeout(r, 500));
    const types = receiver.at('/hook/all').map((d) => d.json.type);
    expect(types[0]).toBe('start');
    expect(types.at(-1)).toBe('completed');
    expect(types.filter((t) => t === 'progress').length).toBeGreaterThanOrEqual(1);
    for (const d of deliveries) expect(verifies(SECRET, d.headers, d.body)).toBe(true);
    expect(deliveries[0].json.data).toMatchObject({ taskId, status: 'running', phase: 'starting' });
    const progress = deliveries.find((d) => d.json.type === 'progress')!;
    expect(progress.json.data).toMatchObject({ taskId, status: 'running' });
    expect(progress.json.data.progress).toBeGreaterThan(0);
    expect(progress.headers['webhook-id']).toMatch(new RegExp(`^msg_${taskId}_progress_`));
    expect(new Set(deliveries.map((d) => d.headers['webhook-id'])).size).toBe(deliveries.length);
  });

  it('retries a 500 with the same webhook-id, and logs every attempt', async () => {
    receiver.plan('/hook/flaky', { status: 500 }, { status: 503 });
    const taskId = await submit({ ...small, webhook: `${receiver.url}/hook/flaky` });
    const deliveries = await receiver.waitFor('/hook/flaky', 3);
    expect(deliveries.map((d) => d.headers['webhook-id'])).toEqual(Array(3).fill(`msg_${taskId}_completed`));
    for (const d of deliveries) expect(verifies(SECRET, d.headers, d.body)).toBe(true);
    // Backoff doubles from SDFLOW_WEBHOOK_RETRY_INITIAL_S.
    expect(deliveries[1].receivedAt - deliveries[0].receivedAt).toBeGreaterThanOrEqual(150);
    expect(deliveries[2].receivedAt - deliveries[1].receivedAt).toBeGreaterThanOrEqual(350);
    const log = await waitForAttempts(taskId, 3);
    expect(log.webhook).toEqual({ url: `${receiver.url}/hook/flaky`, events: ['completed'] });
    expect(log.attempts.map((a: any) => [a.event, a.webhookId, a.statusCode])).toEqual([
      ['completed', `msg_${taskId}_completed`, 500],
      ['completed', `msg_${taskId}_completed`, 503],
      ['completed', `msg_${taskId}_completed`, 200],
    ]);
    for (const a of log.attempts) {
      expect(Date.parse(a.at)).toBeGreaterThan(0);
      expect(a.durationMs).toBeGreaterThanOrEqual(0);
    }
  });

  it('takes any other 4xx as final: one attempt', async () => {
    receiver.plan('/hook/gone', { status: 410 });
    const taskId = await submit({ ...small, webhook: `${receiver.url}/hook/gone` });
    await receiver.waitFor('/hook/gone', 1);
    const log = await waitForAttempts(taskId, 1);
    await new Promise((r) => setTimeout(r, 1000));
    expect(receiver.at('/hook/gone')).toHaveLength(1);
    expect((await alice('GET', `/tasks/${taskId}/webhooks`)).json.attempts).toEqual(log.attempts);
    expect(log.attempts[0].statusCode).toBe(410);
  });

  it('logs a network error as an attempt, and retries it', async () => {
    // A port nothing listens on: the connection is refused.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const taskId = await submit({ ...small, webhook: `http://127.0.0.1:${port}/nobody` });
    const log = await waitForAttempts(taskId, 2);
    expect(log.attempts[0]).toMatchObject({ event: 'completed', error: expect.stringMatching(/ECONNREFUSED/) });
    expect(log.attempts[0].statusCode).toBeUndefined();
  });

  it('sends completed on cancel and on failure; a retry inherits the webhook', async () => {
    const cancelled = await submit({ ...endless, webhook: `${receiver.url}/hook/ends` });
    await waitForSampling(cancelled);
    expect((await alice('POST', `/tasks/${cancelled}/cancellation`)).json.status).toBe('cancelled');
    const [first] = await receiver.waitFor('/hook/ends', 1);
    expect(first.json).toMatchObject({ type: 'completed', taskId: cancelled, data: { status: 'cancelled' } });

    // A field the API passes through unchecked, which SD finds malformed.
    const failed = await submit({ ...small, eta: 'fast', webhook: `${receiver.url}/hook/ends` });
    const [, second] = await receiver.waitFor('/hook/ends', 2);
    expect(second.json).toMatchObject({
      type: 'completed',
      taskId: failed,
      data: { status: 'failed', message: 'eta: value is not a valid float' },
    });
    expect(verifies(SECRET, second.headers, second.body)).toBe(true);

    const retried = await alice('POST', `/tasks/${cancelled}/retry`, undefined, { 'Request-Type': 'async' });
    await waitForSampling(retried.json.taskId);
    await alice('POST', `/tasks/${retried.json.taskId}/cancellation`);
    const [, , third] = await receiver.waitFor('/hook/ends', 3);
    expect(third.json).toMatchObject({ type: 'completed', taskId: retried.json.taskId, data: { status: 'cancelled' } });
    // A retry's body may name its own webhook.
    const own = await alice('POST', `/tasks/${failed}/retry`, { webhook: `${receiver.url}/hook/own` });
    expect(own.status).toBe(422);
    const [mine] = await receiver.waitFor('/hook/own', 1);
    expect(mine.json).toMatchObject({ type: 'completed', taskId: own.json.taskId, data: { status: 'failed' } });
  });

  it('redelivers completed on request, with the same webhook-id', async () => {
    const taskId = await submit({ ...small, webhook: `${receiver.url}/hook/again` });
    const [first] = await receiver.waitFor('/hook/again', 1);
    const r = await alice('POST', `/tasks/${taskId}/webhooks/redeliver`);
    expect(r.status).toBe(202);
    expect(r.json).toEqual({ taskId, event: 'completed', webhookId: `msg_${taskId}_completed` });
    const [, second] = await receiver.waitFor('/hook/again', 2);
    expect(second.headers['webhook-id']).toBe(first.headers['webhook-id']);
    expect(second.json).toMatchObject({ type: 'completed', taskId, data: { status: 'succeeded' } });
    expect(verifies(SECRET, second.headers, second.body)).toBe(true);
    expect((await waitForAttempts(taskId, 2)).attempts.map((a: any) => a.statusCode)).toEqual([200, 200]);
  });

  it('answers a sync request without waiting for the delivery', async () => {
    receiver.plan('/hook/slow', { status: 200, delayMs: 4000 });
    const withHook = await alice('POST', '/txt2img', { ...small, seed: 5, webhook: `${receiver.url}/hook/slow` });
    const answeredAt = Date.now();
    const without = await alice('POST', '/txt2img', { ...small, seed: 5 });
    expect(withHook.status).toBe(200);
    expect(without.status).toBe(200);
    expect(Object.keys(withHook.json).sort()).toEqual(Object.keys(without.json).sort());
    expect(withHook.json.status).toBe(without.json.status);
    // The receiver got the delivery and holds its answer for 4 s: the sync answer came before it.
    const [held] = await receiver.waitFor('/hook/slow', 1);
    expect(held.json.taskId).toBe(withHook.json.taskId);
    while (held.answeredAt === undefined) await new Promise((r) => setTimeout(r, 100));
    expect(answeredAt).toBeLessThan(held.answeredAt);
  });
});

describe('refusals and ownership', () => {
  it('refuses a private, loopback or link-local target that SDFLOW_WEBHOOK_ALLOW does not list, naming webhook', async () => {
    for (const target of ['http://10.1.2.3/hook', 'http://192.168.1.1/x', 'http://127.0.0.2:8080/', 'http://[::1]/x']) {
      const r = await alice('POST', '/txt2img', { ...small, webhook: target });
      expect(r.status, target).toBe(400);
      expect(r.json.message).toMatch(/^webhook: /);
    }
    const metadata = await alice('POST', '/txt2img', { ...small, webhook: 'http://169.254.169.254/latest' });
    expect(metadata.json.message).toMatch(/^webhook: .*link-local/);
  });

  it('refuses malformed webhook fields, naming them', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ webhook: 'ftp://example.com/x' }, /^webhook: must be an http or https URL/],
      [{ webhook: `${receiver.url}/x`, webhook_events_filter: ['done'] }, /^webhook_events_filter\[0\]: must be start/],
      [{ webhook: `${receiver.url}/x`, webhook_events_filter: [] }, /^webhook_events_filter: must name at least one/],
      [{ webhook_events_filter: ['start'] }, /^webhook_events_filter: needs a webhook/],
    ];
    for (const [fields, message] of cases) {
      const r = await alice('POST', '/txt2img', { ...small, ...fields });
      expect(r.status, JSON.stringify(fields)).toBe(400);
      expect(r.json.message).toMatch(message);
    }
    const retry = await alice('POST', '/tasks/whatever/retry', { prompt: 'x' });
    expect(retry.status).toBe(404);
  });

  it("keeps another user's webhook log and redelivery to itself (404), and refuses a redelivery without a webhook", async () => {
    const taskId = await submit({ ...small, webhook: `${receiver.url}/hook/mine` });
    await finalOf(taskId);
    expect((await bob('GET', `/tasks/${taskId}/webhooks`)).status).toBe(404);
    expect((await bob('POST', `/tasks/${taskId}/webhooks/redeliver`)).status).toBe(404);
    const plain = await submit(small);
    await finalOf(plain);
    const r = await alice('POST', `/tasks/${plain}/webhooks/redeliver`);
    expect(r.status).toBe(409);
    expect(r.json.message).toMatch(/has no webhook/);
    expect((await alice('GET', `/tasks/${plain}/webhooks`)).json).toEqual({
      taskId: plain,
      webhook: null,
      attempts: [],
    });
  });
});

async function waitForAttempts(taskId: string, count: number) {
  const until = Date.now() + 30_000;
  for (;;) {
    const log = (await alice('GET', `/tasks/${taskId}/webhooks`)).json;
    if (log.attempts.length >= count) return log;
    if (Date.now() > until) throw new Error(`${count} attempts expected: ${JSON.stringify(log)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function waitForSampling(taskId: string) {
  const until = Date.now() + 30_000;
  for (;;) {
    const p = (await alice('GET', `/tasks/${taskId}/progress`)).json;
    if (p.phase === 'sampling') return;
    if (Date.now() > until) throw new Error(`never sampling: ${JSON.stringify(p)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
