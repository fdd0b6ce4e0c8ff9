import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from '@temporalio/client';
import { DEFAULT_BILLING_RATES } from '../../config/billing.js';
import type { InstanceUsage, RuntimeFunction } from '../../platform/functions/port.js';
import { seededRandom } from '../../sim/random.js';
import { readCheckpointLoads } from '../../sim/stats.js';
import type { SdflowClient } from '../client/api.js';
import { runtimeCall, scaleToZero } from './coldstart.js';
import { type Job, type MultimodelSide, settledWithin, submitAndFollow } from './multimodel.js';
import type { CostResult } from './report.js';
import { FULL_A10_JOB, type JobShape, listedTasks, txt2imgBody, warmUp } from './requests.js';
import { A10_TIMINGS } from './stacks.js';
import { ms, percentile, round3, tally } from './stats.js';

// What a bursty workload over four checkpoints costs in billed GPU-seconds per image, against the pure sampling
// time of those images. The same arrivals (bursts of jobs for one or several checkpoints, separated by quiet gaps,
// from a fixed seed) go at once to three sides of four instances each:
//   sdflow:    one function per checkpoint that scales to zero under a keep-alive (and pre-warms on a queue);
//   always-on: the same functions with one instance each kept warm all the time (minInstances=1);
//   switching: four always-on WebUIs shared by every checkpoint, each loading the one a job asks for.
// Each side is billed over the same window, from the first arrival to the last task's end (of any side), as the
// default rate row bills it: starting and active time in full, idle time at the row's idle/active ratio. sdflow and
// always-on are billed from their local runtime's per-instance accounting, switching from its simulators' own.

/** An instance's (or a side's) seconds by state. */
export interface Account {
  coldStartS: number;
  activeS: number;
  idleS: number;
}

/** The default rate row's idle price over its active price: what an idle second bills in active seconds. */
export const IDLE_TO_ACTIVE = DEFAULT_BILLING_RATES.default.idlePerS / DEFAULT_BILLING_RATES.default.activePerS;

/** Billed GPU-seconds, in active seconds: a starting instance bills as active, an idle one at `idleToActive`. */
export function billedS(account: Account, idleToActive: number): number {
  return account.coldStartS + account.activeS + account.idleS * idleToActive;
}

/** The time accounted between two readings of the same counters. */
export function accountBetween(before: Account, after: Account): Account {
  return {
    coldStartS: after.coldStartS - before.coldStartS,
    activeS: after.activeS - before.activeS,
    idleS: after.idleS - before.idleS,
  };
}

export function sumAccounts(accounts: readonly Account[]): Account {
  return accounts.reduce(
    (sum, a) => ({
      coldStartS: sum.coldStartS + a.coldStartS,
      activeS: sum.activeS + a.activeS,
      idleS: sum.idleS + a.idleS,
    }),
    { coldStartS: 0, activeS: 0, idleS: 0 },
  );
}

/** The simulator's time for one image of this job, without a checkpoint load: its steps and its VAE decode. */
export function samplingS(job: JobShape, timings: { stepMs: number; vaeMs: number }): number {
  return (job.steps * timings.stepMs * ((job.width * job.height) / (512 * 512)) + timings.vaeMs) / 1000;
}

/**
 * sdflow's per-function settings for this workload, as a user would choose them. The keep-alive is the break-even
 * of renting against buying: an idle second bills about 0.24 of an active one and a cold start on these timings
 * bills about 5.7 active seconds (the processes' start and the 5 s checkpoint load), so keeping an instance idle up
 * to 5.7 / 0.24 ≈ 24 s costs less than starting a new one, and never more than twice the best choice made knowing the
 * next arrival. The pre-warm starts a checkpoint's instance as soon as one of its tasks waits for a slot (behind
 * other checkpoints' tasks), rather than when its slot is granted; with one instance per function it starts no more
 * instances than the tasks would, only sooner.
 */
export const SDFLOW_COST_SETTINGS = { keepAliveS: 24, prewarmQueueDepth: 1 } as const;

/** How long a burst's arrivals are spread over. */
const BURST_SPREAD_MS = 2000;

export interface BurstyWorkload {
  bursts: number;
  /** Jobs per chosen checkpoint in a burst. */
  jobsPerCheckpoint: number;
  /** The mean quiet gap after a burst's work (drawn uniformly from 0 to twice this). */
  gapS: number;
  /** One job's sampling time: a burst's work is its jobs per checkpoint in a row, as one instance runs them. */
  samplingS: number;
  models: readonly string[];
  seed?: number;
}

/**
 * Arrival times in ms from the first one, and their checkpoints, the same for every run: each burst picks 1 to all
 * of the checkpoints and sends `jobsPerCheckpoint` jobs for each, spread over 2 s; the next burst comes after the
 * time one instance needs for a checkpoint's jobs, plus a quiet gap.
 */
export function burstyArrivals(o: BurstyWorkload): { at: number; model: string }[] {
  const random = seededRandom(o.seed ?? 12);
  const arrivals: { at: number; model: string }[] = [];
  let start = 0;
  for (let b = 0; b < o.bursts; b++) {
    const count = 1 + Math.floor(random() * o.models.length);
    const pool = [...o.models];
    for (let k = 0; k < count; k++) {
      const [model] = pool.splice(Math.floor(random() * pool.length), 1);
      for (let j = 0; j < o.jobsPerCheckpoint; j++) arrivals.push({ at: start + random() * BURST_SPREAD_MS, model });
    }
    start += BURST_SPREAD_MS + o.jobsPerCheckpoint * o.samplingS * 1000 + random() * 2 * o.gapS * 1000;
  }
  arrivals.sort((a, b) => a.at - b.at);
  const first = arrivals[0]?.at ?? 0;
  return arrivals.map((a) => ({ ...a, at: a.at - first }));
}

/** A local runtime's function as it lists it, with each instance's state. */
type ListedFunction = Omit<RuntimeFunction, 'instances'> & {
  instances?: (NonNullable<RuntimeFunction['instances']>[number] & { state?: string; stateSince?: string })[];
};

interface Reading {
  /** Epoch ms when it was taken. */
  at: number;
  account: Account;
}

/** The runtime's usage of these checkpoints' functions: their instances gone and live, each live one up to now. */
async function runtimeReading(
  runtimeUrl: string,
  models: readonly string[],
): Promise<Reading & { fns: ListedFunction[] }> {
  const fns = (await runtimeCall<ListedFunction[]>(`${runtimeUrl}/functions`)).filter((f) => models.includes(f.model));
  const usage = (u: InstanceUsage | undefined): Account => u ?? { coldStartS: 0, activeS: 0, idleS: 0 };
  return { at: Date.now(), account: sumAccounts(fns.map((f) => usage(f.usage))), fns };
}

/** The simulators' own accounts, summed. */
async function simsReading(simUrls: readonly string[]): Promise<Reading> {
  const accounts = await Promise.all(
    simUrls.map(async (url) => (await runtimeCall<{ accounting: Account }>(`${url}/sim/stats`)).accounting),
  );
  return { at: Date.now(), account: sumAccounts(accounts) };
}

/**
 * What the instances idle at `at` will still idle before their keep-alive reaps them: the tail that a window ending
 * at the last task's end leaves out.
 */
export function tailIdleS(fns: readonly ListedFunction[], at: number, keepAliveS: number): number {
  let tail = 0;
  for (const fn of fns) {
    for (const instance of fn.instances ?? []) {
      if (instance.state !== 'idle' || !instance.stateSince) continue;
      tail += Math.max(0, keepAliveS - (at - Date.parse(instance.stateSince)) / 1000);
    }
  }
  return tail;
}

/** A side that runs on the local runtime: its API and the runtime it can read the accounts from. */
export interface RuntimeSide {
  api: SdflowClient;
  runtimeUrl: string;
}

export interface CostInput {
  sdflow: RuntimeSide;
  alwaysOn: RuntimeSide;
  switching: MultimodelSide & { simUrls: readonly string[] };
  temporal: Client;
  models: readonly string[];
  bursts: number;
  jobsPerCheckpoint: number;
  gapS: number;
  /** sdflow's settings per function, as a user would set them. */
  keepAliveS: number;
  prewarmQueueDepth: number;
}

const INSTANCES_WARM_TIMEOUT_MS = 90_000;

/** Sets these functions' resources through the batch update route (creating the functions that do not exist yet). */
async function batchUpdate(api: SdflowClient, models: readonly string[], resources: Record<string, unknown>) {
  await api.call('POST', '/batch_update_sd_resource', { body: { models, ...resources } });
}

/**
 * The always-on side: one instance per checkpoint kept warm (minInstances=1), each started and idle before the
 * window, with one job run on each so that nothing is a first time when the window opens.
 */
export async function keepOneWarm({ api, runtimeUrl }: RuntimeSide, models: readonly string[]): Promise<void> {
  await batchUpdate(api, models, { minInstances: 1 });
  const until = Date.now() + INSTANCES_WARM_TIMEOUT_MS;
  for (;;) {
    const fns = (await runtimeCall<ListedFunction[]>(`${runtimeUrl}/functions`)).filter((f) =>
      models.includes(f.model),
    );
    const warm = fns.filter((f) => f.instances?.some((i) => i.state === 'idle' || i.state === 'busy'));
    if (warm.length === models.length) break;
    if (Date.now() > until) throw new Error(`always-on: ${warm.length} of ${models.length} instances warm`);
    await sleep(250);
  }
  await warmUp(
    api,
    models.map((model) => ({ model, job: FULL_A10_JOB })),
  );
}

interface SideJobs {
  name: 'sdflow' | 'always_on' | 'switching';
  api: SdflowClient;
  jobs: Job[];
}

function sideFigures(jobs: readonly Job[], t0: number) {
  const ok = jobs.filter((j) => j.done?.ok);
  const lastEnd = Math.max(t0, ...ok.map((j) => j.done!.at));
  const latencies = ok.map((j) => j.done!.ms);
  return {
    images: ok.length,
    failed: jobs.length - ok.length,
    imagesPerS: ok.length / ((lastEnd - t0) / 1000),
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    errors: tally(jobs.filter((j) => !j.done?.ok).map((j) => j.done?.error ?? 'unfinished')),
  };
}

const seconds = (value: number) => Math.round(value * 100) / 100;

/** One side's billed figures over the window: its account, what it bills, per image and against sampling. */
export function sideBill(account: Account, images: number, samplingPerImageS: number, idleToActive: number) {
  const billed = billedS(account, idleToActive);
  return {
    billed_s: seconds(billed),
    billed_per_image_s: round3(billed / images),
    ratio: round3(billed / images / samplingPerImageS),
    cold_start_s: seconds(account.coldStartS),
    active_s: seconds(account.activeS),
    idle_s: seconds(account.idleS),
  };
}

export async function runCost(o: CostInput): Promise<CostResult> {
  const timings = { stepMs: Number(A10_TIMINGS.SDFLOW_SIM_STEP_MS), vaeMs: Number(A10_TIMINGS.SDFLOW_SIM_VAE_MS) };
  const samplingPerImageS = samplingS(FULL_A10_JOB, timings);
  // sdflow as a user would set it up for bursts, from zero: the quiet time before the first burst is long.
  await batchUpdate(o.sdflow.api, o.models, { keepAliveS: o.keepAliveS, prewarmQueueDepth: o.prewarmQueueDepth });
  const sdflowFns = await runtimeCall<ListedFunction[]>(`${o.sdflow.runtimeUrl}/functions`);
  await Promise.all(
    sdflowFns.filter((f) => o.models.includes(f.model)).map((f) => scaleToZero(o.sdflow.runtimeUrl, f.functionName)),
  );
  // The switching WebUIs start with a checkpoint each, as in multimodel: the baseline at its best.
  await warmUp(
    o.switching.api,
    o.models.map((model) => ({ model, job: FULL_A10_JOB })),
  );

  const arrivals = burstyArrivals({
    bursts: o.bursts,
    jobsPerCheckpoint: o.jobsPerCheckpoint,
    gapS: o.gapS,
    samplingS: samplingPerImageS,
    models: o.models,
  });
  const sides: SideJobs[] = [
    { name: 'sdflow', api: o.sdflow.api, jobs: [] },
    { name: 'always_on', api: o.alwaysOn.api, jobs: [] },
    { name: 'switching', api: o.switching.api, jobs: [] },
  ];
  const readAll = () =>
    Promise.all([
      runtimeReading(o.sdflow.runtimeUrl, o.models),
      runtimeReading(o.alwaysOn.runtimeUrl, o.models),
      simsReading(o.switching.simUrls),
    ]);
  const before = await readAll();
  const windowStart = Date.now();
  const t0 = performance.now();
  const run = Date.now().toString(36);
  const answers: Promise<void>[] = [];
  for (const [k, arrival] of arrivals.entries()) {
    const wait = t0 + arrival.at - performance.now();
    if (wait > 0) await sleep(wait);
    for (const side of sides) {
      const job: Job = { taskId: `bench-cost-${side.name}-${run}-${k}`, submittedAt: Date.now() };
      side.jobs.push(job);
      const body = txt2imgBody(arrival.model, FULL_A10_JOB, k + 1, `sdflow bench cost #${k + 1}`);
      answers.push(submitAndFollow(side, o.temporal, body, job));
    }
  }
  // Every job should end: a generous bound, as if a side ran every job in a row, at 1.5 times its sampling.
  const timeoutMs = 60_000 + arrivals.length * samplingPerImageS * 1500;
  await settledWithin(Promise.all(answers), timeoutMs);
  const after = await readAll();
  const windowS = (after[0].at - windowStart) / 1000;
  await Promise.all(
    sides.flatMap((side) => side.jobs.filter((j) => !j.done).map((j) => side.api.cancel(j.taskId).catch(() => {}))),
  );

  const [sdflow, alwaysOn, switching] = sides.map((side) => sideFigures(side.jobs, t0));
  if (sdflow.images === 0 || alwaysOn.images === 0 || switching.images === 0) {
    throw new Error(`a side made no image: ${[sdflow, alwaysOn, switching].flatMap((f) => f.errors).join('; ')}`);
  }
  const r = IDLE_TO_ACTIVE;
  const bills = {
    sdflow: sideBill(accountBetween(before[0].account, after[0].account), sdflow.images, samplingPerImageS, r),
    always_on: sideBill(accountBetween(before[1].account, after[1].account), alwaysOn.images, samplingPerImageS, r),
    switching: sideBill(accountBetween(before[2].account, after[2].account), switching.images, samplingPerImageS, r),
  };
  // What the tasks themselves carry, against the runtime's account of the same window.
  const rows = await listedTasks(o.sdflow.api);
  const costs = sides[0].jobs.flatMap((j) => rows.get(j.taskId)?.cost ?? []);
  const sumOf = (of: (c: (typeof costs)[number]) => number) => costs.reduce((sum, c) => sum + of(c), 0);
  const sdflowTail = tailIdleS(after[0].fns, after[0].at, o.keepAliveS);

  return {
    sampling_per_image_s: round3(samplingPerImageS),
    sdflow_billed_per_image_s: bills.sdflow.billed_per_image_s,
    always_on_billed_per_image_s: bills.always_on.billed_per_image_s,
    switching_billed_per_image_s: bills.switching.billed_per_image_s,
    sdflow_ratio: bills.sdflow.ratio,
    always_on_ratio: bills.always_on.ratio,
    switching_ratio: bills.switching.ratio,
    window_s: seconds(windowS),
    idle_to_active: round3(r),
    sdflow_billed_s: bills.sdflow.billed_s,
    always_on_billed_s: bills.always_on.billed_s,
    switching_billed_s: bills.switching.billed_s,
    sdflow_cold_start_s: bills.sdflow.cold_start_s,
    sdflow_active_s: bills.sdflow.active_s,
    sdflow_idle_s: bills.sdflow.idle_s,
    always_on_cold_start_s: bills.always_on.cold_start_s,
    always_on_active_s: bills.always_on.active_s,
    always_on_idle_s: bills.always_on.idle_s,
    switching_cold_start_s: bills.switching.cold_start_s,
    switching_active_s: bills.switching.active_s,
    switching_idle_s: bills.switching.idle_s,
    sdflow_idle_billed_s: seconds(bills.sdflow.idle_s * r),
    sdflow_active_over_sampling_s: seconds(bills.sdflow.active_s - sdflow.images * samplingPerImageS),
    sdflow_tasks_billed_s: seconds(sumOf((c) => c.billedGpuS)),
    sdflow_tasks: costs.length,
    sdflow_cold_starts: costs.filter((c) => c.coldStartS > 0).length,
    sdflow_tail_idle_s: seconds(sdflowTail),
    sdflow_keep_alive_s: o.keepAliveS,
    sdflow_prewarm_queue_depth: o.prewarmQueueDepth,
    switching_loads: readCheckpointLoads(o.switching.statsDir).filter((t) => t > windowStart).length,
    sdflow_images_per_s: round3(sdflow.imagesPerS),
    always_on_images_per_s: round3(alwaysOn.imagesPerS),
    switching_images_per_s: round3(switching.imagesPerS),
    sdflow_p50_ms: ms(sdflow.p50),
    sdflow_p95_ms: ms(sdflow.p95),
    always_on_p50_ms: ms(alwaysOn.p50),
    always_on_p95_ms: ms(alwaysOn.p95),
    switching_p50_ms: ms(switching.p50),
    switching_p95_ms: ms(switching.p95),
    jobs: arrivals.length,
    bursts: o.bursts,
    jobs_per_checkpoint: o.jobsPerCheckpoint,
    gap_s: o.gapS,
    sdflow_images: sdflow.images,
    always_on_images: alwaysOn.images,
    switching_images: switching.images,
    sdflow_failed: sdflow.failed,
    always_on_failed: alwaysOn.failed,
    switching_failed: switching.failed,
    error_messages: [
      ...sdflow.errors.map((e) => `sdflow: ${e}`),
      ...alwaysOn.errors.map((e) => `always-on: ${e}`),
      ...switching.errors.map((e) => `switching: ${e}`),
    ],
  };
}
