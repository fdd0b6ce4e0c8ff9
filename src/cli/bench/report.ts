// The benchmark's JSON report: one object per scenario, with the figures the targets are about (units in the names)
// and the counts they were computed from, or `skipped` with the reason. docs/BENCHMARKS.md says what each one means.

export const SCENARIOS = [
  'overhead',
  'slots',
  'throughput',
  'semaphore',
  'multimodel',
  'coldstart',
  'submit',
  'footprint',
] as const;

export type ScenarioName = (typeof SCENARIOS)[number];

/** The scenarios that need no control of the stack, so they also run against `--url`. */
export const URL_SCENARIOS: readonly ScenarioName[] = ['overhead', 'submit', 'slots'];

export interface Skipped {
  skipped: string;
}

export interface OverheadResult {
  sdflow_p50_ms: number;
  sdflow_p99_ms: number;
  direct_p50_ms: number;
  direct_p99_ms: number;
  added_p50_ms: number;
  added_p99_ms: number;
  ratio_p50: number;
  /** Measured pairs (one sdflow request and one direct request each), after the warm-up. */
  pairs: number;
  /** Requests that failed; they are left out of the percentiles. */
  errors: number;
  /** The most frequent failures, with their counts (empty when there were none). */
  error_messages: string[];
}

export interface SlotsResult {
  tasks_per_s: number;
  efficiency: number;
  handoff_gap_p50_ms: number;
  handoff_gap_p99_ms: number;
  peak_concurrency: number;
  cap: number;
  /** Tasks submitted in the bursts; `succeeded + errors = tasks`. */
  tasks: number;
  succeeded: number;
  errors: number;
  bursts: number;
  /** Ended leases of those tasks found in the semaphore's state. */
  leases: number;
  /** Releases paired with a next job start. */
  handoffs: number;
  gpu_busy_s: number;
  slot_held_s: number;
  /** The most frequent failures, with their counts (empty when there were none). */
  error_messages: string[];
}

export interface ThroughputResult {
  tasks_per_s: number;
  errors: number;
  duration_s: number;
  /** Tasks that succeeded within the duration: `tasks_per_s = completed / duration_s`. */
  completed: number;
  /** Tasks kept in flight (submitted async, followed to their end). */
  concurrency: number;
  /** The most frequent failures, with their counts (empty when there were none). */
  error_messages: string[];
}

export interface SemaphoreResult {
  grants_per_s: number;
  max_granted: number;
  limit: number;
  /** Grants within the duration: `grants_per_s = grants / duration_s`. */
  grants: number;
  duration_s: number;
  loops: number;
  /** Acquires the server failed (an update aborted) and the loop asked again, as a task's activity retry would. */
  acquire_retries: number;
}

export interface MultimodelResult {
  sdflow_images_per_s: number;
  switching_images_per_s: number;
  ratio: number;
  sdflow_p50_ms: number;
  sdflow_p95_ms: number;
  switching_p50_ms: number;
  switching_p95_ms: number;
  sdflow_loads_after_warmup: number;
  switching_loads: number;
  duration_s: number;
  offered_per_s: number;
  /**
   * Jobs offered to each side (the same arrivals): `submitted = <side>_images + <side>_late + <side>_failed +
   * <side>_unfinished`, where images finished within the duration, late ones after it, and unfinished ones were
   * cancelled at the end of the drain.
   */
  submitted: number;
  sdflow_images: number;
  sdflow_late: number;
  sdflow_failed: number;
  sdflow_unfinished: number;
  switching_images: number;
  switching_late: number;
  switching_failed: number;
  switching_unfinished: number;
  /** The most frequent failures, with their counts (empty when there were none). */
  error_messages: string[];
}

export interface ColdstartResult {
  added_p50_ms: number;
  added_p95_ms: number;
  runs: number;
  cold_p50_ms: number;
  warm_p50_ms: number;
}

export interface SubmitResult {
  offered_per_s: number;
  p50_ms: number;
  p99_ms: number;
  duration_s: number;
  /** `sent = accepted + errors`. */
  sent: number;
  accepted: number;
  errors: number;
  /** The most frequent failures, with their counts (empty when there were none). */
  error_messages: string[];
}

export interface FootprintResult {
  api_rss_mb: number;
  worker_rss_mb: number;
  history_events_per_task: number;
  /** Tasks whose history was read. */
  histories: number;
  /** RSS samples taken during the throughput run. */
  samples: number;
}

export interface Machine {
  cores: number;
  cpu: string;
  memory_mb: number;
  node: string;
  platform: string;
  /** 1-minute load average when the run started and ended: how busy the machine was with other work too. */
  load_avg_start: number;
  load_avg_end: number;
}

/** The counts and durations the run used. */
export interface BenchSettings {
  overhead_pairs: number;
  coldstart_runs: number;
  slots_bursts: number;
  throughput_s: number;
  semaphore_s: number;
  multimodel_s: number;
  multimodel_rate_per_s: number;
  submit_s: number;
  submit_rate_per_s: number;
}

export interface ScenarioResults {
  overhead: OverheadResult | Skipped;
  slots: SlotsResult | Skipped;
  throughput: ThroughputResult | Skipped;
  semaphore: SemaphoreResult | Skipped;
  multimodel: MultimodelResult | Skipped;
  coldstart: ColdstartResult | Skipped;
  submit: SubmitResult | Skipped;
  footprint: FootprintResult | Skipped;
}

export interface BenchReport extends ScenarioResults {
  started_at: string;
  wall_s: number;
  /** `own-stacks`: the bench started its own stacks; `url`: it measured the API at `url`. */
  mode: 'own-stacks' | 'url';
  url?: string;
  quick: boolean;
  machine: Machine;
  settings: BenchSettings;
}

export const isSkipped = (result: object): result is Skipped => 'skipped' in result;
