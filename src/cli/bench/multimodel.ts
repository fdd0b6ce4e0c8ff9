import { setTimeout as sleep } from 'node:timers/promises';
import { seededRandom } from '../../sim/random.js';
import { readCheckpointLoads } from '../../sim/stats.js';
import type { SdflowClient } from '../client/api.js';
import type { MultimodelResult } from './report.js';
import { FULL_A10_JOB, type Timed, timedSync, txt2imgBody, warmUp } from './requests.js';
import { ms, percentile, round3, tally } from './stats.js';

// The platform's central claim: one function per checkpoint beats instances that switch checkpoints. Jobs of 20 steps,
// uniform over the checkpoints, arrive as a Poisson process; the same arrivals (same times, same checkpoints) go to
// both sides at once, each a sync request: sdflow with an instance per checkpoint, and the switching baseline, whose
// instances are shared by every checkpoint and load the one a job asks for. A side that cannot keep up builds a
// backlog: jobs still unfinished a drain period after the arrivals stop are cancelled.

export interface MultimodelSide {
  api: SdflowClient;
  /** Its simulators' stats dir, where their checkpoint loads are recorded. */
  statsDir: string;
}

export interface MultimodelInput {
  sdflow: MultimodelSide;
  switching: MultimodelSide;
  models: readonly string[];
  ratePerS: number;
  durationS: number;
  drainS: number;
}

interface Job {
  taskId: string;
  done?: Timed & { at: number };
}

/** Arrival times in ms from the start and their checkpoints, the same for every run. */
export function poissonArrivals(ratePerS: number, durationS: number, models: readonly string[], seed = 11) {
  const random = seededRandom(seed);
  const arrivals: { at: number; model: string }[] = [];
  for (let at = 0; ; ) {
    at += (-Math.log(1 - random()) / ratePerS) * 1000;
    if (at >= durationS * 1000) return arrivals;
    arrivals.push({ at, model: models[Math.floor(random() * models.length)] });
  }
}

/** Resolves when `promise` settles or `ms` pass, whichever comes first; the timer does not outlive it. */
async function settledWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, Math.max(0, ms));
  });
  await Promise.race([promise.then(noop, noop), timeout]);
  clearTimeout(timer);
}

const noop = () => undefined;

function figures(jobs: readonly Job[], windowEnd: number) {
  const finished = jobs.filter((j) => j.done !== undefined);
  const ok = finished.filter((j) => j.done!.ok);
  const latencies = ok.map((j) => j.done!.ms);
  return {
    images: ok.filter((j) => j.done!.at <= windowEnd).length,
    late: ok.filter((j) => j.done!.at > windowEnd).length,
    failed: finished.length - ok.length,
    unfinished: jobs.length - finished.length,
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    errors: tally(finished.flatMap((j) => (j.done!.ok ? [] : [j.done!.error ?? 'failed']))),
  };
}

export async function runMultimodel(o: MultimodelInput): Promise<MultimodelResult> {
  // Each side starts with an instance per checkpoint, each holding its checkpoint: the baseline at its best.
  const warmJobs = o.models.map((model) => ({ model, job: FULL_A10_JOB }));
  await Promise.all([warmUp(o.sdflow.api, warmJobs), warmUp(o.switching.api, warmJobs)]);
  const warmedAt = Date.now();

  const arrivals = poissonArrivals(o.ratePerS, o.durationS, o.models);
  const sides = { sdflow: o.sdflow, switching: o.switching };
  const jobs = { sdflow: [] as Job[], switching: [] as Job[] };
  const answers: Promise<void>[] = [];
  // Task ids of their own, so a job can be cancelled; unique across both sides, which share the Temporal namespace.
  const run = Date.now().toString(36);
  const t0 = performance.now() + 100;
  for (const [k, arrival] of arrivals.entries()) {
    const wait = t0 + arrival.at - performance.now();
    if (wait > 0) await sleep(wait);
    for (const name of ['sdflow', 'switching'] as const) {
      const job: Job = { taskId: `bench-mm-${name}-${run}-${k}` };
      jobs[name].push(job);
      const body = txt2imgBody(arrival.model, FULL_A10_JOB, k + 1, `sdflow bench multimodel #${k + 1}`);
      answers.push(
        timedSync(sides[name].api, body, job.taskId).then((t) => {
          job.done = { ...t, at: performance.now() };
        }),
      );
    }
  }
  const windowEnd = t0 + o.durationS * 1000;
  const drainEnd = windowEnd + o.drainS * 1000;
  const all = Promise.all(answers);
  await settledWithin(all, drainEnd - performance.now());
  // The snapshot the figures come from: what had finished by the end of the drain.
  const sdflow = figures(jobs.sdflow, windowEnd);
  const switching = figures(jobs.switching, windowEnd);
  await Promise.all(
    (['sdflow', 'switching'] as const).flatMap((name) =>
      jobs[name].filter((job) => !job.done).map((job) => sides[name].api.cancel(job.taskId).catch(noop)),
    ),
  );
  // The cancelled jobs' answers come once their tasks end; whatever is left ends with the stacks.
  await settledWithin(all, 5000);

  const loadsAfter = (statsDir: string) => readCheckpointLoads(statsDir).filter((t) => t > warmedAt).length;
  const sdflowPerS = sdflow.images / o.durationS;
  const switchingPerS = switching.images / o.durationS;
  return {
    sdflow_images_per_s: round3(sdflowPerS),
    switching_images_per_s: round3(switchingPerS),
    ratio: round3(sdflowPerS / switchingPerS),
    sdflow_p50_ms: ms(sdflow.p50),
    sdflow_p95_ms: ms(sdflow.p95),
    switching_p50_ms: ms(switching.p50),
    switching_p95_ms: ms(switching.p95),
    sdflow_loads_after_warmup: loadsAfter(o.sdflow.statsDir),
    switching_loads: loadsAfter(o.switching.statsDir),
    duration_s: o.durationS,
    offered_per_s: o.ratePerS,
    submitted: arrivals.length,
    sdflow_images: sdflow.images,
    sdflow_late: sdflow.late,
    sdflow_failed: sdflow.failed,
    sdflow_unfinished: sdflow.unfinished,
    switching_images: switching.images,
    switching_late: switching.late,
    switching_failed: switching.failed,
    switching_unfinished: switching.unfinished,
    error_messages: [...sdflow.errors.map((e) => `sdflow: ${e}`), ...switching.errors.map((e) => `switching: ${e}`)],
  };
}
