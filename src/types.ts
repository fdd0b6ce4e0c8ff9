import type { SearchAttributeKey } from '@temporalio/common/lib/search-attributes.js';

// Types shared by the API, workflows, activities and the agent. Pure declarations and constants only: workflow
// code imports this file, so it must stay free of I/O and Node built-ins.

/** `passthrough`: an A1111 request the API forwards to SD as a task (params: protocol/invoke.ts's passthrough params). */
export type TaskKind = 'txt2img' | 'img2img' | 'extra' | 'passthrough';
/** `deleted`: a final task whose images, inputs and previews were removed (DELETE /tasks/{id}, retention). */
export type TaskStatus = 'waiting' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'deleted';
export type FinalStatus = 'succeeded' | 'failed' | 'cancelled';

/** How a task's run can end. A final task may later be `deleted`; nothing else changes a final record. */
export const FINAL_STATUSES: readonly TaskStatus[] = ['succeeded', 'failed', 'cancelled'];
export const TASK_STATUSES: readonly TaskStatus[] = ['waiting', 'running', ...FINAL_STATUSES, 'deleted'];
export const isFinal = (s: TaskStatus): s is FinalStatus => FINAL_STATUSES.includes(s);
/** Waiting or running: the task's run may still change its record. */
export const isOpen = (s: TaskStatus): boolean => s === 'waiting' || s === 'running';

/** Where a running task is; `phase` refines `running`. */
export type TaskPhase = 'queued' | 'starting' | 'sampling' | 'uploading' | 'finished';

/** A1111's `state` object, as it appears in /sdapi/v1/progress. */
export interface SdState {
  sampling_step: number;
  sampling_steps: number;
  job_count: number;
  job_no: number;
  interrupted: boolean;
  skipped: boolean;
  job: string;
  job_timestamp: string;
}

export const EMPTY_SD_STATE: SdState = {
  sampling_step: 0,
  sampling_steps: 0,
  job_count: 0,
  job_no: 0,
  interrupted: false,
  skipped: false,
  job: '',
  job_timestamp: '0',
};

/** Numbers-only progress: what the invoke activity forwards to the workflow and the workflow answers to queries. */
export interface ProgressSnapshot {
  progress: number;
  etaRelative: number;
  state: SdState;
  phase: TaskPhase;
  /** Object key of a preview image, when the backend offers one; never image bytes. */
  currentImage: string | null;
}

/** The answer of the generation workflow's `progress` query. */
export interface TaskProgress extends ProgressSnapshot {
  taskId: string;
  status: TaskStatus;
  /** 1-based place in the GPU queue while the task waits for a slot. */
  queuePosition?: number;
}

/** An A1111 request body after the API's claim check: every image field holds an object key, never base64. */
export type SdParams = Record<string, unknown>;

/** The generation workflow's input. Everything is small: images travel as object keys. */
export interface GenerationInput {
  taskId: string;
  user: string;
  kind: TaskKind;
  /** Checkpoint name (the model registry's name). For `extra`, the checkpoint whose function runs the upscale. */
  model: string;
  params: SdParams;
  submittedAt: string;
  /** May the task reference any object key (an admin's task), or only the user's own. */
  admin: boolean;
  deadlineS: number;
  semaphoreId: string;
  policy: TaskPolicy;
  retryOf?: string;
  /** Its place in the grant order: lane, and the user's share and cap from their key (absent in older inputs). */
  owner?: SlotOwner;
  /** Epoch ms by which the task must have started (the request's Task-Deadline), or it fails without a slot. */
  deadlineAt?: number;
}

/** Timeouts and retries of a task's activities, from config at submit time (workflow code cannot read config). */
export interface TaskPolicy {
  invokeHeartbeatTimeoutS: number;
  invokeMaxAttempts: number;
  invokeRetryInitialS: number;
  activityMaxAttempts: number;
  /** How often a task whose checkpoint is being re-registered asks again (absent in inputs of older versions). */
  modelBusyRetryS?: number;
  semaphore: {
    leaseCheckS: number;
    continueAsNewAfterGrants: number;
    initialLimit: number;
    priorityAgingS?: number;
    breaker?: BreakerPolicy;
  };
}

/** What the generation workflow returns and writes as the final record. */
export interface TaskOutcome {
  taskId: string;
  status: FinalStatus;
  images: string[];
  /** A1111's `info`: a JSON string, as A1111 returns it. */
  info?: string;
  parameters?: Record<string, unknown>;
  message?: string;
  /** Set on failures: lets the API answer 422 when SD rejected the input. */
  errorKind?: ErrorKind;
  /** How the GPU part went, measured by the runTask activity (success records only). */
  timings?: TaskTimings;
  /** What the task used and is billed, from the runtime's accounting of its invoke (success records only). */
  cost?: TaskCost;
}

/** The phases of a task's GPU part, as the invoke's events showed them; what the API's metrics observe. */
export interface TaskTimings {
  /** From the slot's grant to SD starting the job: instance start, checkpoint load, reading inputs. */
  startMs: number;
  /** From SD starting the job to SD returning (before the images are uploaded). */
  samplingMs: number;
  /** The invoke waited for an instance of its function (one starting, or every one busy). */
  coldStart: boolean;
  /** The agent loaded the checkpoint before the job (SD held another one). */
  checkpointLoad: boolean;
}

/**
 * A task's cost, in seconds (docs/ARCHITECTURE.md, "Cost"). The runtime accounts each instance's cold-start, active
 * and idle seconds and hands each invoke its part: the active seconds it held the instance, the idle seconds the
 * instance waited for it since its previous invoke (or since it became ready), and the instance's whole cold start
 * when this was the instance's first invoke.
 */
export interface TaskCost {
  /** From submission to the grant of a GPU slot. */
  queueS: number;
  /** The task's share of a cold start: the instance's start, when the task was its first invoke. */
  coldStartS: number;
  /** Seconds the invoke held its instance (FC's active time): reading inputs, SD's job, uploading the images. */
  gpuS: number;
  /** Seconds the instance sat idle, warm, before this invoke took it. */
  idleS: number;
  /** Billed GPU-seconds in active-equivalent seconds: gpuS + coldStartS + idleS × (idle rate / active rate). */
  billedGpuS: number;
  /** The row of SDFLOW_BILLING_RATES that priced it: the function's instanceType, or `default`. */
  gpuType: string;
  /** Images the task made (kept here, as a deleted task's record keeps no image keys). */
  images: number;
}

/**
 * Error types that retrying the activity cannot fix; activities throw them as non-retryable ApplicationFailures.
 * `ModelBusy` (the checkpoint is being re-registered) is the workflow's to handle: the task waits and asks again.
 */
export const NON_RETRYABLE = {
  badInput: 'BadInput',
  modelNotFound: 'ModelNotFound',
  modelBusy: 'ModelBusy',
  /** The task's Task-Deadline passed while it waited for a slot: it never started. */
  taskDeadline: 'TaskDeadline',
} as const;

/** The workflow's result: the outcome without SD's info, parameters, timings and cost, which live in the row only. */
export type TaskSummary = Omit<TaskOutcome, 'info' | 'parameters' | 'timings' | 'cost'>;

/** `deadline`: SDFLOW_TASK_DEADLINE_S passed; `task_deadline`: the request's Task-Deadline passed while it waited. */
export type ErrorKind = 'bad_input' | 'not_found' | 'sd_error' | 'deadline' | 'task_deadline' | 'internal';

/** Search attributes that make tasks findable in the Temporal Web UI (all Keyword). */
const keyword = (name: string): SearchAttributeKey<'KEYWORD'> => ({ name, type: 'KEYWORD' });
export const SEARCH_ATTRIBUTES = {
  model: keyword('sdflowModel'),
  status: keyword('sdflowStatus'),
  user: keyword('sdflowUser'),
} as const;

/** Signal and query names of the generation workflow. */
export const GENERATION = {
  progressSignal: 'progress',
  slotGrantedSignal: 'slotGranted',
  progressQuery: 'progress',
} as const;

/** A webhook event for a task's webhook workflow to deliver, as its starter signals it. */
export type WebhookEvent =
  /** `start` and `progress` carry the progress they report. */
  | { type: 'start' | 'progress'; progress: ProgressSnapshot }
  /** `completed` reads the final record when it is sent; `redeliver` sends it again after it was delivered. */
  | { type: 'completed'; redeliver?: boolean };

/** How a task's webhook workflow delivers, from config at its start (workflow code cannot read config). */
export interface WebhookPolicy {
  timeoutS: number;
  retryInitialS: number;
  retryHours: number;
}

/** The webhook workflow's input: events not yet delivered travel across continue-as-new. */
export interface WebhookInput {
  taskId: string;
  policy: WebhookPolicy;
  pending?: WebhookEvent[];
  completedQueued?: boolean;
}

/** Signal names of the webhook workflow. */
export const WEBHOOK = { eventSignal: 'webhookEvent' } as const;

/** Signal, update and query names of the semaphore workflow. */
export const SEMAPHORE = {
  /** Queues a lease and answers once it is granted (or when the run hands over to its successor: ask again). */
  acquireUpdate: 'acquireSlot',
  /** The first version's acquire: queue a lease, the grant comes back by signal (`slotGranted`). */
  acquireSignal: 'acquire',
  /** Frees a held slot or withdraws a queued request; idempotent, keyed by the whole LeaseRef. */
  releaseSignal: 'release',
  setLimitSignal: 'setLimit',
  /** The idle warm instances per checkpoint, from the worker: a tie-breaker of the grant order. */
  warmthSignal: 'warmth',
  /** The grant order's settings, from the worker's config at its start (aging of a waiter's lane, the breakers). */
  policySignal: 'policy',
  /** An admin lifts a checkpoint's quarantine: its circuit breaker closes. */
  liftQuarantineSignal: 'liftQuarantine',
  stateQuery: 'state',
} as const;

/** Identifies one lease: the holder's workflow run and a lease id unique within it. */
export interface LeaseRef {
  workflowId: string;
  runId: string;
  leaseId: string;
}

export interface SlotGrant {
  leaseId: string;
}

/**
 * How an instance failed, when the failure is the checkpoint's rather than the request's: it crashed or its
 * connection died mid-job, SD ran out of memory, or it failed to start. Only these count toward a circuit breaker.
 */
export type InstanceFault = 'crash' | 'oom' | 'start';
export const INSTANCE_FAULTS: readonly InstanceFault[] = ['crash', 'oom', 'start'];

/** What a holder's release says of its run on the checkpoint: the GPU part succeeded, or an instance failed it. */
export type LeaseOutcome = { ok: true } | { ok: false; fault: InstanceFault; message: string };

/** A release: the lease, and what its run showed of the checkpoint's health (absent: nothing to count). */
export interface LeaseRelease extends LeaseRef {
  outcome?: LeaseOutcome;
}

/** Priority lanes, highest first. */
export const LANES = ['high', 'normal', 'low'] as const;
export type Lane = (typeof LANES)[number];

/** Who asks for a slot, for the grant order: its lane, and the user it runs for with their key's share and cap. */
export interface SlotOwner {
  lane?: Lane;
  user?: string;
  /** The user's share within a lane, relative to others' (the key's `weight`; 1 when absent). */
  weight?: number;
  /** The most slots the user may hold at once (the key's `maxSlots`; no cap when absent). */
  maxSlots?: number;
}

/** A task's place in the grant order, decided at submit: who owns it, and by when it must have started. */
export interface TaskScheduling {
  owner: SlotOwner;
  /** Epoch ms (the request's Task-Deadline). */
  deadlineAt?: number;
}

/** An acquire by update: the lease to grant, who asks, for which checkpoint, and until when it may wait. */
export interface SlotRequest extends SlotOwner {
  lease: LeaseRef;
  /** The task's checkpoint: a free slot prefers a task whose checkpoint has an idle warm instance. */
  model?: string;
  /** Epoch ms past which the task must not start (its Task-Deadline): it is dropped from the queue instead. */
  deadlineAt?: number;
  /**
   * Epoch ms the task was submitted: its place among its user's waiters of a lane, and where its aging counts from.
   * Tasks reach the semaphore in any order (their activities start in any order); absent, the arrival counts.
   */
  submittedAt?: number;
}

/**
 * An acquire's answer: granted; or not, and then either its deadline passed while it waited (`expired`: it never
 * will be) or the semaphore's run is handing over to its successor (ask again).
 */
export interface SlotAnswer {
  granted: boolean;
  expired?: boolean;
}

export interface SemaphoreHolder extends LeaseRef, SlotOwner {
  grantedAt: number;
  /**
   * The task's checkpoint, kept from its acquire (absent for signal-era holders): whose circuit breaker its release's
   * outcome counts for, and the slots src/prewarm.ts counts per checkpoint.
   */
  model?: string;
  /** Granted to an update that is waiting for it; a signal-era holder (absent) is told by signal. */
  byUpdate?: boolean;
}

export interface SemaphoreWaiter extends LeaseRef, SlotOwner {
  requestedAt: number;
  byUpdate?: boolean;
  model?: string;
  deadlineAt?: number;
}

/** A lease that has ended: when it was granted and released (workflow time), for measuring how slots are used. */
export interface LeaseInterval {
  workflowId: string;
  leaseId: string;
  grantedAt: number;
  releasedAt: number;
}

export interface SemaphoreState {
  limit: number;
  holders: SemaphoreHolder[];
  queue: SemaphoreWaiter[];
  /** Grants made since the first run; survives continue-as-new. */
  totalGrants: number;
  /** Grants made in this run: continue-as-new is taken every `continueAsNewAfterGrants`. */
  grantsThisRun: number;
  /** The latest ended leases, newest last, at most RECENT_LEASES (absent in states of the first version). */
  recent?: LeaseInterval[];
  /** Each waiting or holding user's service so far (grants over weight), for fair share. */
  service?: Record<string, number>;
  /** Idle warm instances per checkpoint, as the worker last reported them. */
  warm?: Record<string, number>;
  /** A low waiter counts as normal after this many seconds of waiting; set by the `policy` signal (0 or absent: never). */
  priorityAgingS?: number;
  /** The circuit breakers' settings, set by the `policy` signal (absent: the defaults of workflows/breaker.ts). */
  breaker?: BreakerPolicy;
  /** Each checkpoint with recent instance failures or in quarantine; a healthy checkpoint has no entry. */
  breakers?: Record<string, CheckpointBreaker>;
}

/** When a checkpoint is quarantined and for how long (SDFLOW_BREAKER_*). */
export interface BreakerPolicy {
  /** Instance failures in a row, within `windowS`, that open the breaker. */
  failures: number;
  windowS: number;
  /** How long an open breaker holds its checkpoint's tasks back before one probe is let through. */
  cooldownS: number;
}

/** One checkpoint's circuit breaker (workflow time, epoch ms). */
export interface CheckpointBreaker {
  /** The instance failures since its last success, within the window, oldest first. */
  failures: number[];
  /** Set while the checkpoint is quarantined (before `probeAt`) or probing (from `probeAt`). */
  open?: {
    reason: string;
    since: number;
    /** From then on, one waiter at a time is granted as the probe. */
    probeAt: number;
    /** The lease granted as the probe; another is granted only once it has been released. */
    probe?: LeaseRef;
  };
}

/** How many ended leases the semaphore keeps for `recent`. */
export const RECENT_LEASES = 512;

export function emptySemaphoreState(limit: number): SemaphoreState {
  return { limit, holders: [], queue: [], totalGrants: 0, grantsThisRun: 0, recent: [] };
}

export interface SemaphoreInput {
  state: SemaphoreState;
  leaseCheckS: number;
  continueAsNewAfterGrants: number;
  /** A low waiter counts as normal after this many seconds (absent in the first versions' inputs: no aging). */
  priorityAgingS?: number;
  /** The circuit breakers' settings (absent in older inputs: the `policy` signal brings them). */
  breaker?: BreakerPolicy;
}
