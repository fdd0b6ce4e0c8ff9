import type { Client } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { invokeTimer } from '../../src/activities/timings.js';
import { apiMetrics } from '../../src/api/metrics.js';
import type { MetaStore } from '../../src/platform/meta-store/port.js';
import { LOADING_CHECKPOINT_JOB, type ProgressEvent, startingEvent } from '../../src/protocol/events.js';
import type { TaskRecord } from '../../src/records.js';
import { EMPTY_SD_STATE, type TaskPhase } from '../../src/types.js';

// Where the task metrics come from: runTask times its GPU part from the invoke's events, and an API replica observes
// each task that finished while it runs once, from the final records it reads.

const event = (phase: TaskPhase): ProgressEvent => ({
  type: 'progress',
  phase,
  progress: 0.5,
  etaRelative: 1,
  state: EMPTY_SD_STATE,
  currentImage: null,
});

describe('invokeTimer', () => {
  it('times the start and the sampling, and tells an instance wait from a checkpoint load', () => {
    const timer = invokeTimer(1000);
    timer.see(startingEvent(), 1100);
    timer.see(startingEvent(LOADING_CHECKPOINT_JOB), 1500);
    timer.see(event('sampling'), 3000);
    timer.see(event('sampling'), 4000);
    timer.see(event('uploading'), 7000);
    expect(timer.timings(7500)).toEqual({ startMs: 2000, samplingMs: 4000, coldStart: true, checkpointLoad: true });
  });

  it('reports a warm invoke as neither', () => {
    const timer = invokeTimer(0);
    timer.see(event('sampling'), 100);
    timer.see(event('uploading'), 900);
    expect(timer.timings(1000)).toEqual({ startMs: 100, samplingMs: 800, coldStart: false, checkpointLoad: false });
  });
});

describe('apiMetrics', () => {
  const metrics = () =>
    apiMetrics({
      meta: { countTasks: async () => [{ status: 'succeeded', model: 'm', count: 7 }] } as unknown as MetaStore,
      temporal: {
        connection: { withDeadline: async () => Promise.reject(new Error('no Temporal here')) },
      } as unknown as Client,
      semaphoreId: 's',
      maxAgeMs: 0,
      queryTimeoutMs: 100,
      passthroughPrefixes: ['/sdapi/v1/'],
    });
  const at = (offsetS: number) => new Date(Date.now() + offsetS * 1000).toISOString();
  const task = (taskId: string, extra: Partial<TaskRecord> = {}): TaskRecord => ({
    taskId,
    user: 'u',
    kind: 'txt2img',
    model: 'm',
    status: 'succeeded',
    params: {},
    images: [],
    createdAt: at(-10),
    updatedAt: at(1),
    startedAt: at(-8),
    finishedAt: at(1),
    timings: { startMs: 3000, samplingMs: 4000, coldStart: true, checkpointLoad: false },
    ...extra,
  });
  const value = (text: string, line: string) =>
    Number(
      text
        .split('\n')
        .find((l) => l.startsWith(line))
        ?.split(' ')[1],
    );

  it('observes each task that finished while it runs once, from its record', async () => {
    const m = metrics();
    m.observeTask(task('a'));
    m.observeTask(task('a'));
    m.observeTask(task('b', { status: 'failed', timings: undefined, startedAt: undefined }));
    m.observeTask(task('before-start', { finishedAt: at(-60) }));
    m.observeTask(task('open', { status: 'running', finishedAt: undefined }));
    m.observeTask(task('deleted', { status: 'deleted' }));
    const text = (await m.scrape()).body;
    expect(value(text, 'sdflow_end_to_end_seconds_count{model="m",status="succeeded"}')).toBe(1);
    expect(value(text, 'sdflow_end_to_end_seconds_count{model="m",status="failed"}')).toBe(1);
    expect(value(text, 'sdflow_queue_wait_seconds_count{model="m"}')).toBe(1);
    expect(value(text, 'sdflow_queue_wait_seconds_sum{model="m"}')).toBeCloseTo(2, 1);
    expect(value(text, 'sdflow_cold_start_seconds_sum{model="m"}')).toBe(3);
    expect(value(text, 'sdflow_sampling_seconds_sum{model="m"}')).toBe(4);
    expect(value(text, 'sdflow_cold_starts_total{model="m"}')).toBe(1);
    expect(value(text, 'sdflow_tasks{status="succeeded",model="m"}')).toBe(7);
    // The semaphore did not answer: no sample rather than a wrong one.
    expect(text).not.toMatch(/^sdflow_slots_limit /m);
  });

  it('observes the records a wrapped meta store reads', async () => {
    const m = metrics();
    const meta = m.observing({
      getTask: async (taskId: string) => task(taskId),
      listTasks: async () => ({ items: [task('l1'), task('l2')] }),
    } as unknown as MetaStore);
    await meta.getTask('g1');
    await meta.listTasks({});
    await meta.getTask('g1');
    const text = (await m.scrape()).body;
    expect(value(text, 'sdflow_end_to_end_seconds_count{model="m",status="succeeded"}')).toBe(3);
  });
});
