import { readdirSync, readFileSync } from 'node:fs';
import { sleep } from '../../../http-util.js';
import { INSTANCE_ENV } from '../../../protocol/instance-env.js';

// Process-group helpers for instances. Each instance (agent + its simulator) runs in its own process group whose id
// is the agent's pid. Re-adopted instances are not our children, so their death is seen through /proc or signal 0;
// a dead process that nobody reaps lingers as a zombie, which counts as dead here.

const hasProc = process.platform === 'linux';

function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state follows the parenthesised command name, which may itself hold spaces or parentheses.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}

/** True while the process exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  if (!hasProc) return true;
  const state = procState(pid);
  return state !== undefined && state !== 'Z' && state !== 'X';
}

/**
 * Whether the live process `pid` is the instance `instanceId`: its environment names it. Guards against killing an
 * unrelated process that reuses a recorded pid. Without /proc the pid is trusted.
 */
export function isInstanceProcess(pid: number, instanceId: string): boolean {
  if (!hasProc) return true;
  try {
    return readFileSync(`/proc/${pid}/environ`, 'latin1')
      .split('\0')
      .includes(`${INSTANCE_ENV.instanceId}=${instanceId}`);
  } catch {
    return false;
  }
}

/** Whether any live (non-zombie) process is in the process group `pgid`. */
export function groupAlive(pgid: number): boolean {
  if (!Number.isInteger(pgid) || pgid <= 0) return false;
  if (!hasProc) {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM';
    }
  }
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // fields[0] is the state, fields[2] the process group.
      if (Number(fields[2]) === pgid && fields[0] !== 'Z' && fields[0] !== 'X') return true;
    } catch {
      // The process ended while we looked.
    }
  }
  return false;
}

/** Signals the whole process group; a group that is already gone is fine. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  if (!Number.isInteger(pgid) || pgid <= 0) return;
  try {
    process.kill(-pgid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

async function waitGroupGone(pgid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (groupAlive(pgid)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

/** SIGTERM the group, SIGKILL it after `graceMs`; true once no member is left. */
export async function stopGroup(pgid: number, graceMs: number): Promise<boolean> {
  signalGroup(pgid, 'SIGTERM');
  if (await waitGroupGone(pgid, graceMs)) return true;
  signalGroup(pgid, 'SIGKILL');
  return waitGroupGone(pgid, 5000);
}
