import { setTimeout as sleep } from 'node:timers/promises';
import { CliError, type SdflowClient, type TaskSummary } from '../client/api.js';
import type { FairnessResult } from './report.js';
import { listedTasks, TINY_JOB, txt2imgBody } from './requests.js';
import { ms, percentile, tally } from './stats.js';

// Fair share between users: a first user floods the queue, then a second user submits a few tasks, and their wait
// (submit → slot grant, when the task is marked running) is measured twice on the same stack: with the second
// user's own key (fair share: their tasks take turns with the flood's) and, as the baseline, with the same tasks sent
// under the first user's key (plain FIFO behind the flood). Each side drains before the next. Start times are the
// rows' `startedAt` and submit times the benchmark's wall clock: the same machine's clock.

export interface FairnessClients {
  /** Lists every user's tasks. */
  admin: SdflowClient;
  first: SdflowClient;
  second: SdflowClient;
}

export interface FairnessInput {
  clients: FairnessClients;
  model: string;
  flood: number;
  secondUserTasks: number;
  cap: number;
}

/** Submits in flight at once while the first user floods. */
const SUBMITTERS = 8;
const DRAIN_POLL_MS = 250;
/** How long a side may take to drain: generous for the tiny jobs, but a stuck side ends the scenario. */
const drainTimeoutMs = (tasks: number) => 60_000 + tasks * 1000;

interface Submitted {
  taskId: string;
  /** Epoch ms, just before the request was sent. */
  submittedAt: number;
}

interface Side {
  /** The second user's waits, submit → start, of the tasks that started. */
  waits: number[];
  firstStarts: number[];
  secondStarts: number[];
  firstWaitingAtSecondSubmit: number;
  failures: string[];
}

/** Submits `count` tasks async, `parallel` at a time; the failures are returned, not thrown. */
async function submitMany(client: SdflowClient, model: string, ids: string[], parallel: number) {
  const submitted: Submitted[] = [];
  const failures: string[] = [];
  let next = 0;
  const submitter = async () => {
    while (next < ids.length) {
      const taskId = ids[next++];
      const submittedAt = Date.now();
      try {
        const body = txt2imgBody(model, TINY_JOB, submitted.length + 1, 'sdflow bench fairness');
        await client.submit('txt2img', body, { async: true, taskId });
        submitted.push({ taskId, submittedAt });
      } catch (err) {
        if (!(err instanceof CliError)) throw err;
        failures.push(`submit: ${err.message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, ids.length) }, submitter));
  return { submitted, failures };
}

/** Waits until no task of the stack waits or runs. */
async function drained(admin: SdflowClient, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while ((await admin.tasks({ status: 'waiting,running', limit: 1 })).tasks.length > 0) {
    if (Date.now() > until) throw new Error(`tasks still waiting or running after ${timeoutMs / 1000} s`);
    await sleep(DRAIN_POLL_MS);
  }
}

const startOf = (task: TaskSummary | undefined) => (task?.startedAt ? Date.parse(task.startedAt) : undefined);

async function runSide(o: FairnessInput, name: string, second: SdflowClient): Promise<Side> {
  const run = `${name}-${Date.now().toString(36)}`;
  const ids = (who: string, count: number) => Array.from({ length: count }, (_, k) => `bench-fair-${run}-${who}${k}`);
  const flood = await submitMany(o.clients.first, o.model, ids('a', o.flood), SUBMITTERS);
  const mine = await submitMany(second, o.model, ids('b', o.secondUserTasks), o.secondUserTasks);
  await drained(o.clients.admin, drainTimeoutMs(o.flood + o.secondUserTasks));
  const rows = await listedTasks(o.clients.admin);
  const failures = [...flood.failures, ...mine.failures];
  for (const { taskId } of [...flood.submitted, ...mine.submitted]) {
    const status = rows.get(taskId)?.status ?? 'missing';
    if (status !== 'succeeded') failures.push(`task ${status}`);
  }
  const waits = mine.submitted.flatMap(({ taskId, submittedAt }) => {
    const start = startOf(rows.get(taskId));
    return start === undefined ? [] : [start - submittedAt];
  });
  const firstSubmit = Math.min(...mine.submitted.map((t) => t.submittedAt));
  const firstStarts = flood.submitted.map(({ taskId }) => startOf(rows.get(taskId)) ?? Number.POSITIVE_INFINITY);
  return {
    waits,
    firstStarts: firstStarts.filter(Number.isFinite),
    secondStarts: mine.submitted.flatMap(({ taskId }) => startOf(rows.get(taskId)) ?? []),
    firstWaitingAtSecondSubmit: firstStarts.filter((start) => start > firstSubmit).length,
    failures,
  };
}

/** The most of `others` that fall between two consecutive times of `mine` (both in ms). */
export function mostBetween(mine: readonly number[], others: readonly number[]): number {
  const sorted = [...mine].sort((a, b) => a - b);
  let most = 0;
  for (let i = 1; i < sorted.length; i++) {
    most = Math.max(most, others.filter((t) => t > sorted[i - 1] && t < sorted[i]).length);
  }
  return most;
}

export async function runFairness(o: FairnessInput): Promise<FairnessResult> {
  const fair = await runSide(o, 'fair', o.clients.second);
  const fifo = await runSide(o, 'fifo', o.clients.first);
  if (fair.waits.length === 0 || fifo.waits.length === 0) {
    throw new Error(`no task of the second user started: ${tally([...fair.failures, ...fifo.failures]).join('; ')}`);
  }
  const failures = [...fair.failures, ...fifo.failures];
  return {
    second_user_wait_p50_ms: ms(percentile(fair.waits, 50)),
    second_user_wait_p95_ms: ms(percentile(fair.waits, 95)),
    fifo_wait_p50_ms: ms(percentile(fifo.waits, 50)),
    fifo_wait_p95_ms: ms(percentile(fifo.waits, 95)),
    first_user_starts_between_max: mostBetween(fair.secondStarts, fair.firstStarts),
    first_user_tasks: o.flood,
    second_user_tasks: o.secondUserTasks,
    first_user_waiting_at_second_submit: fair.firstWaitingAtSecondSubmit,
    cap: o.cap,
    errors: failures.length,
    error_messages: tally(failures),
  };
}
