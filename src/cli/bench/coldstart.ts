import { setTimeout as sleep } from 'node:timers/promises';
import type { RuntimeFunction } from '../../platform/functions/port.js';
import type { SdflowClient } from '../client/api.js';
import type { ColdstartResult } from './report.js';
import { SHORT_A10_JOB, timedSync, txt2imgBody } from './requests.js';
import { ms, percentile } from './stats.js';

// What a cold start adds: the first request to a function scaled to zero against the same request right after it,
// on the instance it started. The function's instances are stopped through the local runtime (its restart, which
// the API's POST /restart does for every function), so the other functions keep theirs.

export interface ColdstartInput {
  api: SdflowClient;
  /** The stack's local runtime. */
  runtimeUrl: string;
  model: string;
  runs: number;
}

const SCALED_TO_ZERO_TIMEOUT_MS = 60_000;

export async function runtimeCall<T>(url: string, method = 'GET'): Promise<T> {
  const res = await fetch(url, { method });
  if (!res.ok) throw new Error(`${method} ${url} answered HTTP ${res.status}: ${await res.text()}`);
  return (await res.json()) as T;
}

/** Stops the function's instances and waits until none is left. */
export async function scaleToZero(runtimeUrl: string, functionName: string): Promise<void> {
  const fn = `${runtimeUrl}/functions/${encodeURIComponent(functionName)}`;
  await runtimeCall(`${fn}/restart`, 'POST');
  const until = Date.now() + SCALED_TO_ZERO_TIMEOUT_MS;
  while ((await runtimeCall<RuntimeFunction>(fn)).instances?.length) {
    if (Date.now() > until)
      throw new Error(`${functionName} still has instances ${SCALED_TO_ZERO_TIMEOUT_MS} ms after its restart`);
    await sleep(100);
  }
}

export async function runColdstart({ api, runtimeUrl, model, runs }: ColdstartInput): Promise<ColdstartResult> {
  const prompt = 'sdflow bench coldstart';
  // The function exists once a request has used the checkpoint.
  const warm0 = await timedSync(api, txt2imgBody(model, SHORT_A10_JOB, 0, prompt));
  if (!warm0.ok) throw new Error(`the first request failed: ${warm0.error}`);
  const functions = await runtimeCall<RuntimeFunction[]>(`${runtimeUrl}/functions`);
  const functionName = functions.find((f) => f.model === model)?.functionName;
  if (!functionName) throw new Error(`the runtime has no function for ${model}`);
  const cold: number[] = [];
  const warm: number[] = [];
  const added: number[] = [];
  for (let run = 1; run <= runs; run++) {
    await scaleToZero(runtimeUrl, functionName);
    const first = await timedSync(api, txt2imgBody(model, SHORT_A10_JOB, 2 * run, prompt));
    const second = await timedSync(api, txt2imgBody(model, SHORT_A10_JOB, 2 * run + 1, prompt));
    if (!first.ok || !second.ok) throw new Error(`run ${run} failed: ${first.error ?? second.error}`);
    cold.push(first.ms);
    warm.push(second.ms);
    added.push(first.ms - second.ms);
  }
  return {
    added_p50_ms: ms(percentile(added, 50)),
    added_p95_ms: ms(percentile(added, 95)),
    runs,
    cold_p50_ms: ms(percentile(cold, 50)),
    warm_p50_ms: ms(percentile(warm, 50)),
  };
}
