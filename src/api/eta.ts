import type { MetaStore } from '../platform/meta-store/port.js';
import type { TaskRecord } from '../records.js';
import type { SdParams, SemaphoreState, SemaphoreWaiter, SlotOwner } from '../types.js';
import { admitUser, effectiveLane, grantOrder, grantPolicyOf } from '../workflows/grant-order.js';
import { grantPositions, type SemaphoreStateOf } from './queue-positions.js';

// When a task will start and finish, estimated from what the deployment has seen (docs/ARCHITECTURE.md, "The cap"):
// its place in the semaphore's grant order, the slots free and held and how long the semaphore's latest leases held
// theirs, and timings learned from the tasks that succeeded lately (per checkpoint: a start while it was warm, a cold
// start, sampling time per step and megapixel). docs/BENCHMARKS.md (eta) measures the estimates' error.

export interface TaskEstimate {
  /** Seconds from now until the task gets its slot. */
  estimatedStartS: number;
  /** Seconds from now until it ends. */
  estimatedFinishS: number;
}

/** What the estimate needs of a task: its checkpoint and request, who it runs for, and when it was submitted. */
export type EstimatedTask = Pick<TaskRecord, 'taskId' | 'user' | 'model' | 'params' | 'createdAt'>;

export interface TaskEta {
  /**
   * The estimate of a waiting task (from its place in the queue), or of one about to queue (`owner` gives its lane
   * and share). Undefined when the semaphore does not answer.
   */
  estimate(task: EstimatedTask, owner?: SlotOwner): Promise<TaskEstimate | undefined>;
}

/** Learned timings of one checkpoint (or of every one, as the fallback). */
interface Timings {
  /**
   * From the grant to SD starting, for a task that started while its checkpoint was warm: the mean, as it mixes
   * tasks that found an idle instance with tasks that waited for a busy one (their slot held meanwhile).
   */
  warmStartMs: number;
  /** The same for a task that started while its checkpoint was cold: the median (a process start, a load). */
  coldStartMs: number;
  /** Sampling time per step per megapixel per image. */
  samplingMsPerUnit: number;
  /** Start plus sampling of recent tasks, the mean: how long a slot is held, when the semaphore's leases do not say. */
  slotMs: number;
  /** When a task of it last finished (epoch ms): a checkpoint used within the keep-alive has a warm instance. */
  lastFinishedAt: number;
}

/**
 * Until a checkpoint has history: the simulator's A10 timings (65 ms a step at 512×512, 100 ms of VAE, a 5 s
 * checkpoint load plus a process start), which real GPUs replace as soon as tasks succeed.
 */
const PRIOR: Omit<Timings, 'lastFinishedAt'> = {
  warmStartMs: 150,
  coldStartMs: 7000,
  samplingMsPerUnit: 65 / 0.25,
  slotMs: 1600,
};

/** How many recent successes the timings are learned from. */
const HISTORY = 200;
/**
 * Up to this many waiters, a task not queued yet is placed exactly (the grant order run with it, quadratic in the
 * queue); past it, in one pass: behind every waiter of a better lane, and round robin with the other users of its
 * own (weights aside). Every async submit asks, so the exact way would cost the API dearly under a backlog.
 */
const EXACT_PLACEMENT = 50;
/** How many of the semaphore's latest ended leases say how long a slot is held, and the fewest that do. */
const TURNOVER_LEASES = 100;
const MIN_TURNOVER_LEASES = 5;

const num = (value: unknown, fallback: number) => (typeof value === 'number' && value > 0 ? value : fallback);

/** Steps × megapixels × images of a request: the unit sampling time scales with. */
export function workUnits(params: SdParams): number {
  const megapixels = (num(params.width, 512) * num(params.height, 512)) / 1_048_576;
  const images = num(params.batch_size, 1) * num(params.n_iter, 1);
  return num(params.steps, 20) * megapixels * images;
}

const median = (values: number[], fallback: number) => {
  if (values.length === 0) return fallback;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
};

const mean = (values: number[], fallback: number) =>
  values.length === 0 ? fallback : values.reduce((sum, v) => sum + v, 0) / values.length;

const timeOf = (iso: string | undefined) => (iso ? Date.parse(iso) || undefined : undefined);

/**
 * Whether each task of one checkpoint started while the checkpoint was warm, as the estimate judges it: another of
 * its tasks had finished within the keep-alive before. A task without a start time goes by its own cold-start flag.
 */
function startedWarm(rs: readonly TaskRecord[], keepAliveMs: number): boolean[] {
  const finishes = rs.flatMap((r) => timeOf(r.finishedAt) ?? []).sort((a, b) => a - b);
  return rs.map((r) => {
    const start = timeOf(r.startedAt);
    if (start === undefined) return !r.timings!.coldStart;
    let latest: number | undefined;
    for (const f of finishes) {
      if (f >= start) break;
      latest = f;
    }
    return latest !== undefined && start - latest < keepAliveMs;
  });
}

/** Timings per checkpoint (and `''` for all) from succeeded tasks with their GPU timings. */
export function learnTimings(records: readonly TaskRecord[], keepAliveMs: number): Map<string, Timings> {
  const byModel = new Map<string, TaskRecord[]>([['', []]]);
  for (const r of records) {
    if (r.status !== 'succeeded' || !r.timings) continue;
    byModel.get('')!.push(r);
    byModel.set(r.model, [...(byModel.get(r.model) ?? []), r]);
  }
  // Warm or cold is per checkpoint, so it is judged within each checkpoint's own tasks.
  const warmAtStart = new Map<TaskRecord, boolean>();
  for (const [model, rs] of byModel) {
    if (model === '') continue;
    const warm = startedWarm(rs, keepAliveMs);
    for (const [i, r] of rs.entries()) warmAtStart.set(r, warm[i]);
  }
  const learned = new Map<string, Timings>();
  for (const [model, rs] of byModel) {
    const starts = (warm: boolean) => rs.filter((r) => warmAtStart.get(r) === warm).map((r) => r.timings!.startMs);
    const perUnit = rs.map((r) => r.timings!.samplingMs / Math.max(workUnits(r.params), 1e-6));
    learned.set(model, {
      warmStartMs: mean(starts(true), PRIOR.warmStartMs),
      coldStartMs: median(starts(false), PRIOR.coldStartMs),
      samplingMsPerUnit: median(perUnit, PRIOR.samplingMsPerUnit),
      slotMs: mean(
        rs.map((r) => r.timings!.startMs + r.timings!.samplingMs),
        PRIOR.slotMs,
      ),
      lastFinishedAt: Math.max(0, ...rs.map((r) => timeOf(r.finishedAt) ?? 0)),
    });
  }
  return learned;
}

/** How long a slot is held: the mean of the semaphore's latest ended leases, or undefined when it has too few. */
export function slotTurnoverMs(state: Pick<SemaphoreState, 'recent'>): number | undefined {
  const leases = (state.recent ?? []).slice(-TURNOVER_LEASES);
  if (leases.length < MIN_TURNOVER_LEASES) return undefined;
  return mean(
    leases.map((l) => Math.max(0, l.releasedAt - l.grantedAt)),
    0,
  );
}

/**
 * When a task at `position` (1 = next) in the grant order starts: at once if a slot is free for it, else once the
 * slots have turned over enough times, the holders being half done on average.
 */
export function estimateStartMs(position: number, state: Pick<SemaphoreState, 'limit' | 'holders'>, slotMs: number) {
  const free = Math.max(0, state.limit - state.holders.length);
  if (position <= free) return 0;
  const waves = Math.ceil((position - free) / Math.max(1, state.limit));
  return Math.max(0, waves * slotMs - slotMs / 2);
}

export function taskEta(deps: {
  meta: MetaStore;
  semaphoreState: SemaphoreStateOf;
  keepAliveS: number;
  /** How long learned timings are reused before the history is read again. */
  maxAgeMs: number;
}): TaskEta {
  let cached: { at: number; timings: Promise<Map<string, Timings>> } | undefined;
  const timings = () => {
    const now = Date.now();
    if (!cached || now - cached.at >= deps.maxAgeMs) {
      const read = deps.meta
        .listTasks({ status: ['succeeded'], limit: HISTORY })
        .then((page) => learnTimings(page.items, deps.keepAliveS * 1000))
        .catch(() => learnTimings([], deps.keepAliveS * 1000));
      cached = { at: now, timings: read };
    }
    return cached.timings;
  };

  const positionsIn = grantPositions();

  /** Where a task not queued yet will be in the grant order. */
  const placeNew = (state: SemaphoreState, waiter: SemaphoreWaiter, now: number): number => {
    if (state.queue.length > EXACT_PLACEMENT) {
      const policy = grantPolicyOf(state);
      const lane = effectiveLane(waiter, now, policy);
      const user = waiter.user ?? '';
      let ahead = 0;
      const inLane = new Map<string, number>();
      for (const w of state.queue) {
        const l = effectiveLane(w, now, policy);
        if (l < lane) ahead++;
        else if (l === lane) inLane.set(w.user ?? '', (inLane.get(w.user ?? '') ?? 0) + 1);
      }
      const own = inLane.get(user) ?? 0;
      // Each other user of the lane is granted about once per task of this user's ahead of it, and once more.
      for (const [other, count] of inLane) ahead += other === user ? count : Math.min(count, own + 1);
      return ahead + 1;
    }
    // Admitted as the semaphore admits an arrival: its user's share starts level with the others'.
    const placed: SemaphoreState = { ...state };
    admitUser(placed, waiter.user);
    placed.queue = [...state.queue, waiter];
    return grantOrder(placed, now, grantPolicyOf(state)).findIndex((w) => w.workflowId === waiter.workflowId) + 1;
  };

  return {
    async estimate(task, owner) {
      const state = await deps.semaphoreState.latest();
      if (!state) return undefined;
      const learned = await timings();
      const all = learned.get('')!;
      const mine = learned.get(task.model) ?? { ...all, lastFinishedAt: 0 };
      const now = Date.now();
      let position = positionsIn(state).get(task.taskId);
      if (position === undefined) {
        // Not at the semaphore yet: placed as it will be, with its lane and share.
        const waiter: SemaphoreWaiter = {
          workflowId: task.taskId,
          runId: '',
          leaseId: '',
          requestedAt: Date.parse(task.createdAt) || now,
          user: task.user,
          model: task.model,
          ...owner,
        };
        position = placeNew(state, waiter, now);
      }
      const startMs = estimateStartMs(position, state, slotTurnoverMs(state) ?? all.slotMs);
      const warm = now - mine.lastFinishedAt < deps.keepAliveS * 1000;
      const runMs = (warm ? mine.warmStartMs : mine.coldStartMs) + mine.samplingMsPerUnit * workUnits(task.params);
      return {
        estimatedStartS: Math.round(startMs / 100) / 10,
        estimatedFinishS: Math.round((startMs + runMs) / 100) / 10,
      };
    },
  };
}
