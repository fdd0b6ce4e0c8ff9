import type { SdflowClient } from '../client/api.js';
import type { OverheadResult } from './report.js';
import { a1111Body, SHORT_A10_JOB, timedDirect, timedSync, txt2imgBody } from './requests.js';
import { ms, percentile, round3, tally } from './stats.js';

// What sdflow adds to a request: sequential sync txt2img, alternating (A) sdflow end to end and (B) the same job sent
// straight to a simulator with the same timings, so both see the same machine at almost the same moment.

export interface OverheadInput {
  api: SdflowClient;
  /** The simulator that serves the direct requests. */
  directUrl: string;
  model: string;
  pairs: number;
}

export async function runOverhead({ api, directUrl, model, pairs }: OverheadInput): Promise<OverheadResult> {
  const prompt = 'sdflow bench overhead';
  // One request each way first, so that neither an instance start nor a checkpoint load is measured.
  const [warmSdflow, warmDirect] = await Promise.all([
    timedSync(api, txt2imgBody(model, SHORT_A10_JOB, 0, prompt)),
    timedDirect(directUrl, a1111Body(model, SHORT_A10_JOB, 0, prompt)),
  ]);
  if (!warmSdflow.ok) throw new Error(`the warm-up request through sdflow failed: ${warmSdflow.error}`);
  if (!warmDirect.ok) throw new Error(`the warm-up request to the simulator failed: ${warmDirect.error}`);

  const sdflow: number[] = [];
  const direct: number[] = [];
  const failures: string[] = [];
  for (let seed = 1; seed <= pairs; seed++) {
    const a = await timedSync(api, txt2imgBody(model, SHORT_A10_JOB, seed, prompt));
    if (a.ok) sdflow.push(a.ms);
    else failures.push(`sdflow: ${a.error}`);
    const b = await timedDirect(directUrl, a1111Body(model, SHORT_A10_JOB, seed, prompt));
    if (b.ok) direct.push(b.ms);
    else failures.push(`direct: ${b.error}`);
  }
  if (sdflow.length === 0 || direct.length === 0)
    throw new Error(`no request succeeded on one side: ${tally(failures).join('; ')}`);
  const [s50, s99, d50, d99] = [
    percentile(sdflow, 50),
    percentile(sdflow, 99),
    percentile(direct, 50),
    percentile(direct, 99),
  ];
  return {
    sdflow_p50_ms: ms(s50),
    sdflow_p99_ms: ms(s99),
    direct_p50_ms: ms(d50),
    direct_p99_ms: ms(d99),
    added_p50_ms: ms(s50 - d50),
    added_p99_ms: ms(s99 - d99),
    ratio_p50: round3(s50 / d50),
    pairs,
    errors: failures.length,
    error_messages: tally(failures),
  };
}
