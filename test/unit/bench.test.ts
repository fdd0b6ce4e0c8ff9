import { describe, expect, it } from 'vitest';
import { poissonArrivals } from '../../src/cli/bench/multimodel.js';
import { Owned } from '../../src/cli/bench/owned.js';
import { burstFigures } from '../../src/cli/bench/slots.js';
import { percentile, tally } from '../../src/cli/bench/stats.js';

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
