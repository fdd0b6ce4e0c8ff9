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
  'fairness',
  'eta',
  'cost',
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
  /** Tasks submitted at once in each timed burst. */
  burst_tasks: number;
  /**
   * The untimed burst of 4 × cap tasks before them, which takes a stack that sat idle to its steady state: its
   * tasks, failures (never counted in `errors`) and rate.
   */
  warmup_tasks: number;
  warmup_errors: number;
  warmup_tasks_per_s: number;
  warmup_error_messages: string[];
  /** Ended leases of those tasks found in the semaphore's state. */
  leases: number;
  /** Releases paired with a next job start. */
  handoffs: number;
  gpu_busy_s: number;
  slot_held_s: number;
  /** CPU ms per task of the stack's processes and the benchmark's own over the bursts (own stacks on Linux only). */
  cpu_ms_per_task?: number;
  /** The same by process group (temporal, worker, api, runtime, agents, simulators, bench) and `all`. */
  cpu_ms_per_task_by_process?: Record<string, number>;
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

export interface FairnessResult {
  /** The second user's wait, submit → slot grant (the task marked running), with a key of their own: fair share. */
  second_user_wait_p50_ms: number;
  second_user_wait_p95_ms: number;
  /** The same tasks' wait when submitted under the first user's key: plain FIFO behind the flood. */
  fifo_wait_p50_ms: number;
  fifo_wait_p95_ms: number;
  /** The most of the first user's tasks that started between two consecutive starts of the second user's (fair share). */
  first_user_starts_between_max: number;
  /** Tasks of the first user's flood, and of the second user, per side. */
  first_user_tasks: number;
  second_user_tasks: number;
  /** Of the flood, the tasks still waiting when the second user submitted (fair share side). */
  first_user_waiting_at_second_submit: number;
  cap: number;
  /** Tasks (of both sides) that did not succeed; a failed second-user task is left out of the percentiles. */
  errors: number;
  /** The most frequent failures, with their counts (empty when there were none). */
  error_messages: string[];
}

export interface EtaResult {
  /** |estimated − actual finish| / actual finish, both from submit: the median and p95 over `tasks`. */
  finish_error_p50: number;
  finish_error_p95: number;
  /** Estimated − actual finish in seconds, the median: negative when the estimates are early. */
  finish_bias_p50_s: number;
  /** |estimated − actual start| in seconds (start: the slot's grant, the task marked running). */
  start_error_p50_s: number;
  start_error_p95_s: number;
  /** Estimated − actual start in seconds, the median: negative when the estimates are early. */
  start_bias_p50_s: number;
  /** The median actual wait for a slot and time to finish, from submit, for scale. */
  actual_start_p50_s: number;
  actual_finish_p50_s: number;
  /** Succeeded tasks of the multimodel workload's sdflow side whose async answer carried an estimate. */
  tasks: number;
  /** Accepted tasks whose answer carried none (the semaphore's state not read yet). */
  without_estimate: number;
  duration_s: number;
  offered_per_s: number;
}

/**
 * The cost scenario: three sides of four instances given the same bursty arrivals, each billed over the same window
 * (the first arrival to the last task's end) in active-equivalent GPU-seconds: starting and active seconds in full,
 * idle seconds times `idle_to_active`. `<side>_billed_s = <side>_cold_start_s + <side>_active_s + <side>_idle_s ×
 * idle_to_active`; per image over the side's images; the ratio is per image over `sampling_per_image_s`.
 */
export interface CostResult {
  /** The simulator's time for one image of the job (its 20 steps and VAE decode), without load or cold start. */
  sampling_per_image_s: number;
  sdflow_billed_per_image_s: number;
  always_on_billed_per_image_s: number;
  switching_billed_per_image_s: number;
  sdflow_ratio: number;
  always_on_ratio: number;
  switching_ratio: number;
  /** The billing window, from the first arrival to the last task's end, of any side. */
  window_s: number;
  /** The default rate row's idle price over its active price. */
  idle_to_active: number;
  sdflow_billed_s: number;
  always_on_billed_s: number;
  switching_billed_s: number;
  /** Each side's instance-seconds in the window by state (sdflow and always-on: the local runtime's accounting;
   * switching: its simulators', checkpoint loads counted as active). */
  sdflow_cold_start_s: number;
  sdflow_active_s: number;
  sdflow_idle_s: number;
  always_on_cold_start_s: number;
  always_on_active_s: number;
  always_on_idle_s: number;
  switching_cold_start_s: number;
  switching_active_s: number;
  switching_idle_s: number;
  /** sdflow's billed seconds beyond the sampling: `sdflow_cold_start_s` + these two. */
  sdflow_idle_billed_s: number;
  /** Active seconds beyond the images' sampling: the agent's work around the job (inputs, encoding, upload). */
  sdflow_active_over_sampling_s: number;
  /** Σ billedGpuS of sdflow's tasks (their `cost`), against `sdflow_billed_s`: no task carries idle after an
   * instance's last task. */
  sdflow_tasks_billed_s: number;
  /** sdflow's tasks whose cost was read, and those that carried a cold start. */
  sdflow_tasks: number;
  sdflow_cold_starts: number;
  /** The idle seconds sdflow's instances still had before their keep-alive when the window ended (not billed). */
  sdflow_tail_idle_s: number;
  /** sdflow's per-function settings. */
  sdflow_keep_alive_s: number;
  sdflow_prewarm_queue_depth: number;
  /** Checkpoint loads of the switching WebUIs in the window. */
  switching_loads: number;
  /** Images over each side's own span, from the first arrival to its last task's end. */
  sdflow_images_per_s: number;
  always_on_images_per_s: number;
  switching_images_per_s: number;
  /** Submit → the task's end, of the jobs that succeeded. */
  sdflow_p50_ms: number;
  sdflow_p95_ms: number;
  always_on_p50_ms: number;
  always_on_p95_ms: number;
  switching_p50_ms: number;
  switching_p95_ms: number;
  /** Jobs offered to each side (one image each): `jobs = <side>_images + <side>_failed`. */
  jobs: number;
  bursts: number;
  jobs_per_checkpoint: number;
  gap_s: number;
  sdflow_images: number;
  always_on_images: number;
  switching_images: number;
  /** Jobs that failed, or had not ended when the scenario gave up on them. */
  sdflow_failed: number;
  always_on_failed: number;
  switching_failed: number;
  /** The most frequent failures, with their counts (empty when there were none). */
  error_messages: string[];
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
  slots_burst_tasks: number;
  throughput_s: number;
  semaphore_s: number;
  multimodel_s: number;
  multimodel_rate_per_s: number;
  submit_s: number;
  submit_rate_per_s: number;
  /** fairness: the first user's flood of queued tasks (the second user submits 5). */
  fairness_flood: number;
  /** cost: bursts, jobs per chosen checkpoint in a burst, and the mean quiet gap after a burst's work. */
  cost_bursts: number;
  cost_jobs: number;
  cost_gap_s: number;
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
  fairness: FairnessResult | Skipped;
  eta: EtaResult | Skipped;
  cost: CostResult | Skipped;
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
