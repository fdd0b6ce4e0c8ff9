import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_MAIN } from '../../src/cli/processes.js';
import { freePort } from '../../src/http-util.js';
import { processesOf } from './runtime-procs.js';

// `sdflow dev` as a user runs it, on its own data dir and free ports, with a fast simulator.

export interface DevEnv {
  dataDir: string;
  api: string;
  ui: string;
  env: NodeJS.ProcessEnv;
}

export async function makeDevEnv(extra: Record<string, string> = {}): Promise<DevEnv> {
  const dataDir = mkdtempSync(join(tmpdir(), 'sdflow-dev-'));
  const port = await freePort();
  const uiPort = await freePort();
  return {
    dataDir,
    api: `http://127.0.0.1:${port}`,
    ui: `http://127.0.0.1:${uiPort}`,
    env: {
      ...process.env,
      SDFLOW_DATA_DIR: dataDir,
      PORT: String(port),
      TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}`,
      SDFLOW_TEMPORAL_UI_PORT: String(uiPort),
      SDFLOW_TEMPORAL_HTTP_PORT: String(await freePort()),
      SDFLOW_RUNTIME_PORT: String(await freePort()),
      SDFLOW_DEPLOYMENT: 'devtest',
      SDFLOW_SIM_STEP_MS: '10',
      SDFLOW_SIM_LOAD_MS: '200',
      ...extra,
    },
  };
}

export interface Dev {
  child: ChildProcess;
  output: () => string;
}

/** Starts `sdflow dev` and resolves once it says it is ready. */
export function startDev(env: NodeJS.ProcessEnv): Promise<Dev> {
  const child = spawn(process.execPath, [CLI_MAIN, 'dev'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dev not ready in 120 s:\n${output}`)), 120_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('sdflow is ready')) {
        clearTimeout(timer);
        resolve({ child, output: () => output });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`dev exited with ${code}:\n${output}`)));
  });
}

/** Ctrl-C, and its exit code. */
export async function stopDev(child: ChildProcess): Promise<number | null> {
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  child.kill('SIGINT');
  return exited;
}

export async function refused(url: string): Promise<boolean> {
  try {
    await fetch(url, { signal: AbortSignal.timeout(2000) });
    return false;
  } catch {
    return true;
  }
}

/** Kills every process left from the dev env (each has the data dir in its environment) and removes the data dir. */
export function removeDevEnv(d: DevEnv): void {
  for (const { pid } of processesOf(d.dataDir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone meanwhile.
    }
  }
  rmSync(d.dataDir, { recursive: true, force: true });
}
