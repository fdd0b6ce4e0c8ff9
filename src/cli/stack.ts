import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../config/index.js';
import { processLogFile } from '../data-dir.js';
import { freePort } from '../http-util.js';
import { createMetaStore, createObjectStore } from '../platform/index.js';
import { DEMO_CHECKPOINTS, registerSimCheckpoints } from './demo-models.js';
import { type RoleProcess, spawnRole, waitForHttp, waitForOutput } from './processes.js';

// A stack of sdflow processes (runtime, workers, API) against a Temporal server someone else runs, on free ports with
// its own data dir, task queue and deployment id, so that several stacks share one Temporal server without sharing
// state. The benchmark starts one per scenario; the tests start one per test file.

export interface StackOptions {
  temporal: { address: string; namespace: string };
  /** Where the stack keeps its state and logs. */
  dataDir: string;
  /** Names the task queue (`sdflow-<id>`) and the deployment (`<id>`, so the semaphore `sdflow-semaphore-<id>`). */
  id: string;
  /** The environment the processes start from (PATH, …); the stack's own settings go over it. */
  baseEnv: NodeJS.ProcessEnv;
  /** Settings of this stack (sim timings, caps, …), over the stack's defaults. */
  env?: Record<string, string>;
  /** Checkpoints registered as loaded before the processes start, served by the simulator. */
  checkpoints?: readonly string[];
  workers?: number;
  /** false: no `sdflow runtime` (another function runtime is configured). */
  runtime?: boolean;
  /** Remove the data dir once the stack has stopped. */
  removeDataDir?: boolean;
}

export interface Stack {
  url: string;
  dataDir: string;
  /** Where the stack's simulators record their busy intervals (SDFLOW_SIM_STATS_DIR). */
  statsDir: string;
  /** The stack's own settings (not the inherited environment). */
  env: Record<string, string>;
  runtime?: RoleProcess;
  workers: RoleProcess[];
  api: RoleProcess;
  startWorker(): Promise<RoleProcess>;
  startApi(): Promise<RoleProcess>;
  /** Stops the API, the workers, then the runtime (which stops its instances). */
  stop(): Promise<void>;
}

export async function startStack(o: StackOptions): Promise<Stack> {
  const statsDir = join(o.dataDir, 'sim-stats');
  const apiPort = await freePort();
  const env: Record<string, string> = {
    SDFLOW_DATA_DIR: o.dataDir,
    PORT: String(apiPort),
    SDFLOW_RUNTIME_PORT: String(await freePort()),
    TEMPORAL_ADDRESS: o.temporal.address,
    TEMPORAL_NAMESPACE: o.temporal.namespace,
    SDFLOW_TASK_QUEUE: `sdflow-${o.id}`,
    SDFLOW_DEPLOYMENT: o.id,
    SDFLOW_SIM_STATS_DIR: statsDir,
    ...o.env,
  };
  const childEnv = { ...o.baseEnv, ...env };
  const config = loadConfig(childEnv);
  const meta = await createMetaStore(config);
  try {
    await registerSimCheckpoints(await createObjectStore(config), meta, o.checkpoints ?? DEMO_CHECKPOINTS);
  } finally {
    await meta.close();
  }

  const log = (name: string) => processLogFile(o.dataDir, name);
  let workerCount = 0;
  const started: RoleProcess[] = [];
  const spawn = (name: string, role: string) => {
    const proc = spawnRole(name, [role], { env: childEnv, logFile: log(name) });
    started.push(proc);
    return proc;
  };
  const startWorker = async () => {
    const worker = spawn(`worker${++workerCount}`, 'worker');
    await waitForOutput(worker, /"msg":"worker running"/, 60_000);
    return worker;
  };
  const startApi = async () => {
    const api = spawn('api', 'api');
    await waitForHttp(`http://127.0.0.1:${apiPort}/healthz`, 60_000, api, { ownAnswer: true });
    return api;
  };

  try {
    let runtime: RoleProcess | undefined;
    if (o.runtime !== false) {
      runtime = spawn('runtime', 'runtime');
      await waitForHttp(`${config.runtime.url}/healthz`, 30_000, runtime, { ownAnswer: true });
    }
    const workers: RoleProcess[] = [];
    for (let i = 0; i < (o.workers ?? 1); i++) workers.push(await startWorker());
    const stack: Stack = {
      url: `http://127.0.0.1:${apiPort}`,
      dataDir: o.dataDir,
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
        await stack.runtime?.stop(10_000);
        if (o.removeDataDir) rmSync(o.dataDir, { recursive: true, force: true });
      },
    };
    return stack;
  } catch (err) {
    // A stack that could not start leaves nothing running.
    await Promise.all(started.map((proc) => proc.stop(5000)));
    throw err;
  }
}
