import { readFileSync } from 'node:fs';
import type { Client } from '@temporalio/client';

// A process's resident memory, sampled from /proc while a load runs (Linux), and the size of a task's history.

const SAMPLE_MS = 250;

/** VmRSS of a process in MB; undefined when it cannot be read (gone, or no /proc). */
export function rssMb(pid: number): number | undefined {
  try {
    const kb = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

/** The peak RSS of named processes, sampled every 250 ms between start() and stop(). */
export class RssSampler {
  private readonly peaks = new Map<string, number>();
  private timer?: NodeJS.Timeout;
  samples = 0;

  constructor(private readonly pids: Record<string, number>) {}

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), SAMPLE_MS);
  }

  private sample(): void {
    this.samples++;
    for (const [name, pid] of Object.entries(this.pids)) {
      const mb = rssMb(pid);
      if (mb !== undefined) this.peaks.set(name, Math.max(this.peaks.get(name) ?? 0, mb));
    }
  }

  /** Stops sampling; the peak of each process in MB (one decimal), undefined when it was never read. */
  stop(): Record<string, number | undefined> {
    clearInterval(this.timer);
    this.sample();
    return Object.fromEntries(
      Object.keys(this.pids).map((name) => {
        const peak = this.peaks.get(name);
        return [name, peak === undefined ? undefined : Math.round(peak * 10) / 10];
      }),
    );
  }
}

/** The mean number of history events of the tasks' workflows. */
export async function historyEventsPerTask(temporal: Client, taskIds: readonly string[]): Promise<number> {
  if (taskIds.length === 0) throw new Error('no task to read the history of');
  const counts = await Promise.all(
    taskIds.map(async (id) => (await temporal.workflow.getHandle(id).fetchHistory()).events?.length ?? 0),
  );
  return Math.round((counts.reduce((a, b) => a + b, 0) / counts.length) * 10) / 10;
}
