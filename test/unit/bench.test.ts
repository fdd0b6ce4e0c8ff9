import { describe, expect, it } from 'vitest';
import {
  accountBetween,
  billedS,
  burstyArrivals,
  IDLE_TO_ACTIVE,
  SDFLOW_COST_SETTINGS,
  samplingS,
  sideBill,
  tailIdleS,
} from '../../src/cli/bench/cost.js';
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

describe('cost', () => {
  it("bills starting and active seconds in full and idle ones at the default row's ratio", () => {
    // The default row: USD 0.00016 idle against 0.000672 active.
    expect(IDLE_TO_ACTIVE).toBeCloseTo(0.16 / 0.672, 9);
    expect(billedS({ coldStartS: 5, activeS: 14, idleS: 40 }, 0.25)).toBe(29);
    const between = accountBetween(
      { coldStartS: 1, activeS: 10, idleS: 100 },
      { coldStartS: 7, activeS: 24, idleS: 120 },
    );
    expect(between).toEqual({ coldStartS: 6, activeS: 14, idleS: 20 });
  });

  it('gives billed seconds per image and their ratio to the sampling time', () => {
    // 10 images of 1.4 s: 14 s of sampling; billed 6 + 15 + 20 × 0.25 = 26 s, 2.6 s an image, 1.857×.
    const bill = sideBill({ coldStartS: 6, activeS: 15, idleS: 20 }, 10, 1.4, 0.25);
    expect(bill).toEqual({
      billed_s: 26,
      billed_per_image_s: 2.6,
      ratio: 1.857,
      cold_start_s: 6,
      active_s: 15,
      idle_s: 20,
    });
  });

  it("takes the sampling time from the simulator's timings: steps scaled by pixels, and the VAE", () => {
    expect(samplingS({ steps: 20, width: 512, height: 512 }, { stepMs: 65, vaeMs: 100 })).toBeCloseTo(1.4, 9);
    expect(samplingS({ steps: 10, width: 1024, height: 512 }, { stepMs: 65, vaeMs: 100 })).toBeCloseTo(1.4, 9);
  });

  it('sends bursts of jobs for distinct checkpoints, the same for the same seed, each after the previous one’s work', () => {
    const models = ['a', 'b', 'c', 'd'];
    const o = { bursts: 8, jobsPerCheckpoint: 5, gapS: 10, samplingS: 1.4, models };
    const arrivals = burstyArrivals(o);
    expect(burstyArrivals(o)).toEqual(arrivals);
    expect(burstyArrivals({ ...o, seed: 99 })).not.toEqual(arrivals);
    expect(arrivals[0].at).toBe(0);
    expect(arrivals.every((a, i) => i === 0 || a.at >= arrivals[i - 1].at)).toBe(true);
    // Bursts are told apart by the quiet time between them: at least one checkpoint's work, 5 × 1.4 s.
    const bursts: { at: number; model: string }[][] = [];
    for (const a of arrivals) {
      const last = bursts.at(-1);
      if (last && a.at - last[0].at < 2000) last.push(a);
      else {
        if (last) expect(a.at - last[0].at).toBeGreaterThanOrEqual(5 * 1400);
        bursts.push([a]);
      }
    }
    expect(bursts).toHaveLength(8);
    for (const burst of bursts) {
      const perModel = new Map<string, number>();
      for (const a of burst) perModel.set(a.model, (perModel.get(a.model) ?? 0) + 1);
      expect([...perModel.values()].every((n) => n === 5)).toBe(true);
      expect(perModel.size).toBeGreaterThanOrEqual(1);
      expect(perModel.size).toBeLessThanOrEqual(4);
    }
    // Over 8 bursts, both one checkpoint alone and several at once occur.
    expect(new Set(bursts.map((b) => new Set(b.map((a) => a.model)).size)).size).toBeGreaterThan(1);
  });

  it('counts the idle time instances still had before their keep-alive when the window ended', () => {
    const at = Date.parse('2026-12-06T00:01:00Z');
    const fns = [
      {
        functionName: 'f',
        model: 'a',
        resources: {},
        instances: [
          // Idle for 10 s of a 24 s keep-alive: 14 s left.
          { id: 'i1', busy: false, startedAt: '', state: 'idle', stateSince: '2026-12-06T00:00:50Z' },
          // Idle longer than the keep-alive (about to be reaped): nothing left.
          { id: 'i2', busy: false, startedAt: '', state: 'idle', stateSince: '2026-12-06T00:00:00Z' },
          // Busy: not idle.
          { id: 'i3', busy: true, startedAt: '', state: 'busy', stateSince: '2026-12-06T00:00:59Z' },
        ],
      },
    ];
    expect(tailIdleS(fns, at, SDFLOW_COST_SETTINGS.keepAliveS)).toBe(14);
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

  it('says when the slots bursts never had every slot busy, as with fewer instances than the cap', () => {
    const slots = (peak: number) => ({
      tasks_per_s: 20,
      efficiency: 0.5,
      handoff_gap_p50_ms: 40,
      handoff_gap_p99_ms: 200,
      peak_concurrency: peak,
      cap: 8,
      tasks: 100,
      succeeded: 100,
      errors: 0,
      error_messages: [],
      bursts: 1,
      burst_tasks: 100,
      warmup_tasks: 32,
      warmup_errors: 0,
      warmup_tasks_per_s: 18,
      warmup_error_messages: [],
      leases: 100,
      handoffs: 92,
      gpu_busy_s: 10,
      slot_held_s: 20,
    });
    const under = formatReport({ ...report, slots: slots(4) } as unknown as BenchReport).split('\n');
    expect(under.find((l) => l.includes('peak concurrency'))).toMatch(/\s4\s+cap 8\s+never over the cap\s+yes$/);
    expect(under.find((l) => l.includes('slots never all busy'))).toMatch(
      /4 of 8 idle at the peak: fewer instances than the cap\?/,
    );
    const full = formatReport({ ...report, slots: slots(8) } as unknown as BenchReport).split('\n');
    expect(full.some((l) => l.includes('slots never all busy'))).toBe(false);
    expect(full.find((l) => l.includes('short tasks'))).toMatch(/20\.00\/s/);
  });

  it("prints cost's billed seconds per image against each baseline, what sdflow's extra is made of, and its goal", () => {
    const cost = {
      sampling_per_image_s: 1.4,
      sdflow_billed_per_image_s: 2.1,
      always_on_billed_per_image_s: 3.5,
      switching_billed_per_image_s: 4.2,
      sdflow_ratio: 1.5,
      always_on_ratio: 2.5,
      switching_ratio: 3,
      sdflow_cold_start_s: 40.2,
      sdflow_idle_billed_s: 12.5,
      sdflow_active_over_sampling_s: 9.75,
      sdflow_images_per_s: 0.5,
      always_on_images_per_s: 0.6,
      switching_images_per_s: 0.55,
      sdflow_p50_ms: 9000,
      sdflow_p95_ms: 20000,
      always_on_p50_ms: 5000,
      always_on_p95_ms: 11000,
      switching_p50_ms: 6000,
      switching_p95_ms: 15000,
      sdflow_tasks_billed_s: 200.5,
      sdflow_billed_s: 210,
      jobs: 100,
      bursts: 6,
      error_messages: [],
    };
    const lines = formatReport({ ...report, cost } as unknown as BenchReport).split('\n');
    const line = (measure: string) => lines.find((l) => l.includes(measure)) ?? '';
    expect(line('sampling 1.40 s')).toMatch(
      /^cost\s+billed GPU-s per image \(sampling 1\.40 s\)\s+2\.10 s \(1\.50×\)\s+always-on 3\.50 s \(2\.50×\)\s+≤ 1\.15× sampling\s+NO$/,
    );
    expect(lines.some((l) => /2\.10 s \(1\.50×\)\s+switching 4\.20 s \(3\.00×\)\s*$/.test(l))).toBe(true);
    expect(line('beyond sampling')).toMatch(/cold starts 40\.20 s, idle 12\.50 s, active 9\.75 s/);
    expect(line('images (100 in 6 bursts)')).toMatch(/0\.50\/s\s+always-on 0\.60\/s · switching 0\.55\/s/);
    expect(line('latency p95')).toMatch(/20000 ms\s+always-on 11000 ms · switching 15000 ms/);
    expect(line("tasks' billed sum")).toMatch(/200\.5 s\s+runtime 210\.0 s/);
    // Met once sdflow's ratio is within the goal.
    const met = formatReport({ ...report, cost: { ...cost, sdflow_ratio: 1.15 } } as unknown as BenchReport);
    expect(met).toMatch(/≤ 1\.15× sampling\s+yes/);
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
