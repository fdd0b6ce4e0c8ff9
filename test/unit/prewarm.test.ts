import { describe, expect, it } from 'vitest';
import { demandByModel, prewarmTargets, shareOfCap, type WarmthPolicy, warmthPolicyOf } from '../../src/prewarm.js';
import type { SemaphoreHolder, SemaphoreWaiter } from '../../src/types.js';

const holder = (model?: string, n = 0): SemaphoreHolder => ({
  workflowId: `h-${model}-${n}`,
  runId: 'r',
  leaseId: 'l',
  grantedAt: 0,
  ...(model ? { model } : {}),
});
const waiter = (model?: string, n = 0): SemaphoreWaiter => ({
  workflowId: `w-${model}-${n}`,
  runId: 'r',
  leaseId: 'l',
  requestedAt: 0,
  ...(model ? { model } : {}),
});
const many = <T>(count: number, make: (n: number) => T) => Array.from({ length: count }, (_, n) => make(n));

describe('demand and share of the cap', () => {
  it('counts slots held and tasks waiting per checkpoint, leaving out those naming none', () => {
    const demand = demandByModel({
      holders: [holder('a'), holder('b'), holder(undefined)],
      queue: [...many(3, (n) => waiter('a', n)), waiter(undefined)],
    });
    expect(Object.fromEntries(demand)).toEqual({ a: { held: 1, waiting: 3 }, b: { held: 1, waiting: 0 } });
  });

  it('gives the whole cap to the only checkpoint waiting, whoever holds the slots now', () => {
    const demand = demandByModel({ holders: many(4, (n) => holder('b', n)), queue: many(10, (n) => waiter('a', n)) });
    expect(shareOfCap(4, demand, 'a')).toBe(4);
  });

  it("takes away what other checkpoints' waiting tasks want, but never below the fair part", () => {
    const few = demandByModel({ holders: [], queue: [...many(10, (n) => waiter('a', n)), waiter('b')] });
    expect(shareOfCap(6, few, 'a')).toBe(5);
    const lots = demandByModel({
      holders: [],
      queue: [...many(10, (n) => waiter('a', n)), ...many(9, (n) => waiter('b', n))],
    });
    expect(shareOfCap(6, lots, 'a')).toBe(3);
    const crowded = demandByModel({ holders: [], queue: ['a', 'b', 'c', 'd'].map((m) => waiter(m)) });
    expect(shareOfCap(2, crowded, 'a')).toBe(1);
  });
});

describe('prewarm targets', () => {
  const policy = (over: Partial<WarmthPolicy>): WarmthPolicy => ({
    functionName: 'fa',
    model: 'a',
    minInstances: 0,
    prewarmQueueDepth: 3,
    ...over,
  });

  it('wants the burst within the share and maxInstances once the queue is deep enough', () => {
    const state = { limit: 3, holders: many(3, (n) => holder('b', n)), queue: many(5, (n) => waiter('a', n)) };
    expect(prewarmTargets(state, [policy({})]).get('fa')).toBe(3);
    expect(prewarmTargets(state, [policy({ maxInstances: 2 })]).get('fa')).toBe(2);
    expect(prewarmTargets(state, [policy({ prewarmQueueDepth: 6 })]).get('fa')).toBe(0);
  });

  it("counts the checkpoint's own busy slots in, since their instances take the next tasks", () => {
    const state = { limit: 4, holders: many(2, (n) => holder('a', n)), queue: many(3, (n) => waiter('a', n)) };
    expect(prewarmTargets(state, [policy({})]).get('fa')).toBe(4);
  });

  it('falls back to minInstances without a burst, and never asks below it', () => {
    const quiet = { limit: 3, holders: [], queue: [waiter('a')] };
    expect(prewarmTargets(quiet, [policy({ minInstances: 2 })]).get('fa')).toBe(2);
    const burst = { limit: 3, holders: [], queue: many(3, (n) => waiter('a', n)) };
    expect(prewarmTargets(burst, [policy({ minInstances: 1, maxInstances: 1 })]).get('fa')).toBe(1);
  });

  it('leaves functions without prewarmQueueDepth alone', () => {
    const state = { limit: 3, holders: [], queue: many(5, (n) => waiter('a', n)) };
    expect(prewarmTargets(state, [policy({ prewarmQueueDepth: undefined })]).size).toBe(0);
  });

  it("reads the policy from a function record's resources", () => {
    const record = {
      functionName: 'fa',
      model: 'a',
      resources: { minInstances: 1, maxInstances: 4, prewarmQueueDepth: 2, keepAliveS: 5 },
      createdAt: '',
      updatedAt: '',
    };
    expect(warmthPolicyOf(record)).toEqual({
      functionName: 'fa',
      model: 'a',
      minInstances: 1,
      maxInstances: 4,
      prewarmQueueDepth: 2,
    });
    expect(warmthPolicyOf({ ...record, resources: {} })).toEqual({
      functionName: 'fa',
      model: 'a',
      minInstances: 0,
      maxInstances: undefined,
      prewarmQueueDepth: undefined,
    });
  });
});
