import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from '@temporalio/client';
import type { Txt2ImgRequest } from '../../api/schemas.js';
import { seededRandom } from '../../sim/random.js';
import { readCheckpointLoads } from '../../sim/stats.js';
import { CliError, type SdflowClient, type TaskSummary } from '../client/api.js';
import type { EtaResult, MultimodelResult } from './report.js';
import { FULL_A10_JOB, listedTasks, type Timed, taskEnd, txt2imgBody, warmUp } from './requests.js';
import { ms, percentile, round3, tally } from './stats.js';

// The platform's central claim: one function per checkpoint beats instances that switch checkpoints. Jobs of 20 steps,
// uniform over the checkpoints, arrive as a Poisson process; the same arrivals (same times, same checkpoints) go to
// both sides at once, each an async submit followed to its end (a long poll on its workflow): sdflow with an instance
// per checkpoint, and the switching baseline, whose instances are shared by every checkpoint and load the one a job
// asks for. A side that cannot keep up builds a backlog: jobs still unfinished a drain period after the arrivals stop
// are cancelled. The same run measures the eta scenario: the estimates the sdflow side's async answers carry, against
// when its tasks started and finished.

export interface MultimodelSide {
  api: SdflowClient;
  /** Its simulators' stats dir, where their checkpoint loads are recorded. */
  statsDir: string;
}

export interface MultimodelInput {
  sdflow: MultimodelSide;
  /** Absent when only eta is measured: the sdflow side alone. */
  switching?: MultimodelSide;
  temporal: Client;
  models: readonly string[];
  ratePerS: number;
  durationS: number;
  drainS: number;
}

export interface Job {
  taskId: string;
  /** Epoch ms just before the submit was sent, and when its answer came. */
  submittedAt: number;
  answeredAt?: number;
  estimate?: { estimatedStartS: number; estimatedFinishS: number };
  done?: Timed & { at: number };
}

const SIDES = ['sdflow', 'switching'] as const;
type SideName = (typeof SIDES)[number];

/** An async submit followed to its task's end: ok when it succeeded; `ms` from the submit to the end. */
export async function submitAndFollow(
  side: Pick<MultimodelSide, 'api'>,
  temporal: Client,
  body: Txt2ImgRequest,
  job: Job,
): Promise<void> {
  const t0 = performance.now();
  const end = (ok: boolean, error?: string) => {
    const at = performance.now();
    job.done = { ok, ms: at - t0, at, ...(error ? { error } : {}) };
  };
  try {
    const { body: answer } = await side.api.submit('txt2img', body, { async: true, taskId: job.taskId });
    job.answeredAt = Date.now();
    const { estimatedStartS, estimatedFinishS } = answer;
    if (estimatedStartS !== undefined && estimatedFinishS !== undefined) {
      job.estimate = { estimatedStartS, estimatedFinishS };
    }
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    end(false, err.message);
    return;
  }
  const status = await taskEnd(temporal, job.taskId);
  end(status === 'succeeded', status === 'succeeded' ? undefined : status);
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
export async function settledWithin(promise: Promise<unknown>, ms: number): Promise<void> {
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

export interface MultimodelRun {
  multimodel?: MultimodelResult;
  eta: EtaResult;
}

export async function runMultimodel(o: MultimodelInput): Promise<MultimodelRun> {
  const sides: Partial<Record<SideName, MultimodelSide>> = { sdflow: o.sdflow, switching: o.switching };
  const names = SIDES.filter((name) => sides[name]);
  // Each side starts with an instance per checkpoint, each holding its checkpoint: the baseline at its best.
  const warmJobs = o.models.map((model) => ({ model, job: FULL_A10_JOB }));
  await Promise.all(names.map((name) => warmUp(sides[name]!.api, warmJobs)));
  const warmedAt = Date.now();

  const arrivals = poissonArrivals(o.ratePerS, o.durationS, o.models);
  const jobs: Record<SideName, Job[]> = { sdflow: [], switching: [] };
  const answers: Promise<void>[] = [];
  // Task ids of their own, so a job can be cancelled; unique across both sides, which share the Temporal namespace.
  const run = Date.now().toString(36);
  const t0 = performance.now() + 100;
  for (const [k, arrival] of arrivals.entries()) {
    const wait = t0 + arrival.at - performance.now();
    if (wait > 0) await sleep(wait);
    for (const name of names) {
      const job: Job = { taskId: `bench-mm-${name}-${run}-${k}`, submittedAt: Date.now() };
      jobs[name].push(job);
      const body = txt2imgBody(arrival.model, FULL_A10_JOB, k + 1, `sdflow bench multimodel #${k + 1}`);
      answers.push(submitAndFollow(sides[name]!, o.temporal, body, job));
    }
  }
  const windowEnd = t0 + o.durationS * 1000;
  const drainEnd = windowEnd + o.drainS * 1000;
  const all = Promise.all(answers);
  await settledWithin(all, drainEnd - performance.now());
  // The snapshot the figures come from: what had finished by the end of the drain.
  const sdflow = figures(jobs.sdflow, windowEnd);
  const switching = figures(jobs.switching, windowEnd);
  const cancelledAt = Date.now();
  await Promise.all(
    names.flatMap((name) =>
      jobs[name].filter((job) => !job.done).map((job) => sides[name]!.api.cancel(job.taskId).catch(noop)),
    ),
  );
  // The cancelled jobs' answers come once their tasks end; whatever is left ends with the stacks.
  await settledWithin(all, 5000);

  const eta = etaFigures(jobs.sdflow, await listedTasks(o.sdflow.api), cancelledAt, o);
  if (!o.switching) return { eta };
  const loadsAfter = (statsDir: string) => readCheckpointLoads(statsDir).filter((t) => t > warmedAt).length;
  const sdflowPerS = sdflow.images / o.durationS;
  const switchingPerS = switching.images / o.durationS;
  const multimodel: MultimodelResult = {
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
  return { multimodel, eta };
}

/** One task's estimate against what happened, in ms from its submit. */
export interface EtaSample {
  estimatedStartMs: number;
  actualStartMs: number;
  estimatedFinishMs: number;
  actualFinishMs: number;
}

/**
 * The estimates of the tasks that succeeded, against their rows' start (the slot's grant) and finish. An estimate
 * counts from its answer, so its submit latency is added to compare it with the actual times from the submit. A task
 * that started after the benchmark cancelled the backlog (`cancelledAt`, epoch ms) is left out: the cancelled tasks
 * ahead of it let it start sooner than any estimate could know.
 */
export function etaSamples(
  jobs: readonly Job[],
  rows: ReadonlyMap<string, TaskSummary>,
  cancelledAt: number,
): EtaSample[] {
  return jobs.flatMap((job) => {
    const row = rows.get(job.taskId);
    if (!job.estimate || !job.answeredAt || row?.status !== 'succeeded' || !row.startedAt || !row.finishedAt) return [];
    if (Date.parse(row.startedAt) >= cancelledAt) return [];
    const answered = job.answeredAt - job.submittedAt;
    return [
      {
        estimatedStartMs: answered + job.estimate.estimatedStartS * 1000,
        actualStartMs: Date.parse(row.startedAt) - job.submittedAt,
        estimatedFinishMs: answered + job.estimate.estimatedFinishS * 1000,
        actualFinishMs: Date.parse(row.finishedAt) - job.submittedAt,
      },
    ];
  });
}

const seconds = (value: number) => Math.round(value / 10) / 100;

type EtaFigures = Omit<EtaResult, 'without_estimate' | 'duration_s' | 'offered_per_s'>;

export function etaResult(samples: readonly EtaSample[]): EtaFigures {
  if (samples.length === 0) throw new Error('no task with an estimate succeeded');
  const at = (p: number, of: (x: EtaSample) => number) => percentile(samples.map(of), p);
  const finishError = (x: EtaSample) => Math.abs(x.estimatedFinishMs - x.actualFinishMs) / x.actualFinishMs;
  const startError = (x: EtaSample) => Math.abs(x.estimatedStartMs - x.actualStartMs);
  return {
    finish_error_p50: round3(at(50, finishError)),
    finish_error_p95: round3(at(95, finishError)),
    finish_bias_p50_s: seconds(at(50, (x) => x.estimatedFinishMs - x.actualFinishMs)),
    start_error_p50_s: seconds(at(50, startError)),
    start_error_p95_s: seconds(at(95, startError)),
    start_bias_p50_s: seconds(at(50, (x) => x.estimatedStartMs - x.actualStartMs)),
    actual_start_p50_s: seconds(at(50, (x) => x.actualStartMs)),
    actual_finish_p50_s: seconds(at(50, (x) => x.actualFinishMs)),
    tasks: samples.length,
  };
}

function etaFigures(
  jobs: readonly Job[],
  rows: ReadonlyMap<string, TaskSummary>,
  cancelledAt: number,
  o: MultimodelInput,
): EtaResult {
  return {
    ...etaResult(etaSamples(jobs, rows, cancelledAt)),
    without_estimate: jobs.filter((job) => job.answeredAt !== undefined && !job.estimate).length,
    duration_s: o.durationS,
    offered_per_s: o.ratePerS,
  };
}
