import { describe, expect, it } from 'vitest';
import { billingRateFor, taskCost } from '../../src/activities/cost.js';
import { invokeTimer } from '../../src/activities/timings.js';
import type { Principal } from '../../src/api/auth.js';
import { HttpError } from '../../src/api/errors.js';
import { usageQuery, usageWindow } from '../../src/api/usage.js';
import { DEFAULT_BILLING_RATES } from '../../src/config/billing.js';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { startingEvent } from '../../src/protocol/events.js';
import { EMPTY_SD_STATE } from '../../src/types.js';

const A10 = { activePerS: 0.0005, idlePerS: 0.0001 };

describe('a task cost', () => {
  it('bills cold start as active and idle at its rate against the active one, in active-equivalent seconds', () => {
    const cost = taskCost({
      submittedAt: 1_000,
      grantedAt: 3_500,
      usage: { coldStartS: 4, activeS: 2.25, idleS: 10 },
      images: 2,
      gpuType: 'A10',
      rate: A10,
    });
    expect(cost).toEqual({
      queueS: 2.5,
      coldStartS: 4,
      gpuS: 2.25,
      idleS: 10,
      // 2.25 + 4 + 10 × (0.0001 / 0.0005)
      billedGpuS: 8.25,
      gpuType: 'A10',
      images: 2,
    });
  });

  it('rounds to the millisecond and never goes negative (a clock step between two readings)', () => {
    const cost = taskCost({
      submittedAt: 5_000,
      grantedAt: 4_000,
      usage: { coldStartS: -0.001, activeS: 1.23456, idleS: 0 },
      images: 1,
      gpuType: 'default',
      rate: A10,
    });
    expect(cost).toMatchObject({ queueS: 0, coldStartS: 0, gpuS: 1.235, billedGpuS: 1.235 });
  });

  it("is priced by the function's instance type, else by the default row", () => {
    const rates = { default: { activePerS: 1, idlePerS: 0.2 }, 'fc.gpu.ampere.1': A10 };
    expect(billingRateFor(rates, 'fc.gpu.ampere.1')).toEqual({ gpuType: 'fc.gpu.ampere.1', rate: A10 });
    expect(billingRateFor(rates, 'fc.gpu.ada.1')).toEqual({ gpuType: 'default', rate: rates.default });
    expect(billingRateFor(rates, undefined).gpuType).toBe('default');
  });
});

describe('SDFLOW_BILLING_RATES', () => {
  it("defaults to Function Compute 3.0's published GPU prices, idle at about a fifth of active", () => {
    const { rates } = loadConfig({}).billing;
    expect(rates.default).toEqual({ activePerS: 0.000672, idlePerS: 0.00016 });
    expect(rates['fc.gpu.ada.1']).toEqual({ activePerS: 0.00144, idlePerS: 0.00024 });
    expect(rates.default.idlePerS / rates.default.activePerS).toBeCloseTo(0.5 / 2.1, 6);
  });

  it('adds and overrides rows by GPU type over the default', () => {
    const { rates } = loadConfig({
      SDFLOW_BILLING_RATES: JSON.stringify({ 'fc.gpu.ampere.1': A10, default: { activePerS: 2, idlePerS: 0.4 } }),
    }).billing;
    expect(rates).toEqual({
      'fc.gpu.ampere.1': A10,
      'fc.gpu.ada.1': DEFAULT_BILLING_RATES['fc.gpu.ada.1'],
      default: { activePerS: 2, idlePerS: 0.4 },
    });
  });

  it.each([
    ['not JSON', '{default:', 'is not valid JSON'],
    ['a zero active rate', '{"default": {"activePerS": 0, "idlePerS": 0}}', 'activePerS must be above 0'],
    ['a negative idle rate', '{"A10": {"activePerS": 1, "idlePerS": -1}}', 'idlePerS must not be negative'],
    ['a missing rate', '{"A10": {"activePerS": 1}}', 'idlePerS must be a number'],
    ['an unknown field', '{"A10": {"activePerS": 1, "idlePerS": 0, "perHour": 3}}', 'perHour'],
  ])('refuses %s, naming the setting', (_what, value, message) => {
    const load = () => loadConfig({ SDFLOW_BILLING_RATES: value });
    expect(load).toThrow(ConfigError);
    expect(load).toThrow('SDFLOW_BILLING_RATES');
    expect(load).toThrow(message);
  });
});

describe("the worker's own view of an invoke (runtimes that report no usage)", () => {
  const progress = { type: 'progress' as const, progress: 0.5, etaRelative: 1, state: EMPTY_SD_STATE };

  it('counts the wait for an instance as cold start and the rest as active', () => {
    const timer = invokeTimer(10_000);
    timer.see(startingEvent(), 10_000);
    timer.see({ ...progress, phase: 'sampling', currentImage: null }, 13_000);
    expect(timer.usage(15_500)).toEqual({ coldStartS: 3, activeS: 2.5, idleS: 0 });
  });

  it('counts a warm invoke as active from the grant', () => {
    const timer = invokeTimer(10_000);
    timer.see({ ...progress, phase: 'sampling', currentImage: null }, 10_200);
    expect(timer.usage(11_000)).toEqual({ coldStartS: 0, activeS: 1, idleS: 0 });
  });
});

describe('the /usage window', () => {
  const alice: Principal = { user: 'alice', role: 'user' };
  const admin: Principal = { user: 'root', role: 'admin' };
  const now = Date.parse('2026-03-02T12:00:00Z');
  const window = (query: Record<string, string>, who = alice) => usageWindow(usageQuery.parse(query), who, now);
  const refusal = (f: () => unknown) => {
    try {
      f();
    } catch (err) {
      if (err instanceof HttpError) return { status: err.status, message: err.message };
      return { message: String(err) };
    }
    return undefined;
  };

  it("defaults to the last 24 h of the caller's own tasks", () => {
    expect(window({})).toEqual({ from: '2026-03-01T12:00:00.000Z', to: '2026-03-02T12:00:00.000Z', user: 'alice' });
  });

  it('reads instants with offsets, and a from alone up to now', () => {
    expect(window({ from: '2026-03-02T10:00:00+08:00' })).toMatchObject({ from: '2026-03-02T02:00:00.000Z' });
  });

  it("lets an admin read everyone's rows or one user's, and a user only their own", () => {
    expect(window({}, admin).user).toBeUndefined();
    expect(window({ user: 'bob' }, admin).user).toBe('bob');
    expect(window({ user: 'alice' }).user).toBe('alice');
    expect(refusal(() => window({ user: 'bob' }))).toMatchObject({
      status: 403,
      message: expect.stringMatching(/^user:/),
    });
  });

  it('refuses a from after to, naming from', () => {
    expect(refusal(() => window({ from: '2026-03-02T00:00:00Z', to: '2026-03-01T00:00:00Z' }))).toEqual({
      status: 400,
      message: 'from: must not be after to',
    });
  });

  it('refuses what is not an ISO instant, naming the parameter', () => {
    expect(usageQuery.safeParse({ from: 'yesterday' }).error?.issues[0]?.path).toEqual(['from']);
    expect(usageQuery.safeParse({ to: '2026-03-02' }).error?.issues[0]?.path).toEqual(['to']);
  });
});
