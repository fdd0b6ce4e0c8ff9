import type { Client } from '@temporalio/client';
import { loadConfig } from '../../config/index.js';
import { connectTemporal } from '../../temporal.js';
import { CliError, SdflowClient } from '../client/api.js';
import { runOverhead } from './overhead.js';
import { SCENARIOS, URL_SCENARIOS } from './report.js';
import { TINY_JOB, warmUp } from './requests.js';
import type { BenchOptions } from './run.js';
import type { Scenarios } from './scenarios.js';
import { runSlots } from './slots.js';
import { runSubmit } from './submit.js';

// --url: the scenarios that need no control of the stack, against an API someone else runs. The slots scenario also
// reads the stack's semaphore and its simulators' records, found from the environment as the stack's own processes
// find them (TEMPORAL_ADDRESS, SDFLOW_DEPLOYMENT, SDFLOW_SIM_STATS_DIR, …).

/** The oldest loaded checkpoint, when no --model is given. */
async function defaultModel(api: SdflowClient): Promise<string> {
  const loaded = await api.models({ type: 'stableDiffusion', status: 'loaded' });
  const first = loaded.sort((a, b) => a.registeredTime.localeCompare(b.registeredTime))[0];
  if (!first) throw new CliError('no loaded checkpoint to benchmark: register one or pass --model');
  return first.name;
}

export async function againstUrl(url: string, o: BenchOptions, s: Scenarios): Promise<void> {
  const api = new SdflowClient(url, o.key);
  const model = o.model ?? (await defaultModel(api));
  for (const name of SCENARIOS) {
    if (!URL_SCENARIOS.includes(name)) s.skip(name, 'needs a stack the benchmark starts itself (run it without --url)');
  }
  const directUrl = o.direct;
  if (directUrl) {
    await s.run('overhead', () => runOverhead({ api, directUrl, model, pairs: o.settings.overhead_pairs }));
  } else {
    s.skip('overhead', "needs --direct <url of a simulator with the stack's timings>");
  }
  await s.run('submit', () =>
    runSubmit({ api, model, ratePerS: o.settings.submit_rate_per_s, durationS: o.settings.submit_s }),
  );
  if (!s.selected('slots')) return;
  const config = loadConfig();
  const statsDir = config.sim.statsDir;
  if (!statsDir) {
    s.skip('slots', "needs SDFLOW_SIM_STATS_DIR: the stats dir the stack's simulators write");
    return;
  }
  let temporal: Client;
  try {
    temporal = await connectTemporal(config.temporal);
  } catch (err) {
    s.failed(['slots'], new Error(`cannot reach Temporal at ${config.temporal.address}: ${(err as Error).message}`));
    return;
  }
  try {
    await s.run('slots', async () => {
      const cap = config.tasks.maxConcurrency;
      await warmUp(
        api,
        Array.from({ length: cap }, () => ({ model, job: TINY_JOB })),
      );
      return runSlots({
        api,
        temporal,
        semaphoreId: config.semaphore.id,
        statsDir,
        model,
        bursts: o.settings.slots_bursts,
        burstTasks: o.settings.slots_burst_tasks,
      });
    });
  } finally {
    await temporal.connection.close();
  }
}
