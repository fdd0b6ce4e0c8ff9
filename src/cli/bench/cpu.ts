import { readdirSync, readFileSync } from 'node:fs';

// CPU time spent by a stack's processes (Linux: /proc/<pid>/stat), grouped by what each process is. Unlike a rate,
// CPU time per task hardly moves when other work shares the machine, so it compares builds on a busy machine.

/** /proc/<pid>/stat counts in clock ticks of 1/100 s (USER_HZ, 100 on every Linux architecture Node runs on). */
const TICK_MS = 10;

interface ProcStat {
  ppid: number;
  cpuMs: number;
}

/** utime + stime of a process and its parent's pid; undefined when it cannot be read (gone, or no /proc). */
function procStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name, in parentheses, may hold spaces: the fields that follow are counted from its end.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(fields[1]), cpuMs: (Number(fields[11]) + Number(fields[12])) * TICK_MS };
  } catch {
    return undefined;
  }
}

/** The sdflow role a process runs (`sdflow agent` → agent), from its command line; undefined for anything else. */
function sdflowRole(pid: number): string | undefined {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const main = argv.findIndex((arg) => arg.endsWith('main.js'));
    return main >= 0 ? argv[main + 1] : undefined;
  } catch {
    return undefined;
  }
}

/** CPU ms of each process, keyed by pid, with the group it counts in. */
export type CpuSample = Map<number, { group: string; cpuMs: number }>;

/**
 * The named processes (`trees`) and all their descendants, and the `alone` ones without theirs. A descendant counts
 * in its nearest named ancestor's group, but for the agents and simulators (a runtime's instances), which count in
 * groups of their own.
 */
export function sampleCpu(trees: Record<string, number>, alone: Record<string, number> = {}): CpuSample {
  const stats = new Map<number, ProcStat>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = procStat(Number(entry));
    if (stat) stats.set(Number(entry), stat);
  }
  const rootGroup = new Map(Object.entries({ ...alone, ...trees }).map(([group, pid]) => [pid, group]));
  const aloneGroups = new Set(Object.keys(alone));
  const groupOf = (pid: number): string | undefined => {
    for (let p = pid, hops = 0; p > 1 && hops < 16; p = stats.get(p)?.ppid ?? 0, hops++) {
      const group = rootGroup.get(p);
      if (group === undefined) continue;
      if (p === pid) return group;
      if (aloneGroups.has(group)) return undefined;
      const role = sdflowRole(pid);
      return role === 'agent' ? 'agents' : role === 'sim' ? 'simulators' : group;
    }
    return undefined;
  };
  const sample: CpuSample = new Map();
  for (const [pid, stat] of stats) {
    const group = groupOf(pid);
    if (group !== undefined) sample.set(pid, { group, cpuMs: stat.cpuMs });
  }
  return sample;
}

/** CPU ms per task of each group between two samples (a process started in between counts from zero), and in all. */
export function cpuMsPerTask(before: CpuSample, after: CpuSample, tasks: number): Record<string, number> {
  const byGroup: Record<string, number> = {};
  for (const [pid, { group, cpuMs }] of after) {
    byGroup[group] = (byGroup[group] ?? 0) + cpuMs - (before.get(pid)?.cpuMs ?? 0);
  }
  const perTask = (ms: number) => Math.round((ms / Math.max(1, tasks)) * 10) / 10;
  const all = Object.values(byGroup).reduce((a, b) => a + b, 0);
  return {
    ...Object.fromEntries(Object.entries(byGroup).map(([group, ms]) => [group, perTask(ms)])),
    all: perTask(all),
  };
}
