import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { onOwnStacks } from './own-stacks.js';
import type { Owned } from './owned.js';
import type { BenchReport, BenchSettings, Machine, ScenarioName } from './report.js';
import { Scenarios } from './scenarios.js';
import { againstUrl } from './url-mode.js';

// One benchmark run: the selected scenarios on the benchmark's own stacks, or against --url, and the report.

export interface BenchOptions {
  /** The API to measure; unset: the benchmark starts its own stacks. */
  url?: string;
  key?: string;
  /** --url mode: a simulator with the stack's timings, the overhead scenario's baseline. */
  direct?: string;
  /** --url mode: the checkpoint to use. */
  model?: string;
  scenarios: readonly ScenarioName[];
  quick: boolean;
  settings: BenchSettings;
}

export interface RunContext {
  owned: Owned;
  /** A line of progress for people (stderr). */
  say: (line: string) => void;
  /** The run's directory: the stacks' data dirs and the logs. */
  root: string;
}

function machine(loadAtStart: number): Machine {
  const cpu = cpus();
  return {
    cores: cpu.length,
    cpu: cpu[0]?.model.trim() ?? 'unknown',
    memory_mb: Math.round(totalmem() / 2 ** 20),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    load_avg_start: loadAtStart,
    load_avg_end: loadavg()[0],
  };
}

/** Runs the selected scenarios; `failures` counts those that failed (the report says why). */
export async function runBench(o: BenchOptions, ctx: RunContext): Promise<{ report: BenchReport; failures: number }> {
  const startedAt = new Date();
  const loadAtStart = loadavg()[0];
  const t0 = performance.now();
  const s = new Scenarios(o.scenarios, ctx.say);
  ctx.say(`machine: ${cpus().length} cores, ${Math.round(freemem() / 2 ** 20)} MB free, load average ${loadAtStart}`);
  if (o.url) await againstUrl(o.url, o, s);
  else await onOwnStacks(o, s, ctx);
  return {
    report: {
      started_at: startedAt.toISOString(),
      wall_s: Math.round((performance.now() - t0) / 100) / 10,
      mode: o.url ? 'url' : 'own-stacks',
      ...(o.url ? { url: o.url } : {}),
      quick: o.quick,
      machine: machine(loadAtStart),
      settings: o.settings,
      ...s.results,
    },
    failures: s.failures,
  };
}
