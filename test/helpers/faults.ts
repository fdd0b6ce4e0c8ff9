import type { Stack } from './stack.js';
import { call } from './stack.js';

// Shared moves of the fault-injection tests: finding the processes of a running task and waiting for states.

export interface RuntimeInstance {
  id: string;
  busy: boolean;
  state: string;
  pid: number;
  port: number;
}

/** Every instance of every function, as the stack's runtime reports them. */
export async function runtimeInstances(stack: Stack): Promise<RuntimeInstance[]> {
  const res = await fetch(`http://127.0.0.1:${stack.env.SDFLOW_RUNTIME_PORT}/functions`);
  const functions = (await res.json()) as { instances?: RuntimeInstance[] }[];
  return functions.flatMap((f) => f.instances ?? []);
}

/** The simulator behind an instance's agent. */
export async function simPidOf(instance: RuntimeInstance): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${instance.port}/sd/sim/stats`);
  return ((await res.json()) as { pid: number }).pid;
}

export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Resolves once the task is running and its simulator reports sampling progress. */
export function sampling(stack: Stack, taskId: string, timeoutMs = 30_000) {
  return until(
    `task ${taskId} to sample`,
    async () => {
      const p = (await call(stack.url, 'GET', `/tasks/${taskId}/progress`)).json;
      return p.status === 'running' && p.state?.sampling_step > 0 ? p : undefined;
    },
    timeoutMs,
  );
}

export const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
