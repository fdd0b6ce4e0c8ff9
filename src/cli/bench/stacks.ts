import { join } from 'node:path';
import { processLogFile } from '../../data-dir.js';
import { freePort } from '../../http-util.js';
import { DEMO_CHECKPOINTS } from '../demo-models.js';
import { spawnRole, waitForHttp } from '../processes.js';
import { type Stack, startStack } from '../stack.js';
import type { Owned } from './owned.js';

// The stacks and simulators the benchmark starts, against its one Temporal server, each with its own data dir under
// the run's directory, and each stopped with the run.

/** The simulator's defaults, an A10's timings: 65 ms per step at 512×512, 100 ms of VAE, 5 s per checkpoint load. */
export const A10_TIMINGS = { SDFLOW_SIM_STEP_MS: '65', SDFLOW_SIM_VAE_MS: '100', SDFLOW_SIM_LOAD_MS: '5000' };

/** The multimodel scenario's four checkpoints: the two demo ones and two more placeholders. */
export const BENCH_CHECKPOINTS = [
  ...DEMO_CHECKPOINTS,
  'sdflow-bench-v3.safetensors',
  'sdflow-bench-v4.safetensors',
] as const;

/**
 * Settings of every benchmark stack: instances warmed before a group's first scenario are kept however long the
 * scenarios before take, and a stopping worker does not wait for tasks the benchmark has stopped following.
 */
const STACK_ENV = { SDFLOW_KEEP_ALIVE_S: '3600', SDFLOW_WORKER_SHUTDOWN_GRACE_S: '1' };

export interface BenchPlace {
  temporal: { address: string; namespace: string };
  /** The Temporal server's process, when the benchmark runs it. */
  temporalPid?: number;
  /** The run's directory: one data dir per stack, and the simulators' logs. */
  root: string;
  owned: Owned;
}

/**
 * The environment the benchmark's processes start from: this one without sdflow's and Temporal's settings, so that
 * every stack runs on the defaults plus its scenario's own settings.
 */
export function benchBaseEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('SDFLOW_') && !name.startsWith('TEMPORAL_')),
  );
}

export interface OwnedStack {
  stack: Stack;
  stop: () => Promise<void>;
}

export async function startBenchStack(
  place: BenchPlace,
  name: string,
  o: { env: Record<string, string>; checkpoints?: readonly string[]; runtime?: boolean },
): Promise<OwnedStack> {
  const stack = await startStack({
    temporal: place.temporal,
    dataDir: join(place.root, name),
    id: `bench-${name}-${Date.now().toString(36)}`,
    baseEnv: benchBaseEnv(),
    env: { ...STACK_ENV, ...o.env },
    checkpoints: o.checkpoints,
    runtime: o.runtime,
  });
  return { stack, stop: place.owned.add(`stack ${name}`, () => stack.stop()) };
}

export interface OwnedSim {
  url: string;
  stop: () => Promise<void>;
}

/** An `sdflow sim` with the given timings, serving the model files under `modelsDir`. */
export async function startBenchSim(
  place: BenchPlace,
  name: string,
  o: { timings: Record<string, string>; modelsDir: string; statsDir?: string; port?: number },
): Promise<OwnedSim> {
  const port = o.port ?? (await freePort());
  const env = { ...benchBaseEnv(), ...o.timings, ...(o.statsDir ? { SDFLOW_SIM_STATS_DIR: o.statsDir } : {}) };
  const proc = spawnRole(name, ['sim', '--port', String(port), '--models-dir', o.modelsDir], {
    env,
    logFile: processLogFile(place.root, name),
  });
  const stop = place.owned.add(name, () => proc.stop(5000));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${url}/sim/stats`, 30_000, proc, { ownAnswer: true });
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, stop };
}
