import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { inject } from 'vitest';
import type { RoleProcess } from '../../src/cli/processes.js';
import { type Stack as SdflowStack, startStack as startSdflowStack } from '../../src/cli/stack.js';
import { semaphoreStateQuery } from '../../src/workflows/definitions.js';

// A whole sdflow stack as real processes (runtime, workers, API) against the run's Temporal dev server, with its
// own data dir, ports, task queue and deployment id so test files never share state, and a fast simulator.

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

export type Stack = SdflowStack & { runtime: RoleProcess };

let counter = 0;

export function startStack(options: StackOptions & { runtime: false }): Promise<Omit<Stack, 'runtime'>>;
export function startStack(options?: StackOptions): Promise<Stack>;
export function startStack(options: StackOptions = {}): Promise<SdflowStack> {
  return startSdflowStack({
    temporal: { address: inject('temporalAddress'), namespace: inject('temporalNamespace') },
    dataDir: mkdtempSync(join(tmpdir(), 'sdflow-stack-')),
    id: `t${process.pid}x${++counter}x${Date.now().toString(36)}`,
    baseEnv: process.env,
    env: {
      SDFLOW_SIM_STEP_MS: '10',
      SDFLOW_SIM_LOAD_MS: '200',
      SDFLOW_SIM_VAE_MS: '5',
      SDFLOW_LOG_LEVEL: 'info',
      SDFLOW_SEMAPHORE_LEASE_CHECK_S: '2',
      SDFLOW_WORKER_SHUTDOWN_GRACE_S: '2',
      ...options.env,
    },
    workers: options.workers,
    runtime: options.runtime,
    removeDataDir: !process.env.SDFLOW_KEEP_TEST_DATA,
  });
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

/** The stack's semaphore state (holders, waiters, breakers), read by its query. */
export function semaphoreState(client: Client, stack: Pick<SdflowStack, 'env'>) {
  return client.workflow.getHandle(`sdflow-semaphore-${stack.env.SDFLOW_DEPLOYMENT}`).query(semaphoreStateQuery);
}
