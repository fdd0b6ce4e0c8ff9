import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { type DevServer, startDevServer } from '../../src/cli/temporal-server.js';
import { freePort } from '../../src/http-util.js';
import { call, DEMO_MODEL, DEMO_MODEL_2, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// The Temporal dev server (with its SQLite file) restarts while 50 tasks are in flight. Workflows, timers and the
// semaphore's state live in that file; the worker, the API and the activities reconnect. All 50 complete.

let server: DevServer;
let stack: Stack;
let dir: string;
let ports: { port: number; uiPort: number; httpPort: number };

const startServer = () =>
  startDevServer({
    cli: inject('temporalCli'),
    ip: '127.0.0.1',
    ...ports,
    dbFile: join(dir, 'temporal.db'),
    namespace: 'default',
    logFile: join(dir, 'temporal.log'),
    headless: true,
  });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sdflow-temporal-restart-'));
  ports = { port: await freePort(), uiPort: await freePort(), httpPort: await freePort() };
  server = await startServer();
  stack = await startStack({
    env: {
      TEMPORAL_ADDRESS: server.address,
      SDFLOW_MAX_CONCURRENCY: '4',
      SDFLOW_SIM_STEP_MS: '20',
      SDFLOW_INVOKE_HEARTBEAT_TIMEOUT_S: '10',
    },
  });
});

afterAll(async () => {
  await stack?.stop();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it('all 50 tasks in flight complete across a Temporal restart', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 50; i++) {
    const r = await call(
      stack.url,
      'POST',
      '/txt2img',
      {
        stable_diffusion_model: i % 2 ? DEMO_MODEL : DEMO_MODEL_2,
        prompt: `flight ${i}`,
        steps: 30,
        width: 256,
        height: 256,
      },
      { 'Request-Type': 'async' },
    );
    expect(r.status).toBe(200);
    ids.push(r.json.taskId);
  }
  // Some are running, most are queued at the semaphore when the server goes away.
  await new Promise((r) => setTimeout(r, 1500));
  await server.stop();
  await new Promise((r) => setTimeout(r, 3000));
  server = await startServer();

  const finals = await Promise.all(ids.map((id) => waitForFinal(stack.url, id, 240_000)));
  expect(finals.map((f) => f.status)).toEqual(Array(50).fill('succeeded'));
}, 300_000);
