import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { action, EXIT_INTERRUPTED, parseNumber, parsePositiveInteger, usageExit } from '../client/options.js';
import { note, printJson, printLines } from '../client/output.js';
import { Owned } from './owned.js';
import { type BenchSettings, SCENARIOS, type ScenarioName } from './report.js';
import type { BenchOptions } from './run.js';
import { formatReport } from './table.js';

// `sdflow bench`: the benchmark of docs/BENCHMARKS.md. Without --url it starts its own Temporal server and stacks,
// runs every scenario, and stops everything it started when it ends, fails or is interrupted.

const FULL: BenchSettings = {
  overhead_pairs: 50,
  coldstart_runs: 5,
  slots_bursts: 10,
  slots_burst_tasks: 100,
  throughput_s: 60,
  semaphore_s: 30,
  multimodel_s: 240,
  multimodel_rate_per_s: 2.5,
  submit_s: 10,
  submit_rate_per_s: 100,
  fairness_flood: 200,
  cost_bursts: 6,
  cost_jobs: 10,
  cost_gap_s: 25,
};

/** Under 3 minutes on 2 cores. */
const QUICK: BenchSettings = {
  ...FULL,
  overhead_pairs: 10,
  coldstart_runs: 1,
  slots_bursts: 1,
  throughput_s: 10,
  semaphore_s: 4,
  multimodel_s: 60,
  submit_s: 5,
  fairness_flood: 30,
  // One burst: a check that the scenario works; its figure needs the full run's bursts.
  cost_bursts: 1,
  cost_jobs: 4,
  cost_gap_s: 3,
};

/** The options that change one setting of the preset: flag, setting, what it is, parser. */
const SETTING_OPTIONS: [string, keyof BenchSettings, string, (value: string) => number][] = [
  ['--overhead-pairs <n>', 'overhead_pairs', 'overhead: measured request pairs', parsePositiveInteger],
  ['--coldstart-runs <n>', 'coldstart_runs', 'coldstart: cold/warm request pairs', parsePositiveInteger],
  ['--slots-bursts <n>', 'slots_bursts', 'slots: timed bursts of short jobs', parsePositiveInteger],
  ['--slots-burst-tasks <n>', 'slots_burst_tasks', 'slots: short jobs submitted at once', parsePositiveInteger],
  ['--throughput-s <s>', 'throughput_s', 'throughput: seconds of sustained load', parsePositiveInteger],
  ['--semaphore-s <s>', 'semaphore_s', 'semaphore: seconds of acquire/release', parsePositiveInteger],
  ['--multimodel-s <s>', 'multimodel_s', 'multimodel: seconds of arrivals', parsePositiveInteger],
  ['--multimodel-rate <n>', 'multimodel_rate_per_s', 'multimodel: jobs per second offered', parsePositiveNumber],
  ['--submit-s <s>', 'submit_s', 'submit: seconds of submits', parsePositiveInteger],
  ['--submit-rate <n>', 'submit_rate_per_s', 'submit: submits per second offered', parsePositiveNumber],
  ['--fairness-flood <n>', 'fairness_flood', "fairness: the first user's queued tasks", parsePositiveInteger],
  ['--cost-bursts <n>', 'cost_bursts', 'cost: bursts of jobs', parsePositiveInteger],
  ['--cost-jobs <n>', 'cost_jobs', 'cost: jobs per checkpoint in a burst', parsePositiveInteger],
  ['--cost-gap-s <s>', 'cost_gap_s', "cost: mean quiet gap after a burst's work", parseNonNegativeNumber],
];

function parsePositiveNumber(value: string): number {
  const n = parseNumber(value);
  if (n <= 0) throw new InvalidArgumentError('must be more than 0');
  return n;
}

function parseNonNegativeNumber(value: string): number {
  const n = parseNumber(value);
  if (n < 0) throw new InvalidArgumentError('must not be negative');
  return n;
}

function parseScenarios(value: string): ScenarioName[] {
  const names = value
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  const unknown = names.filter((name) => !(SCENARIOS as readonly string[]).includes(name));
  if (unknown.length > 0 || names.length === 0) {
    throw new InvalidArgumentError(`expected a comma-separated list of ${SCENARIOS.join(', ')}`);
  }
  return names as ScenarioName[];
}

interface CommandOptions {
  url?: string;
  key?: string;
  direct?: string;
  model?: string;
  scenarios?: ScenarioName[];
  quick?: boolean;
  json?: string | boolean;
  keep?: boolean;
  /** The settings' own options, by commander's attribute names. */
  [setting: string]: unknown;
}

async function bench(opts: CommandOptions): Promise<number> {
  const preset = opts.quick ? QUICK : FULL;
  const settings = { ...preset };
  for (const [flag, setting] of SETTING_OPTIONS) {
    const value = opts[new Option(flag).attributeName()];
    if (typeof value === 'number') settings[setting] = value;
  }
  const o: BenchOptions = {
    url: opts.url,
    key: opts.key || undefined,
    direct: opts.direct,
    model: opts.model,
    scenarios: opts.scenarios ?? SCENARIOS,
    quick: opts.quick ?? false,
    settings,
  };
  const root = mkdtempSync(join(tmpdir(), 'sdflow-bench-'));
  const owned = new Owned();
  const stopAll = () => owned.stopAll((name, err) => note(`could not stop ${name}: ${(err as Error).message}`));
  const started = performance.now();
  const say = (line: string) => note(`[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}`);
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(EXIT_INTERRUPTED);
    interrupted = true;
    note('interrupted: stopping what the benchmark started (again to exit at once)');
    void stopAll().finally(() => process.exit(EXIT_INTERRUPTED));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let keep = opts.keep ?? false;
  try {
    // Loaded here: every sdflow process (simulators and agents included) loads this module to register the command.
    const { runBench } = await import('./run.js');
    const { report, failures } = await runBench(o, { owned, say, root });
    keep ||= failures > 0;
    const human = formatReport(report);
    if (typeof opts.json === 'string') {
      writeFileSync(opts.json, `${JSON.stringify(report, null, 2)}\n`);
      printLines(human);
      say(`report written to ${opts.json}`);
    } else if (opts.json) {
      note(human);
      printJson(report);
    } else {
      printLines(human);
    }
    return failures > 0 ? 1 : 0;
  } catch (err) {
    keep = true;
    throw err;
  } finally {
    await stopAll();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (keep && !o.url) note(`data dirs and logs kept in ${root}`);
    else rmSync(root, { recursive: true, force: true });
  }
}

export function registerBenchCommand(program: Command): Command {
  const command = usageExit(
    program
      .command('bench')
      .description('benchmark sdflow against its baselines; without --url on stacks of its own (docs/BENCHMARKS.md)'),
  )
    .addOption(
      new Option('--url <base>', 'measure this sdflow API instead (only overhead, submit and slots)').env('SDFLOW_URL'),
    )
    .addOption(new Option('--key <secret>', 'API key for --url, sent as Authorization: Bearer').env('SDFLOW_API_KEY'))
    .option('--direct <url>', "--url mode: a simulator with the stack's timings, the overhead scenario's baseline")
    .option('--model <name>', '--url mode: checkpoint to render with (default: the oldest loaded one)')
    .option('--scenarios <list>', `comma-separated subset of ${SCENARIOS.join(', ')}`, parseScenarios)
    .option('--quick', 'a short run: under 3 minutes on 2 cores')
    .option('--json [file]', 'write the JSON report to file, or print it on stdout')
    .option('--keep', "keep the stacks' data dirs and logs (kept anyway when a scenario fails)");
  for (const [flag, setting, what, parse] of SETTING_OPTIONS) {
    command.option(flag, `${what} (full ${FULL[setting]}, quick ${QUICK[setting]})`, parse);
  }
  return command.action(action((opts: CommandOptions) => bench(opts)));
}
