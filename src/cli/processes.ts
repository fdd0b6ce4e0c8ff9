import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

// Launching sdflow's own processes (compiled JavaScript, never a TypeScript loader) and waiting for them.

/** dist/cli/main.js: the entry every sdflow process runs (also when this module is loaded from source by tests). */
export const CLI_MAIN = fileURLToPath(
  new URL(import.meta.url.endsWith('.ts') ? '../../dist/cli/main.js' : './main.js', import.meta.url),
);

export interface RoleProcess {
  name: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after `graceMs`. Resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnRoleOptions {
  env: NodeJS.ProcessEnv;
  /** The process's output is appended here. */
  logFile: string;
  /** Called with each output line (for a console summary). */
  onLine?: (line: string) => void;
}

export function spawnRole(name: string, args: string[], o: SpawnRoleOptions): RoleProcess {
  mkdirSync(dirname(o.logFile), { recursive: true });
  // Its own process group, so a terminal's Ctrl-C reaches only the launcher, which stops its roles in order; the IPC
  // channel lets the role notice when the launcher is gone and stop itself.
  const child = spawn(process.execPath, [CLI_MAIN, ...args], {
    env: o.env,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    detached: true,
  });
  const log = createWriteStream(o.logFile, { flags: 'a' });
  for (const stream of [child.stdout, child.stderr]) {
    stream?.pipe(log, { end: false });
    if (o.onLine && stream) createInterface({ input: stream }).on('line', o.onLine);
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    name,
    child,
    exited,
    async stop(graceMs = 15_000) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      log.end();
    },
  };
}

/**
 * Polls `url` until it answers 2xx, failing early if `proc` exits. With `ownAnswer`, the answer must also come from
 * `proc`: its JSON body's `pid` (the API's and the runtime's /healthz carry it, and the simulator's /sim/stats).
 * Ports are picked free a moment before a process binds them, so another process may hold one meanwhile and answer
 * in its place; that is not readiness.
 */
export async function waitForHttp(
  url: string,
  timeoutMs: number,
  proc?: RoleProcess,
  o: { ownAnswer?: boolean } = {},
): Promise<void> {
  const mustBeOwn = o.ownAnswer === true && proc !== undefined;
  const until = Date.now() + timeoutMs;
  let exited = false;
  proc?.exited.then(() => {
    exited = true;
  });
  let last = '';
  while (Date.now() < until) {
    if (exited) throw new Error(`${proc?.name} exited before ${url} was ready`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
      const text = await res.text();
      const pid = mustBeOwn ? answeringPid(text) : undefined;
      if (res.ok && (!mustBeOwn || pid === proc.child.pid)) return;
      last = res.ok ? `answered by another process (pid ${pid ?? 'unknown'})` : `${res.status} ${text}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms: ${last}`);
}

function answeringPid(body: string): number | undefined {
  try {
    const pid = (JSON.parse(body) as { pid?: unknown }).pid;
    return typeof pid === 'number' ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Resolves once the process's stdout has shown `match`; rejects if it exits first or `timeoutMs` passes. */
export function waitForOutput(proc: RoleProcess, match: RegExp, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(
      () => reject(new Error(`${proc.name}: no ${match} after ${timeoutMs} ms:\n${seen.slice(-2000)}`)),
      timeoutMs,
    );
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      if (match.test(seen)) {
        clearTimeout(timer);
        proc.child.stdout?.off('data', onData);
        resolve();
      }
    };
    proc.child.stdout?.on('data', onData);
    proc.exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${proc.name} exited with code ${code}:\n${seen.slice(-2000)}`));
    });
  });
}
