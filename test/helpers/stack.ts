import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inject } from 'vitest';
import { registerDemoCheckpoints } from '../../src/cli/demo-models.js';
import { type RoleProcess, spawnRole, waitForHttp, waitForOutput } from '../../src/cli/processes.js';
import { loadConfig } from '../../src/config/index.js';
import { freePort } from '../../src/http-util.js';
import { createMetaStore, createObjectStore } from '../../src/platform/index.js';

// A whole sdflow stack as real processes (runtime, workers, API) against the run's Temporal dev server, with its
// own data dir, ports, task queue and deployment id so test files never share state.

export const DEMO_MODEL = 'sdflow-demo-v1.safetensors';
export const DEMO_MODEL_2 = 'sdflow-demo-v2.safetensors';

export interface StackOptions {
  env?: Record<string, string>;
  workers?: number;
  /**
   * false: no `sdflow runtime` (a cloud function runtime is configured instead); the API's /healthz, which lists the
   * runtime's functions, is what the stack waits for.
   */
  runtime?: boolean;
}

export interface Stack {
  url: string;
  dataDir: string;
  statsDir: string;
  env: Record<string, string>;
  runtime: RoleProcess;
  workers: RoleProcess[];
  api: RoleProcess;
  startWorker(): Promise<RoleProcess>;
  startApi(): Promise<RoleProcess>;
  stop(): Promise<void>;
}

let counter = 0;

export function startStack(options: StackOptions & { runtime: false }): Promise<Omit<Stack, 'runtime'>>;
export function startStack(options?: StackOptions): Promise<Stack>;
export async function startStack(
  options: StackOptions = {},
): Promise<Omit<Stack, 'runtime'> & { runtime?: RoleProcess }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'sdflow-stack-'));
  const statsDir = join(dataDir, 'sim-stats');
  const id = `t${process.pid}x${++counter}x${Date.now().toString(36)}`;
  const apiPort = await freePort();
  const env: Record<string, string> = {
    SDFLOW_DATA_DIR: dataDir,
    PORT: String(apiPort),
    SDFLOW_RUNTIME_PORT: String(await freePort()),
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    TEMPORAL_NAMESPACE: inject('temporalNamespace'),
    SDFLOW_TASK_QUEUE: `sdflow-${id}`,
    SDFLOW_DEPLOYMENT: id,
    SDFLOW_SIM_STEP_MS: '10',
    SDFLOW_SIM_LOAD_MS: '200',
    SDFLOW_SIM_VAE_MS: '5',
    SDFLOW_SIM_STATS_DIR: statsDir,
    SDFLOW_LOG_LEVEL: 'info',
    SDFLOW_SEMAPHORE_LEASE_CHECK_S: '2',
    SDFLOW_WORKER_SHUTDOWN_GRACE_S: '2',
    ...options.env,
  };
  const childEnv = { ...process.env, ...env };
  const config = loadConfig(childEnv);
  const meta = createMetaStore(config);
  await registerDemoCheckpoints(createObjectStore(config), meta);
  await meta.close();

  const logs = join(dataDir, 'logs');
  let workerCount = 0;
  const startWorker = async () => {
    const n = ++workerCount;
    const w = spawnRole(`worker${n}`, ['worker'], { env: childEnv, logFile: join(logs, `worker${n}.log`) });
    await waitForOutput(w, /"msg":"worker running"/, 60_000);
    return w;
  };
  const startApi = async () => {
    const a = spawnRole('api', ['api'], { env: childEnv, logFile: join(logs, 'api.log') });
    await waitForHttp(`http://127.0.0.1:${apiPort}/healthz`, 60_000, a);
    return a;
  };

  let runtime: RoleProcess | undefined;
  if (options.runtime !== false) {
    runtime = spawnRole('runtime', ['runtime'], { env: childEnv, logFile: join(logs, 'runtime.log') });
    await waitForHttp(`${config.runtime.url}/healthz`, 30_000, runtime);
  }
  const workers: RoleProcess[] = [];
  for (let i = 0; i < (options.workers ?? 1); i++) workers.push(await startWorker());
  const stack = {
    url: `http://127.0.0.1:${apiPort}`,
    dataDir,
    statsDir,
    env,
    runtime,
    workers,
    api: await startApi(),
    startWorker,
    startApi,
    async stop() {
      await stack.api.stop(5000);
      await Promise.all(stack.workers.map((w) => w.stop(5000)));
      await runtime?.stop(10_000);
      if (!process.env.SDFLOW_KEEP_TEST_DATA) rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return stack;
}

export interface ApiAnswer<T = any> {
  status: number;
  json: T;
  headers: Headers;
}

/** One JSON call to the API. */
export async function call<T = any>(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<ApiAnswer<T>> {
  const res = await fetch(base + path, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json, headers: res.headers };
}

/** Polls a task's result until it is final. */
export async function waitForFinal(
  base: string,
  taskId: string,
  timeoutMs = 60_000,
  headers: Record<string, string> = {},
) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await call(base, 'GET', `/tasks/${taskId}/result`, undefined, headers);
    if (['succeeded', 'failed', 'cancelled'].includes(r.json?.status)) return r.json;
    if (Date.now() > until)
      throw new Error(`task ${taskId} not final after ${timeoutMs} ms: ${JSON.stringify(r.json)}`);
    await new Promise((res) => setTimeout(res, 150));
  }
}

export async function download(url: string): Promise<Buffer> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`GET ${url} -> ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}
