import { describe, expect, it } from 'vitest';
import type { LeaseOutcome, LeaseRef, SemaphoreState, SemaphoreWaiter } from '../../src/types.js';
import {
  healthOf,
  heldBack,
  liftQuarantine,
  nextProbeAt,
  noteGrant,
  recordOutcome,
} from '../../src/workflows/breaker.js';
import { grantOrder, nextWaiter } from '../../src/workflows/grant-order.js';

// A checkpoint's circuit breaker on its own, and as the grant order applies it: instance failures in a row within
// the window open it, its waiters are held back, after the cooldown one probe at a time is granted, and any success
// closes it.

const S = 1000;
const policy = { failures: 3, windowS: 300, cooldownS: 60 };
const crash: LeaseOutcome = { ok: false, fault: 'crash', message: 'instance i-1 failed mid-request: code 1' };
const ok: LeaseOutcome = { ok: true };
let counter = 0;

function lease(): LeaseRef {
  counter++;
  return { workflowId: `task-${counter}`, runId: 'r', leaseId: `l${counter}` };
}

function waiter(model: string, requestedAt: number): SemaphoreWaiter {
  return { ...lease(), user: 'u', model, requestedAt };
}

function emptyState(extra: Partial<SemaphoreState> = {}): SemaphoreState {
  return { limit: 2, holders: [], queue: [], totalGrants: 0, grantsThisRun: 0, breaker: policy, ...extra };
}

/** Three crashes of model `a`, at t = 1, 2, 3 s: its breaker opens at 3 s. */
function quarantined(): SemaphoreState {
  const s = emptyState();
  for (const t of [1, 2, 3]) recordOutcome(s, 'a', lease(), crash, t * S);
  return s;
}

/** Grants like the semaphore does: the next waiter becomes a holder, and a grant while probing is the probe. */
function grantNext(s: SemaphoreState, now: number): SemaphoreWaiter | undefined {
  const i = nextWaiter(s, now, { agingMs: 0 });
  if (i < 0) return undefined;
  const [next] = s.queue.splice(i, 1);
  noteGrant(s, next, now);
  s.holders.push({ ...next, grantedAt: now });
  return next;
}

describe('circuit breaker', () => {
  it('opens after the set number of instance failures in a row, with the reason and when', () => {
    const s = emptyState();
    recordOutcome(s, 'a', lease(), crash, 1 * S);
    recordOutcome(s, 'a', lease(), crash, 2 * S);
    expect(healthOf(s, 'a', 2 * S).health).toBe('ok');
    recordOutcome(s, 'a', lease(), { ok: false, fault: 'oom', message: 'CUDA out of memory' }, 3 * S);
    const h = healthOf(s, 'a', 4 * S);
    expect(h).toMatchObject({ health: 'quarantined', since: 3 * S, retryAfterMs: 59 * S });
    expect(h.reason).toContain('3 instance failures in a row');
    expect(h.reason).toContain('ran out of memory: CUDA out of memory');
    // Other checkpoints are not affected.
    expect(healthOf(s, 'b', 4 * S).health).toBe('ok');
  });

  it('a success clears the count: failures must come in a row', () => {
    const s = emptyState();
    recordOutcome(s, 'a', lease(), crash, 1 * S);
    recordOutcome(s, 'a', lease(), crash, 2 * S);
    recordOutcome(s, 'a', lease(), ok, 3 * S);
    recordOutcome(s, 'a', lease(), crash, 4 * S);
    recordOutcome(s, 'a', lease(), crash, 5 * S);
    expect(healthOf(s, 'a', 6 * S).health).toBe('ok');
    // A healthy checkpoint leaves nothing in the state.
    recordOutcome(s, 'a', lease(), ok, 7 * S);
    expect(s.breakers).toEqual({});
  });

  it('failures older than the window do not count', () => {
    const s = emptyState();
    recordOutcome(s, 'a', lease(), crash, 0);
    recordOutcome(s, 'a', lease(), crash, 200 * S);
    recordOutcome(s, 'a', lease(), crash, 301 * S);
    expect(healthOf(s, 'a', 302 * S).health).toBe('ok');
    recordOutcome(s, 'a', lease(), crash, 302 * S);
    expect(healthOf(s, 'a', 303 * S).health).toBe('quarantined');
  });

  it('holds the checkpoint back while quarantined; its waiters stay queued, others are granted', () => {
    const s = quarantined();
    const a = waiter('a', 1);
    const b = waiter('b', 2);
    s.queue.push(a, b);
    expect(heldBack(s, 'a', 10 * S)).toBe(true);
    expect(grantNext(s, 10 * S)?.workflowId).toBe(b.workflowId);
    expect(grantNext(s, 10 * S)).toBeUndefined();
    expect(s.queue.map((w) => w.workflowId)).toEqual([a.workflowId]);
    // The queue positions still show the held-back waiter, after the others.
    const c = waiter('c', 3);
    s.queue.push(c);
    expect(grantOrder(s, 10 * S, { agingMs: 0 }).map((w) => w.workflowId)).toEqual([c.workflowId, a.workflowId]);
  });

  it('after the cooldown lets one probe through at a time; its success closes the breaker', () => {
    const s = quarantined();
    expect(nextProbeAt(s, 10 * S)).toBe(63 * S);
    const first = waiter('a', 1);
    const second = waiter('a', 2);
    s.queue.push(first, second);
    expect(healthOf(s, 'a', 63 * S)).toMatchObject({ health: 'probing', since: 63 * S });
    expect(grantNext(s, 63 * S)?.workflowId).toBe(first.workflowId);
    // The probe runs: the second waits.
    expect(grantNext(s, 64 * S)).toBeUndefined();
    recordOutcome(s, 'a', first, ok, 70 * S);
    s.holders = [];
    expect(healthOf(s, 'a', 70 * S).health).toBe('ok');
    expect(grantNext(s, 70 * S)?.workflowId).toBe(second.workflowId);
  });

  it("the probe's failure opens it again from then; a probe released without an outcome lets another probe", () => {
    const s = quarantined();
    const first = waiter('a', 1);
    const second = waiter('a', 2);
    s.queue.push(first, second);
    grantNext(s, 63 * S);
    recordOutcome(s, 'a', first, crash, 65 * S);
    s.holders = [];
    const h = healthOf(s, 'a', 66 * S);
    expect(h).toMatchObject({ health: 'quarantined', since: 65 * S, retryAfterMs: 59 * S });
    expect(h.reason).toContain("the probe's instance crashed");
    expect(grantNext(s, 100 * S)).toBeUndefined();
    // The next probe (the second waiter) is cancelled: released with no outcome, so the next one may probe.
    expect(grantNext(s, 125 * S)?.workflowId).toBe(second.workflowId);
    s.holders = [];
    s.queue.push(first);
    expect(grantNext(s, 126 * S)?.workflowId).toBe(first.workflowId);
  });

  it("a failure of a task granted before the quarantine neither extends it nor counts as the probe's", () => {
    const s = quarantined();
    recordOutcome(s, 'a', lease(), crash, 30 * S);
    expect(healthOf(s, 'a', 31 * S)).toMatchObject({ health: 'quarantined', since: 3 * S });
  });

  it('an admin lifts the quarantine: the breaker closes with its count', () => {
    const s = quarantined();
    liftQuarantine(s, 'a');
    expect(healthOf(s, 'a', 4 * S).health).toBe('ok');
    recordOutcome(s, 'a', lease(), crash, 5 * S);
    expect(healthOf(s, 'a', 6 * S).health).toBe('ok');
  });
});
