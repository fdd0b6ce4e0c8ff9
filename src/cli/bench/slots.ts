import type { Client } from '@temporalio/client';
import { type Interval, maxOverlap, readBusyIntervals } from '../../sim/stats.js';
import { type LeaseInterval, RECENT_LEASES } from '../../types.js';
import type { SdflowClient } from '../client/api.js';
import { type CpuSample, cpuMsPerTask, sampleCpu } from './cpu.js';
import { LeaseRecorder } from './leases.js';
import type { SlotsResult } from './report.js';
import { TINY_JOB, taskEnd, timedAsync, txt2imgBody } from './requests.js';
import { ms, percentile, round3, tally } from './stats.js';

// How well the cap's slots are used: bursts of short jobs (about 0.1 s of simulated GPU work each), several times
// the cap at once. Slot-held time comes from the semaphore's own grants and releases; GPU-busy time from the
// simulators' own job records; both are wall-clock ms of the same machine.

/** The instances must be warm already (warmUp with as many jobs as the cap): no burst waits for an instance start. */
export interface SlotsInput {
  api: SdflowClient;
  temporal: Client;
  semaphoreId: string;
  /** The simulators' stats dir (SDFLOW_SIM_STATS_DIR). */
  statsDir: string;
  model: string;
  bursts: number;
  /** Tasks submitted at once in each timed burst; at least the cap. */
  burstTasks: number;
  /** The stack's processes by name (Temporal server, worker, API, runtime), to measure their CPU time per task. */
  processes?: Record<string, number>;
}

/** One burst: its tasks, and how long from the first submit to the last end. */
export interface Burst {
  taskIds: string[];
  ms: number;
}

export interface BurstFigures {
  busyMs: number;
  heldMs: number;
  leases: number;
  /** Release → next job start, for each release that had a task waiting for its slot. */
  gaps: number[];
}

/**
 * GPU-busy over slot-held time, and the handoff gaps, of bursts: the leases of a burst's tasks span its window, the
 * simulators' busy time within that window is the GPU-busy time, and in a burst of n tasks under a cap of c the
 * first n − c releases each hand a slot to a waiting task, paired in time order with the next job start after them.
 */
export function burstFigures(
  bursts: readonly Burst[],
  leases: readonly LeaseInterval[],
  busy: readonly Interval[],
  cap: number,
): BurstFigures {
  const out: BurstFigures = { busyMs: 0, heldMs: 0, leases: 0, gaps: [] };
  for (const burst of bursts) {
    const ids = new Set(burst.taskIds);
    const mine = leases.filter((l) => ids.has(l.workflowId));
    if (mine.length === 0) continue;
    const from = Math.min(...mine.map((l) => l.grantedAt));
    const to = Math.max(...mine.map((l) => l.releasedAt));
    out.leases += mine.length;
    out.heldMs += mine.reduce((sum, l) => sum + (l.releasedAt - l.grantedAt), 0);
    const within = busy.filter((i) => i.end > from && i.start < to);
    out.busyMs += within.reduce((sum, i) => sum + (Math.min(i.end, to) - Math.max(i.start, from)), 0);
    const releases = mine
      .map((l) => l.releasedAt)
      .sort((a, b) => a - b)
      .slice(0, Math.max(0, burst.taskIds.length - cap));
    const starts = within.map((i) => i.start).sort((a, b) => a - b);
    let next = 0;
    for (const release of releases) {
      while (next < starts.length && starts[next] < release) next++;
      if (next >= starts.length) break;
      out.gaps.push(starts[next] - release);
      next++;
    }
  }
  return out;
}

export async function runSlots(o: SlotsInput): Promise<SlotsResult> {
  const prompt = 'sdflow bench slots';
  const since = Date.now();
  const recorder = new LeaseRecorder(o.temporal, o.semaphoreId);
  const cap = (await recorder.poll()).limit;
  if (o.burstTasks < cap) throw new Error(`a burst of ${o.burstTasks} tasks cannot fill the cap of ${cap}`);

  /** One burst of `size` tasks at once, followed to their ends: its tasks, time and failures. */
  const burst = async (seedBase: number, size: number) => {
    const t0 = performance.now();
    const submits = await Promise.all(
      Array.from({ length: size }, (_, i) => timedAsync(o.api, txt2imgBody(o.model, TINY_JOB, seedBase + i, prompt))),
    );
    const taskIds = submits.flatMap((s) => (s.ok && s.taskId ? [s.taskId] : []));
    const ends = await Promise.all(taskIds.map((id) => taskEnd(o.temporal, id)));
    return {
      taskIds,
      ms: performance.now() - t0,
      succeeded: ends.filter((status) => status === 'succeeded').length,
      failures: [
        ...submits.flatMap((s) => (s.ok ? [] : [`submit: ${s.error}`])),
        ...ends.flatMap((status) => (status === 'succeeded' ? [] : [`task ${status}`])),
      ],
    };
  };

  // One untimed burst first: the figures are the steady state of bursts, not the first seconds of processes that sat
  // idle (a stack's first burst after a pause runs slower: BENCHMARKS.md, "Slots"). Its own rate is reported beside.
  const warmup = await burst(0, 4 * cap);

  const cpu = (): CpuSample | undefined => (o.processes ? sampleCpu(o.processes, { bench: process.pid }) : undefined);
  const cpuBefore = cpu();
  // The semaphore keeps its latest RECENT_LEASES ended leases: one read after each burst finds all of its leases, and
  // a reader polling during the bursts would add its own load to what is measured. Polling is needed only for a
  // burst larger than that record.
  if (o.burstTasks > RECENT_LEASES) recorder.start();
  const bursts: Burst[] = [];
  let succeeded = 0;
  const failures: string[] = [];
  try {
    for (let b = 0; b < o.bursts; b++) {
      const timed = await burst(1000 * (b + 1), o.burstTasks);
      bursts.push({ taskIds: timed.taskIds, ms: timed.ms });
      await recorder.poll();
      succeeded += timed.succeeded;
      failures.push(...timed.failures);
    }
  } finally {
    await recorder.stop();
  }
  const cpuAfter = cpu();

  const busy = readBusyIntervals(o.statsDir).filter((i) => i.end >= since);
  const figures = burstFigures(bursts, recorder.leases(), busy, cap);
  if (figures.leases === 0) throw new Error("none of the bursts' leases was found in the semaphore's state");
  const seconds = bursts.reduce((sum, b) => sum + b.ms, 0) / 1000;
  const tasks = o.burstTasks * o.bursts;
  const cpuPerTask = cpuBefore && cpuAfter ? cpuMsPerTask(cpuBefore, cpuAfter, tasks) : undefined;
  return {
    tasks_per_s: round3(succeeded / seconds),
    efficiency: round3(figures.busyMs / figures.heldMs),
    handoff_gap_p50_ms: ms(percentile(figures.gaps, 50)),
    handoff_gap_p99_ms: ms(percentile(figures.gaps, 99)),
    peak_concurrency: maxOverlap(busy),
    cap,
    tasks,
    succeeded,
    errors: failures.length,
    error_messages: tally(failures),
    bursts: o.bursts,
    burst_tasks: o.burstTasks,
    warmup_tasks: 4 * cap,
    warmup_errors: warmup.failures.length,
    warmup_tasks_per_s: round3(warmup.succeeded / (warmup.ms / 1000)),
    warmup_error_messages: tally(warmup.failures),
    leases: figures.leases,
    handoffs: figures.gaps.length,
    gpu_busy_s: round3(figures.busyMs / 1000),
    slot_held_s: round3(figures.heldMs / 1000),
    ...(cpuPerTask ? { cpu_ms_per_task: cpuPerTask.all, cpu_ms_per_task_by_process: cpuPerTask } : {}),
  };
}
