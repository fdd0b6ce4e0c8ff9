import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/http-util.js';
import { type AgentEvent, decodeEvents } from '../../src/protocol/events.js';

// Real `sdflow` processes for the runtime and agent tests: compiled JS from dist/ (run `npx tsc` first), each with
// its own data dir, ports and simulator stats dir, and a sweep that leaves no process of the test behind.

export const CLI = join(process.cwd(), 'dist', 'cli', 'main.js');

export interface CliProcess {
  child: ChildProcess;
  pid: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
}

export interface TestEnv {
  dataDir: string;
  statsDir: string;
  env: Record<string, string>;
}

/** A temp data dir with fake checkpoints, and the env that points sdflow processes at it. */
export function makeTestEnv(checkpoints: string[], extra: Record<string, string> = {}): TestEnv {
  const dataDir = mkdtempSync(join(tmpdir(), 'sdflow-rt-'));
  const statsDir = join(dataDir, 'sim-stats');
  const ckptDir = join(dataDir, 'objects', 'models', 'stableDiffusion');
  mkdirSync(ckptDir, { recursive: true });
  for (const name of checkpoints) writeFileSync(join(ckptDir, name), Buffer.alloc(4096, name));
  return {
    dataDir,
    statsDir,
    env: {
      SDFLOW_DATA_DIR: dataDir,
      SDFLOW_SIM_STEP_MS: '20',
      SDFLOW_SIM_LOAD_MS: '100',
      SDFLOW_SIM_VAE_MS: '5',
      SDFLOW_SIM_STATS_DIR: statsDir,
      SDFLOW_SD_PROGRESS_POLL_MS: '50',
      SDFLOW_LOG_LEVEL: 'info',
      ...extra,
    },
  };
}

export function spawnCli(args: string[], env: Record<string, string>, logFile: string): CliProcess {
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', fd, fd],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    pid: child.pid!,
    exited,
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Polls `url` until it answers 200; fails early if `proc` exits. */
export async function waitForHttp(url: string, timeoutMs: number, proc?: CliProcess, logFile?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void proc?.exited.then(() => {
    exited = true;
  });
  for (;;) {
    if (exited) throw new Error(`process exited before ${url} answered:\n${logFile ? tail(logFile) : ''}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer 200 within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function tail(file: string, chars = 3000): string {
  try {
    return readFileSync(file, 'utf8').slice(-chars);
  } catch {
    return '';
  }
}

export interface RuntimeProcess extends CliProcess {
  url: string;
  port: number;
  logFile: string;
}

export async function startRuntimeProcess(t: TestEnv, port?: number): Promise<RuntimeProcess> {
  const runtimePort = port ?? (await freePort());
  const logFile = join(t.dataDir, 'runtime.log');
  const proc = spawnCli(['runtime'], { ...t.env, SDFLOW_RUNTIME_PORT: String(runtimePort) }, logFile);
  const url = `http://127.0.0.1:${runtimePort}`;
  await waitForHttp(`${url}/healthz`, 60_000, proc, logFile);
  return { ...proc, url, port: runtimePort, logFile };
}

/** Live processes (not zombies) whose environment points at the data dir: the test's agents and simulators. */
export function processesOf(dataDir: string): { pid: number; cmdline: string }[] {
  const out: { pid: number; cmdline: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') continue;
      const environ = readFileSync(`/proc/${entry}/environ`, 'latin1').split('\0');
      if (!environ.includes(`SDFLOW_DATA_DIR=${dataDir}`)) continue;
      out.push({
        pid: Number(entry),
        cmdline: readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' '),
      });
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return out;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Polls `fn` until it returns something truthy, and returns that. */
export async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 20_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Kills every process left from the test and removes its data dir (unless SDFLOW_KEEP_TEST_DATA is set). */
export function cleanup(t: TestEnv): void {
  for (const { pid } of processesOf(t.dataDir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  if (!process.env.SDFLOW_KEEP_TEST_DATA) rmSync(t.dataDir, { recursive: true, force: true });
}

/** POSTs to an NDJSON endpoint and collects its events; `onEvent` may abort through the returned controller. */
export async function streamEvents(
  url: string,
  body: unknown,
  onEvent?: (event: AgentEvent, abort: () => void) => void,
): Promise<{ events: AgentEvent[]; status: number; aborted: boolean }> {
  const controller = new AbortController();
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: controller.signal,
  });
  const events: AgentEvent[] = [];
  if (res.status !== 200 || !res.body) return { events, status: res.status, aborted: false };
  try {
    for await (const event of decodeEvents(res.body)) {
      events.push(event);
      onEvent?.(event, () => controller.abort());
    }
  } catch (err) {
    if (!controller.signal.aborted) throw err;
  }
  return { events, status: res.status, aborted: controller.signal.aborted };
}

export const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export function isPng(bytes: Buffer): boolean {
  return bytes.subarray(0, 8).equals(PNG_SIGNATURE);
}
