import { describe, expect, it } from 'vitest';
import { mostBetween } from '../../src/cli/bench/fairness.js';
import { etaResult, etaSamples, type Job, poissonArrivals } from '../../src/cli/bench/multimodel.js';
import { Owned } from '../../src/cli/bench/owned.js';
import { type BenchReport, SCENARIOS } from '../../src/cli/bench/report.js';
import { burstFigures } from '../../src/cli/bench/slots.js';
import { percentile, tally } from '../../src/cli/bench/stats.js';
import { formatReport } from '../../src/cli/bench/table.js';

// The benchmark's arithmetic, on made-up records: the figures come from these functions, so they are checked here
// on cases whose answers are known; the run itself is checked for consistency in test/integration/bench.test.ts.

const lease = (workflowId: string, grantedAt: number, releasedAt: number) => ({
  workflowId,
  leaseId: '1',
  grantedAt,
  releasedAt,
});

describe('burstFigures', () => {
  it('sums slot-held and GPU-busy time within each burst, and pairs each handoff with the next job start', () => {
    // Cap 2, a burst of 4: t1 and t2 start at once, t3 and t4 wait for their slots.
    const leases = [lease('t1', 0, 100), lease('t2', 0, 120), lease('t3', 100, 220), lease('t4', 120, 240)];
    const busy = [
      { start: 10, end: 90 },
      { start: 15, end: 110 },
      { start: 130, end: 210 },
      { start: 135, end: 230 },
      // Outside the burst's window: not counted.
      { start: 500, end: 600 },
    ];
    const f = burstFigures([{ taskIds: ['t1', 't2', 't3', 't4'], ms: 240 }], leases, busy, 2);
    expect(f.leases).toBe(4);
    expect(f.heldMs).toBe(100 + 120 + 120 + 120);
    expect(f.busyMs).toBe(80 + 95 + 80 + 95);
    // n − c = 2 releases hand a slot over: at 100 (→ the start at 130) and at 120 (→ the start at 135).
    expect(f.gaps).toEqual([30, 15]);
  });

  it("ignores other tasks' leases, and a burst no larger than the cap has no handoff", () => {
    const f = burstFigures([{ taskIds: ['a', 'b'], ms: 50 }], [lease('a', 0, 50), lease('x', 0, 50)], [], 2);
    expect(f.leases).toBe(1);
    expect(f.gaps).toEqual([]);
  });
});

describe('poissonArrivals', () => {
  it('is the same for the same seed, within the duration, at about the rate, over every checkpoint', () => {
    const models = ['a', 'b', 'c', 'd'];
    const arrivals = poissonArrivals(2.5, 400, models);
    expect(poissonArrivals(2.5, 400, models)).toEqual(arrivals);
    expect(arrivals.every((a, i) => a.at < 400_000 && (i === 0 || a.at > arrivals[i - 1].at))).toBe(true);
    expect(arrivals.length).toBeGreaterThan(900);
    expect(arrivals.length).toBeLessThan(1100);
    for (const m of models) expect(arrivals.filter((a) => a.model === m).length).toBeGreaterThan(200);
  });
});

describe('eta', () => {
  const iso = (ms: number) => new Date(ms).toISOString();
  const job = (taskId: string, estimatedStartS: number, estimatedFinishS: number): Job => ({
    taskId,
    submittedAt: 1_000_000,
    answeredAt: 1_000_100,
    estimate: { estimatedStartS, estimatedFinishS },
  });
  const row = (taskId: string, startMs: number, finishMs: number, status = 'succeeded') => ({
    taskId,
    user: 'u',
    kind: 'txt2img',
    model: 'm',
    status: status as 'succeeded',
    images: [],
    createdAt: iso(1_000_000),
    updatedAt: iso(1_000_000 + finishMs),
    startedAt: iso(1_000_000 + startMs),
    finishedAt: iso(1_000_000 + finishMs),
  });

  it('compares each estimate, counted from its answer, with the row’s start and finish from the submit', () => {
    const rows = new Map([
      ['a', row('a', 2000, 4000)],
      ['b', row('b', 1000, 2000)],
      ['c', row('c', 1000, 2000, 'failed')],
      // Started after the backlog was cancelled: left out.
      ['d', row('d', 9000, 10_000)],
    ]);
    const jobs = [job('a', 1.9, 4.9), job('b', 0.9, 1.4), job('c', 1, 2), job('d', 1, 2), { ...job('e', 1, 2) }];
    const samples = etaSamples(jobs, rows, 1_005_000);
    expect(samples).toEqual([
      { estimatedStartMs: 2000, actualStartMs: 2000, estimatedFinishMs: 5000, actualFinishMs: 4000 },
      { estimatedStartMs: 1000, actualStartMs: 1000, estimatedFinishMs: 1500, actualFinishMs: 2000 },
    ]);
    const r = etaResult(samples);
    // |5000 − 4000| / 4000 and |1500 − 2000| / 2000: 0.25 both.
    expect(r).toMatchObject({ finish_error_p50: 0.25, finish_error_p95: 0.25, start_error_p50_s: 0, tasks: 2 });
    // Nearest rank: the lower of two.
    expect(r.finish_bias_p50_s).toBe(-0.5);
    expect(r.actual_finish_p50_s).toBe(2);
  });

  it('refuses to report on no estimate', () => {
    expect(() => etaResult([])).toThrow(/no task/);
  });
});

describe('mostBetween', () => {
  it('counts the most of the others between two consecutive of mine', () => {
    expect(mostBetween([10, 40, 20], [11, 12, 25, 30, 31, 50])).toBe(3);
    expect(mostBetween([10], [11, 12])).toBe(0);
  });
});

describe('formatReport', () => {
  const report = {
    started_at: '2026-12-06T00:00:00.000Z',
    wall_s: 60,
    mode: 'own-stacks',
    quick: true,
    machine: {
      cores: 2,
      cpu: 'cpu',
      memory_mb: 2048,
      node: 'v20',
      platform: 'linux x64',
      load_avg_start: 1,
      load_avg_end: 2,
    },
    settings: {},
    ...Object.fromEntries(SCENARIOS.map((name) => [name, { skipped: 'not selected (--scenarios)' }])),
    fairness: {
      second_user_wait_p50_ms: 994,
      second_user_wait_p95_ms: 1321,
      fifo_wait_p50_ms: 4773,
      fifo_wait_p95_ms: 4915,
      first_user_starts_between_max: 3,
      first_user_tasks: 60,
      second_user_tasks: 5,
      first_user_waiting_at_second_submit: 55,
      cap: 2,
      errors: 0,
      error_messages: [],
    },
    eta: {
      finish_error_p50: 0.151,
      finish_error_p95: 0.768,
      finish_bias_p50_s: 1.21,
      start_error_p50_s: 1.53,
      start_error_p95_s: 4.31,
      start_bias_p50_s: -1.53,
      actual_start_p50_s: 11.36,
      actual_finish_p50_s: 13.37,
      tasks: 117,
      without_estimate: 0,
      duration_s: 60,
      offered_per_s: 2.5,
    },
  } as unknown as BenchReport;

  it('prints the fairness and eta rows with their baselines and targets, and lists the skipped', () => {
    const lines = formatReport(report).split('\n');
    const line = (measure: string) => lines.find((l) => l.includes(measure)) ?? '';
    expect(line('second user wait p50')).toMatch(/^fairness\s+second user wait p50\s+994 ms\s+FIFO 4773 ms\s*$/);
    // At most 2 of the flood's starts between two of the second user's: 3 misses it.
    expect(line('flood starts between two')).toMatch(/\s3\s+cap 2\s+≤ 2\s+NO$/);
    expect(line('finish estimate error p50')).toMatch(
      /^eta\s+finish estimate error p50\s+15\.1%\s+actual 13\.37 s\s+≤ 20%\s+yes$/,
    );
    expect(line('finish estimate bias p50')).toMatch(/\+1\.21 s/);
    expect(line('start estimate bias p50')).toMatch(/−1\.53 s/);
    expect(lines).toContain('  overhead: not selected (--scenarios)');
    expect(lines.some((l) => l.includes('fairness: not selected'))).toBe(false);
  });
});

describe('statistics', () => {
  it('nearest-rank percentiles are measured samples, in any order', () => {
    expect(percentile([4, 1, 3, 2], 50)).toBe(2);
    expect(percentile([1, 2, 3, 4], 99)).toBe(4);
    expect(percentile([5], 90)).toBe(5);
    expect(percentile([], 50)).toBeNaN();
  });

  it('tally counts distinct messages, the most frequent first', () => {
    expect(tally(['x', 'y', 'y', 'z', 'y', 'x', 'w'], 2)).toEqual(['3 × y', '2 × x']);
  });
});

describe('Owned', () => {
  it('stops the latest started first, each once, and goes on past a failure', async () => {
    const owned = new Owned();
    const order: string[] = [];
    owned.add('a', async () => {
      order.push('a');
    });
    const stopB = owned.add('b', async () => {
      order.push('b');
    });
    owned.add('c', async () => {
      throw new Error('c failed');
    });
    await stopB();
    const failed: string[] = [];
    await owned.stopAll((name) => failed.push(name));
    await owned.stopAll(() => undefined);
    expect(order).toEqual(['b', 'a']);
    expect(failed).toEqual(['c']);
  });
});
