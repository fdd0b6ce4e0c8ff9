import { table } from '../client/output.js';
import { type BenchReport, isSkipped, SCENARIOS, type ScenarioName, type ScenarioResults } from './report.js';

// The human report: one row per figure, with its baseline, its target and whether the target was met. Targets are
// printed, never asserted: the run's figures depend on the machine and on what else it runs.

interface Row {
  measure: string;
  sdflow: string;
  baseline?: string;
  target?: string;
  /** Undefined when the figure has no target. */
  met?: boolean;
}

const msText = (v: number) => (Math.abs(v) >= 100 ? `${Math.round(v)} ms` : `${v.toFixed(1)} ms`);
const signedMs = (v: number) => `${v >= 0 ? '+' : '−'}${msText(Math.abs(v))}`;
const perS = (v: number) => `${v.toFixed(v >= 100 ? 0 : 2)}/s`;
const percent = (v: number) => `${(v * 100).toFixed(1)}%`;
const secondsText = (v: number) => `${v.toFixed(Math.abs(v) >= 100 ? 0 : 2)} s`;
const signedS = (v: number) => `${v >= 0 ? '+' : '−'}${secondsText(Math.abs(v))}`;

const rowsOf: { [K in ScenarioName]: (r: Exclude<ScenarioResults[K], { skipped: string }>) => Row[] } = {
  overhead: (r) => [
    {
      measure: 'sync txt2img p50',
      sdflow: `${msText(r.sdflow_p50_ms)} (${signedMs(r.added_p50_ms)})`,
      baseline: `direct ${msText(r.direct_p50_ms)}`,
      target: 'added ≤ 60 ms',
      met: r.added_p50_ms <= 60,
    },
    {
      measure: 'sync txt2img p99',
      sdflow: `${msText(r.sdflow_p99_ms)} (${signedMs(r.added_p99_ms)})`,
      baseline: `direct ${msText(r.direct_p99_ms)}`,
      target: 'added ≤ 150 ms',
      met: r.added_p99_ms <= 150,
    },
    { measure: 'ratio p50', sdflow: r.ratio_p50.toFixed(3), target: '≤ 1.15', met: r.ratio_p50 <= 1.15 },
  ],
  slots: (r) => [
    { measure: 'slot efficiency', sdflow: percent(r.efficiency), target: '≥ 90%', met: r.efficiency >= 0.9 },
    {
      measure: 'handoff gap p50',
      sdflow: msText(r.handoff_gap_p50_ms),
      target: '≤ 30 ms',
      met: r.handoff_gap_p50_ms <= 30,
    },
    { measure: 'handoff gap p99', sdflow: msText(r.handoff_gap_p99_ms) },
    {
      measure: 'peak concurrency',
      sdflow: String(r.peak_concurrency),
      baseline: `cap ${r.cap}`,
      target: 'never over the cap',
      met: r.peak_concurrency <= r.cap,
    },
    // Bursts of warm short jobs fill every slot unless the checkpoint's function has fewer instances than the cap
    // (a stack's default is four per function): then the figures measure the instances, not the slots.
    ...(r.peak_concurrency < r.cap
      ? [
          {
            measure: 'slots never all busy',
            sdflow: `${r.cap - r.peak_concurrency} of ${r.cap} idle at the peak: fewer instances than the cap?`,
          },
        ]
      : []),
    { measure: 'short tasks', sdflow: perS(r.tasks_per_s) },
    { measure: 'untimed first burst', sdflow: perS(r.warmup_tasks_per_s) },
    {
      measure: 'errors',
      sdflow: String(r.errors + r.warmup_errors),
      target: '0',
      met: r.errors + r.warmup_errors === 0,
    },
    ...(r.cpu_ms_per_task === undefined ? [] : [{ measure: 'CPU per task', sdflow: msText(r.cpu_ms_per_task) }]),
  ],
  throughput: (r) => [
    { measure: 'tasks completed', sdflow: perS(r.tasks_per_s), target: '≥ 50/s', met: r.tasks_per_s >= 50 },
    { measure: 'errors', sdflow: String(r.errors), target: '0', met: r.errors === 0 },
  ],
  semaphore: (r) => [
    { measure: 'grants', sdflow: perS(r.grants_per_s), target: '≥ 300/s', met: r.grants_per_s >= 300 },
    {
      measure: 'max granted',
      sdflow: String(r.max_granted),
      baseline: `limit ${r.limit}`,
      target: 'never over the limit',
      met: r.max_granted <= r.limit,
    },
  ],
  multimodel: (r) => [
    {
      measure: 'images',
      sdflow: `${perS(r.sdflow_images_per_s)} (${r.ratio.toFixed(2)}×)`,
      baseline: `switching ${perS(r.switching_images_per_s)}`,
      target: '≥ 3× switching',
      met: r.ratio >= 3,
    },
    {
      measure: 'latency p50',
      sdflow: msText(r.sdflow_p50_ms),
      baseline: `switching ${msText(r.switching_p50_ms)}`,
    },
    {
      measure: 'latency p95',
      sdflow: msText(r.sdflow_p95_ms),
      baseline: `switching ${msText(r.switching_p95_ms)}`,
    },
    {
      measure: 'checkpoint loads',
      sdflow: `${r.sdflow_loads_after_warmup} after warm-up`,
      baseline: `switching ${r.switching_loads}`,
      target: 'none after warm-up',
      met: r.sdflow_loads_after_warmup === 0,
    },
  ],
  coldstart: (r) => [
    { measure: 'added p50', sdflow: msText(r.added_p50_ms), baseline: `warm ${msText(r.warm_p50_ms)}` },
    { measure: 'added p95', sdflow: msText(r.added_p95_ms) },
  ],
  submit: (r) => [
    { measure: `async submit p50 at ${r.offered_per_s}/s`, sdflow: msText(r.p50_ms) },
    {
      measure: `async submit p99 at ${r.offered_per_s}/s`,
      sdflow: msText(r.p99_ms),
      target: '≤ 50 ms',
      met: r.p99_ms <= 50,
    },
  ],
  footprint: (r) => [
    { measure: 'API peak RSS', sdflow: `${r.api_rss_mb} MB`, target: '≤ 200 MB', met: r.api_rss_mb <= 200 },
    { measure: 'worker peak RSS', sdflow: `${r.worker_rss_mb} MB`, target: '≤ 300 MB', met: r.worker_rss_mb <= 300 },
    {
      measure: 'history events per task',
      sdflow: String(r.history_events_per_task),
      target: '≤ 30',
      met: r.history_events_per_task <= 30,
    },
  ],
  fairness: (r) => [
    {
      measure: 'second user wait p50',
      sdflow: msText(r.second_user_wait_p50_ms),
      baseline: `FIFO ${msText(r.fifo_wait_p50_ms)}`,
    },
    {
      measure: 'second user wait p95',
      sdflow: msText(r.second_user_wait_p95_ms),
      baseline: `FIFO ${msText(r.fifo_wait_p95_ms)}`,
    },
    {
      measure: `flood starts between two (${r.first_user_tasks} vs ${r.second_user_tasks})`,
      sdflow: String(r.first_user_starts_between_max),
      baseline: `cap ${r.cap}`,
      target: '≤ 2',
      met: r.first_user_starts_between_max <= 2,
    },
  ],
  eta: (r) => [
    {
      measure: 'finish estimate error p50',
      sdflow: percent(r.finish_error_p50),
      baseline: `actual ${secondsText(r.actual_finish_p50_s)}`,
      target: '≤ 20%',
      met: r.finish_error_p50 <= 0.2,
    },
    { measure: 'finish estimate error p95', sdflow: percent(r.finish_error_p95) },
    { measure: 'finish estimate bias p50', sdflow: signedS(r.finish_bias_p50_s) },
    {
      measure: 'start estimate error p50',
      sdflow: secondsText(r.start_error_p50_s),
      baseline: `actual ${secondsText(r.actual_start_p50_s)}`,
    },
    { measure: 'start estimate error p95', sdflow: secondsText(r.start_error_p95_s) },
    { measure: 'start estimate bias p50', sdflow: signedS(r.start_bias_p50_s) },
  ],
  cost: (r) => {
    const billed = (perImage: number, ratio: number) => `${secondsText(perImage)} (${ratio.toFixed(2)}×)`;
    const sdflow = billed(r.sdflow_billed_per_image_s, r.sdflow_ratio);
    const sides = (of: (side: 'always_on' | 'switching') => string) =>
      `always-on ${of('always_on')} · switching ${of('switching')}`;
    return [
      {
        measure: `billed GPU-s per image (sampling ${secondsText(r.sampling_per_image_s)})`,
        sdflow,
        baseline: `always-on ${billed(r.always_on_billed_per_image_s, r.always_on_ratio)}`,
        target: '≤ 1.15× sampling',
        met: r.sdflow_ratio <= 1.15,
      },
      {
        measure: 'billed GPU-s per image',
        sdflow,
        baseline: `switching ${billed(r.switching_billed_per_image_s, r.switching_ratio)}`,
      },
      {
        measure: 'beyond sampling (billed s)',
        sdflow:
          `cold starts ${secondsText(r.sdflow_cold_start_s)}, idle ${secondsText(r.sdflow_idle_billed_s)}, ` +
          `active ${secondsText(r.sdflow_active_over_sampling_s)}`,
      },
      {
        measure: `images (${r.jobs} in ${r.bursts} bursts)`,
        sdflow: perS(r.sdflow_images_per_s),
        baseline: sides((side) => perS(r[`${side}_images_per_s`])),
      },
      {
        measure: 'latency p50',
        sdflow: msText(r.sdflow_p50_ms),
        baseline: sides((side) => msText(r[`${side}_p50_ms`])),
      },
      {
        measure: 'latency p95',
        sdflow: msText(r.sdflow_p95_ms),
        baseline: sides((side) => msText(r[`${side}_p95_ms`])),
      },
      {
        measure: "tasks' billed sum",
        sdflow: `${r.sdflow_tasks_billed_s.toFixed(1)} s`,
        baseline: `runtime ${r.sdflow_billed_s.toFixed(1)} s`,
      },
    ];
  },
};

function scenarioRows(report: ScenarioResults, name: ScenarioName): string[][] {
  const result = report[name];
  if (isSkipped(result)) return [];
  const rows = (rowsOf[name] as (r: typeof result) => Row[])(result);
  return rows.map((row, i) => [
    i === 0 ? name : '',
    row.measure,
    row.sdflow,
    row.baseline ?? '',
    row.target ?? '',
    row.met === undefined ? '' : row.met ? 'yes' : 'NO',
  ]);
}

export function formatReport(report: BenchReport): string {
  const m = report.machine;
  const where = report.mode === 'url' ? `against ${report.url}` : 'on its own stacks';
  const skipped = SCENARIOS.flatMap((name) => {
    const result = report[name];
    return isSkipped(result) ? [`  ${name}: ${result.skipped}`] : [];
  });
  const failures = SCENARIOS.flatMap((name) => {
    const result = report[name] as { error_messages?: string[]; warmup_error_messages?: string[] };
    return [
      ...(result.error_messages ?? []),
      ...(result.warmup_error_messages ?? []).map((message) => `untimed first burst: ${message}`),
    ].map((message) => `  ${name}: ${message}`);
  });
  const rows = SCENARIOS.flatMap((name) => scenarioRows(report, name));
  return [
    `sdflow bench ${where}${report.quick ? ' (quick)' : ''} · ${report.started_at} · ${report.wall_s.toFixed(0)} s`,
    `machine  ${m.cores} cores (${m.cpu}), ${Math.round(m.memory_mb / 1024)} GB, node ${m.node}; ` +
      `load average ${m.load_avg_start.toFixed(2)} at the start, ${m.load_avg_end.toFixed(2)} at the end`,
    ...(rows.length > 0 ? ['', table(['scenario', 'measure', 'sdflow', 'baseline', 'target', 'met'], rows)] : []),
    ...(failures.length > 0 ? ['', 'failures:', ...failures] : []),
    ...(skipped.length > 0 ? ['', 'skipped:', ...skipped] : []),
  ].join('\n');
}
