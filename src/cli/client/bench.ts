import { setTimeout as sleep } from 'node:timers/promises';
import { type Command, Option } from 'commander';
import type { Txt2ImgRequest } from '../../api/schemas.js';
import { isFinal, type TaskStatus } from '../../types.js';
import { CliError, type SdflowClient } from './api.js';
import { action, clientCommand, clientFor, type GlobalOptions, parsePositiveInteger } from './options.js';
import { printJson, printLines, progressBar, table } from './output.js';
import { type LatencyStats, latencyStats } from './stats.js';

// sdflow bench: N txt2img requests with C in flight, timed on the monotonic clock (performance.now()).
//   sync:  one POST per request; latency is request → answer.
//   async: POST with Request-Type: async, then polls GET /tasks/{id}/result; reports the submit latency and
//          submit → final (its resolution is the poll interval).
// A sync answer of 202 (the API's sync wait cap) is followed by polling too, so every latency ends at a final status.

type Mode = 'sync' | 'async';

interface BenchOptions extends GlobalOptions {
  model?: string;
  requests: number;
  concurrency: number;
  steps: number;
  width: number;
  height: number;
  mode: Mode;
  pollMs: number;
}

interface Sample {
  ok: boolean;
  /** sync: request → answer; async: submit → final. */
  totalMs: number;
  /** async only: request → accepted. */
  submitMs?: number;
  error?: string;
}

export interface BenchReport {
  url: string;
  mode: Mode;
  model: string;
  count: number;
  concurrency: number;
  steps: number;
  width: number;
  height: number;
  succeeded: number;
  failed: number;
  wallMs: number;
  /** Succeeded requests per second of wall time. */
  throughput: number;
  latencyMs: LatencyStats | null;
  submitLatencyMs?: LatencyStats | null;
  first: { ok: boolean; latencyMs: number; submitMs?: number; error?: string };
  errors: { message: string; count: number }[];
  pollMs?: number;
}

/** The oldest loaded checkpoint, when no --model is given. */
async function defaultModel(client: SdflowClient): Promise<string> {
  const loaded = await client.models({ type: 'stableDiffusion', status: 'loaded' });
  const first = loaded.sort((a, b) => a.registeredTime.localeCompare(b.registeredTime))[0];
  if (!first) throw new CliError('no loaded checkpoint to benchmark: register one or pass --model');
  return first.name;
}

async function pollFinal(client: SdflowClient, taskId: string, pollMs: number) {
  for (;;) {
    const r = await client.result(taskId);
    if (isFinal(r.status)) return r;
    await sleep(pollMs);
  }
}

function outcome(status: TaskStatus, message: string | undefined): string | undefined {
  return status === 'succeeded' ? undefined : `${status}${message ? `: ${message}` : ''}`;
}

async function oneRequest(client: SdflowClient, o: BenchOptions, model: string, index: number): Promise<Sample> {
  const body: Txt2ImgRequest = {
    stable_diffusion_model: model,
    prompt: `sdflow bench #${index + 1}`,
    steps: o.steps,
    width: o.width,
    height: o.height,
    seed: index + 1,
  };
  const t0 = performance.now();
  try {
    const { body: answer } = await client.submit('txt2img', body, { async: o.mode === 'async' });
    const submitMs = performance.now() - t0;
    const final = isFinal(answer.status) ? answer : await pollFinal(client, answer.taskId, o.pollMs);
    return {
      ok: final.status === 'succeeded',
      totalMs: performance.now() - t0,
      ...(o.mode === 'async' ? { submitMs } : {}),
      error: outcome(final.status, final.message),
    };
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    return { ok: false, totalMs: performance.now() - t0, error: err.message };
  }
}

export async function runBench(client: SdflowClient, o: BenchOptions, showProgress: boolean): Promise<BenchReport> {
  const model = o.model ?? (await defaultModel(client));
  const count = o.requests;
  const concurrency = Math.min(o.concurrency, count);
  const samples: Sample[] = new Array(count);
  const bar = showProgress ? progressBar('bench {bar} {value}/{total} | {failed} failed') : undefined;
  let failed = 0;
  bar?.start(count, 0, { failed });
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const index = next++;
      samples[index] = await oneRequest(client, o, model, index);
      if (!samples[index].ok) failed++;
      bar?.increment(1, { failed });
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const wallMs = performance.now() - started;
  bar?.stop();

  const ok = samples.filter((s) => s.ok);
  const errors = new Map<string, number>();
  for (const s of samples) if (s.error) errors.set(s.error, (errors.get(s.error) ?? 0) + 1);
  const round = (ms: number) => Math.round(ms * 10) / 10;
  const first = samples[0];
  return {
    url: client.baseUrl,
    mode: o.mode,
    model,
    count,
    concurrency,
    steps: o.steps,
    width: o.width,
    height: o.height,
    succeeded: ok.length,
    failed: count - ok.length,
    wallMs: round(wallMs),
    throughput: Math.round((ok.length / (wallMs / 1000)) * 1000) / 1000,
    latencyMs: latencyStats(ok.map((s) => s.totalMs)),
    ...(o.mode === 'async' ? { submitLatencyMs: latencyStats(ok.map((s) => s.submitMs ?? 0)), pollMs: o.pollMs } : {}),
    first: {
      ok: first.ok,
      latencyMs: round(first.totalMs),
      ...(first.submitMs !== undefined ? { submitMs: round(first.submitMs) } : {}),
      ...(first.error ? { error: first.error } : {}),
    },
    errors: [...errors].map(([message, n]) => ({ message, count: n })),
  };
}

const ms = (v: number) => v.toFixed(1);

export function formatBench(r: BenchReport): string {
  const statsRow = (label: string, s: LatencyStats | null | undefined) =>
    s ? [label, ...[s.min, s.p50, s.p90, s.p99, s.max, s.mean].map((v) => ms(v).padStart(8))] : [label, '—'];
  const rows =
    r.mode === 'sync'
      ? [statsRow('request → answer', r.latencyMs)]
      : [statsRow('submit', r.submitLatencyMs), statsRow('submit → final', r.latencyMs)];
  const header = ['latency (ms)', ...['min', 'p50', 'p90', 'p99', 'max', 'mean'].map((h) => h.padStart(8))];
  const firstLine = `${ms(r.first.latencyMs)} ms${r.first.submitMs !== undefined ? ` (submit ${ms(r.first.submitMs)} ms)` : ''}${r.first.ok ? '' : ` failed: ${r.first.error}`}; may include a cold start`;
  return [
    `sdflow bench · txt2img ${r.mode} · ${r.count} requests, concurrency ${r.concurrency} · ${r.steps} steps ${r.width}×${r.height} · ${r.model}`,
    `requests  ${r.succeeded} succeeded, ${r.failed} failed in ${(r.wallMs / 1000).toFixed(2)} s → ${r.throughput.toFixed(2)} req/s`,
    `first     ${firstLine}`,
    ...(r.mode === 'async' ? [`polling   every ${r.pollMs} ms (the resolution of submit → final)`] : []),
    '',
    table(header, rows),
    ...(r.errors.length > 0 ? ['', 'failures:', ...r.errors.map((e) => `  ${e.count} × ${e.message}`)] : []),
  ].join('\n');
}

export function registerBenchCommand(program: Command): Command {
  return clientCommand(
    program
      .command('bench')
      .description('benchmark txt2img: N requests with C in flight; latency percentiles and throughput'),
  )
    .option('--model <name>', 'checkpoint to render with (default: the oldest loaded one)')
    .option('--requests <n>', 'number of requests', parsePositiveInteger, 20)
    .option('--concurrency <n>', 'requests in flight at once', parsePositiveInteger, 1)
    .option('--steps <n>', 'sampling steps per request', parsePositiveInteger, 4)
    .option('--width <px>', 'image width', parsePositiveInteger, 512)
    .option('--height <px>', 'image height', parsePositiveInteger, 512)
    .addOption(
      new Option('--mode <mode>', 'sync: wait in the request; async: submit, then poll')
        .choices(['sync', 'async'])
        .default('sync'),
    )
    .option('--poll-ms <ms>', 'async mode: result polling interval', parsePositiveInteger, 100)
    .action(
      action(async (o: BenchOptions) => {
        const report = await runBench(clientFor(o), o, process.stderr.isTTY && !o.json);
        if (o.json) printJson(report);
        else printLines(formatBench(report));
        return report.failed === 0 ? 0 : 1;
      }),
    );
}
