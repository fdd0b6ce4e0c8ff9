import { describe, expect, it } from 'vitest';
import { estimateStartMs, learnTimings, slotTurnoverMs, taskEta, workUnits } from '../../src/api/eta.js';
import type { SemaphoreStateOf } from '../../src/api/queue-positions.js';
import type { MetaStore } from '../../src/platform/meta-store/port.js';
import type { TaskRecord } from '../../src/records.js';
import { emptySemaphoreState, type SemaphoreState } from '../../src/types.js';

// The estimate of when a task starts and ends: its place in the grant order, the slots, and learned timings.

let n = 0;
const done = (model: string, params: object, timings: TaskRecord['timings'], finishedAt = new Date()): TaskRecord => ({
  taskId: `t${++n}`,
  user: 'u',
  kind: 'txt2img',
  model,
  status: 'succeeded',
  params: { ...params },
  images: [],
  timings,
  createdAt: finishedAt.toISOString(),
  updatedAt: finishedAt.toISOString(),
  finishedAt: finishedAt.toISOString(),
});

describe('workUnits', () => {
  it('is steps × megapixels × images', () => {
    expect(workUnits({ steps: 20, width: 1024, height: 1024 })).toBe(20);
    expect(workUnits({ steps: 10, width: 512, height: 512, batch_size: 2, n_iter: 3 })).toBe(15);
    expect(workUnits({})).toBe(5); // A1111's defaults: 20 steps at 512×512
  });
});

const HOUR_MS = 3_600_000;

describe('learnTimings', () => {
  it('learns per checkpoint: warm and cold starts apart, sampling per unit, and the slot time of all', () => {
    const learned = learnTimings(
      [
        done(
          'a',
          { steps: 20, width: 1024, height: 1024 },
          { startMs: 100, samplingMs: 2000, coldStart: false, checkpointLoad: false },
        ),
        done(
          'a',
          { steps: 40, width: 1024, height: 1024 },
          { startMs: 120, samplingMs: 4000, coldStart: false, checkpointLoad: false },
        ),
        done(
          'a',
          { steps: 20, width: 1024, height: 1024 },
          { startMs: 6000, samplingMs: 2000, coldStart: true, checkpointLoad: true },
        ),
        done(
          'b',
          { steps: 10, width: 512, height: 512 },
          { startMs: 50, samplingMs: 250, coldStart: false, checkpointLoad: false },
        ),
      ],
      HOUR_MS,
    );
    // Warm starts by their mean, cold ones by their median; without start times, by each task's cold-start flag.
    expect(learned.get('a')).toMatchObject({ warmStartMs: 110, coldStartMs: 6000, samplingMsPerUnit: 100 });
    expect(learned.get('b')?.samplingMsPerUnit).toBe(100);
    // The mean slot time: (2100 + 4120 + 8000 + 300) / 4.
    expect(learned.get('')?.slotMs).toBe(3630);
  });

  it('counts as warm a task that started while another of its checkpoint had finished within the keep-alive', () => {
    const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s));
    const task = (startS: number, finishS: number, startMs: number, coldStart: boolean) => ({
      ...done('w', { steps: 10 }, { startMs, samplingMs: 1000, coldStart, checkpointLoad: false }, at(finishS)),
      startedAt: at(startS).toISOString(),
    });
    const learned = learnTimings(
      [
        // The first of its checkpoint: cold.
        task(0, 8, 7000, true),
        // Waited 2 s for the busy instance (flagged cold), while the checkpoint was warm: a warm start.
        task(10, 13, 2000, true),
        task(13, 14, 200, false),
        // Its checkpoint's last task finished 30 s before: past a 20 s keep-alive, cold.
        task(44, 52, 6000, true),
      ],
      20_000,
    ).get('w')!;
    expect(learned.warmStartMs).toBe(1100);
    expect(learned.coldStartMs).toBe(6000);
  });

  it('stands in the simulator’s A10 timings for a checkpoint with no history', () => {
    const prior = learnTimings([], HOUR_MS).get('')!;
    // 65 ms a step at 512×512.
    expect(prior.samplingMsPerUnit * workUnits({ steps: 20 })).toBe(1300);
    expect(prior.lastFinishedAt).toBe(0);
  });
});

describe('estimateStartMs', () => {
  const state = (limit: number, holders: number) => ({ limit, holders: Array(holders).fill({}) });
  it('is 0 while a slot is free for the task', () => {
    expect(estimateStartMs(1, state(4, 2), 1000)).toBe(0);
    expect(estimateStartMs(2, state(4, 2), 1000)).toBe(0);
  });
  it('adds a slot turnover per wave ahead, the holders half done', () => {
    expect(estimateStartMs(3, state(4, 2), 1000)).toBe(500);
    expect(estimateStartMs(6, state(4, 2), 1000)).toBe(500);
    expect(estimateStartMs(7, state(4, 2), 1000)).toBe(1500);
    expect(estimateStartMs(3, state(1, 1), 1000)).toBe(2500);
  });
});

describe('slotTurnoverMs', () => {
  const lease = (grantedAt: number, releasedAt: number) => ({ workflowId: 'w', leaseId: 'l', grantedAt, releasedAt });
  it("is the mean hold of the semaphore's latest ended leases, once it has a few", () => {
    expect(slotTurnoverMs({ recent: [lease(0, 1000), lease(0, 3000)] })).toBeUndefined();
    const recent = [lease(0, 1000), lease(0, 1000), lease(0, 1000), lease(0, 1000), lease(0, 6000)];
    expect(slotTurnoverMs({ recent })).toBe(2000);
    // Only the latest 100 count.
    expect(slotTurnoverMs({ recent: [...Array(50).fill(lease(0, 9000)), ...Array(100).fill(lease(0, 500))] })).toBe(
      500,
    );
  });
});

/** A reader that always has `state`. */
const stateOf = (state: SemaphoreState | undefined): SemaphoreStateOf =>
  Object.assign(async () => state, { latest: async () => state });

describe('taskEta', () => {
  const history = [
    done(
      'm',
      { steps: 10, width: 1024, height: 1024 },
      { startMs: 200, samplingMs: 1000, coldStart: false, checkpointLoad: false },
    ),
  ];
  const meta = { listTasks: async () => ({ items: history }) } as unknown as MetaStore;
  const waiter = (id: string, user: string, requestedAt: number) => ({
    workflowId: id,
    runId: 'r',
    leaseId: 'l',
    user,
    requestedAt,
  });
  const task = (taskId: string, steps: number) => ({
    taskId,
    user: 'new',
    model: 'm',
    params: { steps, width: 1024, height: 1024 },
    createdAt: new Date().toISOString(),
  });

  it('places a task not queued yet as the grant order will, and adds its own run', async () => {
    const s: SemaphoreState = {
      ...emptySemaphoreState(1),
      holders: [{ workflowId: 'h', runId: 'r', leaseId: 'l', grantedAt: 0, user: 'old' }],
      queue: [waiter('q1', 'old', 1), waiter('q2', 'old', 2)],
      service: { old: 5 },
    };
    const eta = taskEta({ meta, semaphoreState: stateOf(s), keepAliveS: 3600, maxAgeMs: 0 });
    // A newcomer starts level with `old`, after q1 (earlier): position 2 behind a full cap of 1.
    const e = await eta.estimate(task('new1', 10));
    expect(e?.estimatedStartS).toBe(1.8); // 2 waves of 1.2 s, the holder half done
    expect(e?.estimatedFinishS).toBe(3.0); // + a warm start (0.2 s) and 10 steps at 1 MP (1 s)
    // In the high lane it goes first.
    expect((await eta.estimate(task('new2', 10), { lane: 'high', user: 'new' }))?.estimatedStartS).toBe(0.6);
  });

  it('places a task in one pass behind a long queue: round robin with the lane’s other users', async () => {
    const s: SemaphoreState = {
      ...emptySemaphoreState(1),
      holders: [{ workflowId: 'h', runId: 'r', leaseId: 'l', grantedAt: 0, user: 'old' }],
      queue: Array.from({ length: 80 }, (_, i) => waiter(`q${i}`, 'old', i + 1)),
      service: { old: 5 },
    };
    const eta = taskEta({ meta, semaphoreState: stateOf(s), keepAliveS: 3600, maxAgeMs: 0 });
    // Behind one of the 80 (the lane's other user is granted once first), as the exact order has it.
    expect((await eta.estimate(task('new3', 10)))?.estimatedStartS).toBe(1.8);
    expect((await eta.estimate(task('new4', 10), { lane: 'high', user: 'new' }))?.estimatedStartS).toBe(0.6);
    // A low task waits for all 80.
    expect((await eta.estimate(task('new5', 10), { lane: 'low', user: 'new' }))?.estimatedStartS).toBe(96.6);
  });

  it("turns the slots over as fast as the semaphore's latest leases were held", async () => {
    const s: SemaphoreState = {
      ...emptySemaphoreState(1),
      holders: [{ workflowId: 'h', runId: 'r', leaseId: 'l', grantedAt: 0, user: 'old' }],
      queue: [waiter('q1', 'old', 1)],
      service: { old: 5 },
      recent: Array.from({ length: 10 }, (_, i) => ({
        workflowId: `d${i}`,
        leaseId: 'l',
        grantedAt: 0,
        releasedAt: 3000,
      })),
    };
    const eta = taskEta({ meta, semaphoreState: stateOf(s), keepAliveS: 3600, maxAgeMs: 0 });
    // Position 2 behind a full cap of 1: 2 waves of 3 s, the holder half done (the history's 1.2 s slot not used).
    expect((await eta.estimate(task('new6', 10)))?.estimatedStartS).toBe(4.5);
  });

  it('answers nothing when the semaphore does not', async () => {
    const eta = taskEta({ meta, semaphoreState: stateOf(undefined), keepAliveS: 3600, maxAgeMs: 0 });
    expect(await eta.estimate(task('x', 10))).toBeUndefined();
  });
});
