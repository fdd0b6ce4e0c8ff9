import { z } from 'zod';
import { api } from './api.js';
import { int, num } from './schemas.js';
import { group, setting } from './setting.js';
import { shared } from './shared.js';

// The worker's settings: its activities (invoke and the bookkeeping ones), and the two singleton workflows it starts.
// The invoke, activity and semaphore settings are also part of each task's policy, which the API sets at submit.

export const invoke = group({
  heartbeatTimeoutS: setting({
    env: 'SDFLOW_INVOKE_HEARTBEAT_TIMEOUT_S',
    schema: num(5, 1),
    meaning: 'Heartbeat timeout of the invoke activity: how soon a lost worker is noticed.',
  }),
  idleTimeoutS: setting({
    env: 'SDFLOW_INVOKE_IDLE_TIMEOUT_S',
    schema: num(120, 1),
    meaning: 'An invoke with no event from its function for this long is abandoned and retried.',
  }),
  maxAttempts: setting({
    env: 'SDFLOW_INVOKE_MAX_ATTEMPTS',
    schema: int(3, 1),
    meaning: 'Attempts of the invoke activity (a retryable failure runs it again).',
  }),
  retryInitialS: setting({
    env: 'SDFLOW_INVOKE_RETRY_INITIAL_S',
    schema: num(1, 0.1),
    meaning: 'First backoff between invoke attempts (doubling).',
  }),
  progressSignalMs: setting({
    env: 'SDFLOW_PROGRESS_SIGNAL_MS',
    schema: int(1000, 100),
    meaning: 'At most one progress signal to the workflow per this interval (per phase).',
  }),
});

export const worker = group({
  activityMaxAttempts: setting({
    env: 'SDFLOW_ACTIVITY_MAX_ATTEMPTS',
    schema: int(10, 1),
    meaning: 'Attempts of the bookkeeping activities (records, slots, functions).',
  }),
  shutdownGraceS: setting({
    env: 'SDFLOW_WORKER_SHUTDOWN_GRACE_S',
    schema: num(10, 0),
    meaning: 'A stopping worker lets running activities finish this long; the rest are retried elsewhere.',
  }),
  maxHeartbeatThrottleS: setting({
    env: 'SDFLOW_MAX_HEARTBEAT_THROTTLE_S',
    schema: num(1, 0.1),
    meaning:
      "The worker's heartbeat throttle: how fast a cancel reaches a running invoke, and how often progress moves.",
  }),
  maxActivities: setting({
    env: 'SDFLOW_WORKER_MAX_ACTIVITIES',
    schema: int(1000, 1),
    meaning:
      "Activities one worker runs at once. A task waiting for a GPU slot holds one (its runTask waits on the semaphore), and only tasks at the semaphore take part in its grant order (lanes, fair share); the rest wait in Temporal's task queue in arrival order. Keep it above the tasks you expect to queue.",
  }),
  metricsPort: setting({
    env: 'SDFLOW_WORKER_METRICS_PORT',
    schema: int(0, 0),
    meaning:
      "Port of the worker's Prometheus metrics, the Temporal SDK's included, on the loopback address (0: off, so that parallel stacks never collide).",
  }),
});

export const semaphore = group(
  {
    leaseCheckS: setting({
      env: 'SDFLOW_SEMAPHORE_LEASE_CHECK_S',
      schema: num(30, 0.5),
      meaning: "How often the semaphore checks that its holders' workflows are still open.",
    }),
    continueAsNewAfterGrants: setting({
      env: 'SDFLOW_SEMAPHORE_CAN_AFTER_GRANTS',
      schema: int(300, 1),
      meaning: 'The semaphore continues as new after this many grants.',
    }),
    warmthReportS: setting({
      env: 'SDFLOW_WARMTH_REPORT_S',
      schema: num(2, 0),
      meaning:
        'How often each worker tells the semaphore which checkpoints have an idle warm instance, its tie-breaker between equally entitled tasks (only when it changed; 0: never; not with FC, which lists no instances).',
    }),
    prewarmCheckS: setting({
      env: 'SDFLOW_PREWARM_CHECK_S',
      schema: num(2, 0),
      meaning:
        "How often each worker looks for bursts at the semaphore: a checkpoint with at least its function's prewarmQueueDepth tasks waiting gets instances pre-warmed up to its share of the cap (0: never).",
    }),
    priorityAgingS: setting({
      env: 'SDFLOW_PRIORITY_AGING_S',
      schema: num(300, 0),
      meaning:
        'A low-priority task that has waited this many seconds for a slot counts as normal, so it never starves (0: never).',
    }),
    breakerFailures: setting({
      env: 'SDFLOW_BREAKER_FAILURES',
      schema: int(3, 1),
      meaning:
        'A checkpoint whose instances crash, run out of memory or fail to start this many times in a row (within SDFLOW_BREAKER_WINDOW_S) is quarantined: its new tasks get 503, its queued ones wait.',
    }),
    breakerWindowS: setting({
      env: 'SDFLOW_BREAKER_WINDOW_S',
      schema: num(300, 1),
      meaning: "The window in which a checkpoint's instance failures in a row count toward its quarantine.",
    }),
    breakerCooldownS: setting({
      env: 'SDFLOW_BREAKER_COOLDOWN_S',
      schema: num(60, 0),
      meaning:
        'How long a quarantine lasts before one probe task is let through: its success lifts the quarantine, its failure starts another.',
    }),
  },
  ({ breakerFailures, breakerWindowS, breakerCooldownS, ...semaphore }, read) => ({
    id: `sdflow-semaphore-${read(shared.settings.deployment)}`,
    ...semaphore,
    breaker: { failures: breakerFailures, windowS: breakerWindowS, cooldownS: breakerCooldownS },
  }),
);

export const reconciler = group(
  {
    periodS: setting({
      env: 'SDFLOW_RECONCILE_PERIOD_S',
      schema: num(60, 1),
      meaning:
        'How often the reconciler looks for open task rows whose workflow is closed, and for stuck model registrations.',
    }),
    graceS: setting({
      env: 'SDFLOW_RECONCILE_GRACE_S',
      schema: num(120, 0),
      meaning: 'The reconciler leaves task rows younger than this alone.',
    }),
  },
  (reconciler, read) => ({
    id: `sdflow-reconciler-${read(shared.settings.deployment)}`,
    ...reconciler,
    // A model registration may be waiting this long for the API to receive its upload: not stuck yet.
    uploadTimeoutS: read(api.settings.requestReceiveTimeoutS),
  }),
);

export const retention = group(
  {
    maxAgeDays: setting({
      env: 'SDFLOW_RETENTION_DAYS',
      schema: z.preprocess((v) => (v === '' ? undefined : v), z.coerce.number().positive().optional()),
      meaning:
        'Final tasks created longer ago than this (days, decimals allowed) lose their images, inputs and previews; their records stay, as deleted (unset: kept forever).',
    }),
    periodS: setting({
      env: 'SDFLOW_RETENTION_PERIOD_S',
      schema: num(3600, 1),
      meaning: 'How often the retention workflow looks for tasks past SDFLOW_RETENTION_DAYS.',
    }),
  },
  (retention, read) => ({ id: `sdflow-retention-${read(shared.settings.deployment)}`, ...retention }),
);
