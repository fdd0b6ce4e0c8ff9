import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from '@temporalio/client';
import type { SdflowClient } from '../client/api.js';
import { historyEventsPerTask, RssSampler } from './footprint.js';
import type { FootprintResult, Skipped, ThroughputResult } from './report.js';
import { TINY_JOB, taskEnd, timedAsync, txt2imgBody } from './requests.js';
import { round3, tally } from './stats.js';

// Sustained load on a simulator that takes no time: `concurrency` loops each submit a task async and follow it to its
// end (a long poll on its workflow), then submit the next, for the duration. What is left is the platform's own cost
// per task. The API's and the worker's memory is sampled meanwhile (the footprint scenario). The instances must be
// warm already.

export interface ThroughputInput {
  api: SdflowClient;
  temporal: Client;
  model: string;
  durationS: number;
  concurrency: number;
  pids: { api: number; worker: number };
}

/** Tasks whose history the footprint reads. */
const HISTORIES = 5;

export async function runThroughput(
  o: ThroughputInput,
): Promise<{ throughput: ThroughputResult; footprint: FootprintResult | Skipped }> {
  const prompt = 'sdflow bench throughput';

  const sampler = new RssSampler(o.pids);
  let completed = 0;
  const failures: string[] = [];
  let seed = 0;
  const succeeded: string[] = [];
  sampler.start();
  const end = performance.now() + o.durationS * 1000;
  const loop = async () => {
    while (performance.now() < end) {
      const submit = await timedAsync(o.api, txt2imgBody(o.model, TINY_JOB, ++seed, prompt));
      if (!submit.ok || !submit.taskId) {
        failures.push(`submit: ${submit.error}`);
        // An API that refuses at once must not turn the loop into a busy wait.
        await sleep(50);
        continue;
      }
      const status = await taskEnd(o.temporal, submit.taskId);
      if (status !== 'succeeded') failures.push(`task ${status}`);
      else if (performance.now() <= end) {
        completed++;
        succeeded.push(submit.taskId);
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, loop));
  const peaks = sampler.stop();
  const histories = succeeded.slice(-HISTORIES);
  const throughput: ThroughputResult = {
    tasks_per_s: round3(completed / o.durationS),
    errors: failures.length,
    error_messages: tally(failures),
    duration_s: o.durationS,
    completed,
    concurrency: o.concurrency,
  };
  if (peaks.api === undefined || peaks.worker === undefined) {
    return { throughput, footprint: { skipped: 'the RSS of the API and the worker is read from /proc (Linux)' } };
  }
  if (histories.length === 0) {
    // The throughput figure stands (zero tasks in time says enough); the footprint has no history to read.
    return { throughput, footprint: { skipped: 'no task succeeded within the throughput run' } };
  }
  return {
    throughput,
    footprint: {
      api_rss_mb: peaks.api,
      worker_rss_mb: peaks.worker,
      history_events_per_task: await historyEventsPerTask(o.temporal, histories),
      histories: histories.length,
      samples: sampler.samples,
    },
  };
}
