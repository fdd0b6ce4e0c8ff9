import { setTimeout as sleep } from 'node:timers/promises';
import type { SdflowClient } from '../client/api.js';
import type { SubmitResult } from './report.js';
import { TINY_JOB, txt2imgBody } from './requests.js';
import { ms, percentile, tally } from './stats.js';

// Async submit latency at a fixed offered rate, open loop: request k is sent at t0 + k / rate whatever the answers
// to the earlier ones, and its latency runs from that scheduled moment, so a client that falls behind (or an API
// that holds it up) is counted rather than hidden.

export interface SubmitInput {
  api: SdflowClient;
  model: string;
  ratePerS: number;
  durationS: number;
}

export async function runSubmit(o: SubmitInput): Promise<SubmitResult> {
  const count = Math.max(1, Math.round(o.ratePerS * o.durationS));
  const latencies: number[] = [];
  const failures: string[] = [];
  const sent: Promise<void>[] = [];
  const t0 = performance.now() + 50;
  for (let k = 0; k < count; k++) {
    const at = t0 + (k * 1000) / o.ratePerS;
    const wait = at - performance.now();
    if (wait > 0) await sleep(wait);
    sent.push(
      o.api.submit('txt2img', txt2imgBody(o.model, TINY_JOB, k + 1, 'sdflow bench submit'), { async: true }).then(
        () => {
          latencies.push(performance.now() - at);
        },
        (err: Error) => {
          failures.push(err.message);
        },
      ),
    );
  }
  await Promise.all(sent);
  if (latencies.length === 0) throw new Error(`no submit was accepted: ${tally(failures).join('; ')}`);
  return {
    offered_per_s: o.ratePerS,
    p50_ms: ms(percentile(latencies, 50)),
    p99_ms: ms(percentile(latencies, 99)),
    duration_s: o.durationS,
    sent: count,
    accepted: latencies.length,
    errors: failures.length,
    error_messages: tally(failures),
  };
}
