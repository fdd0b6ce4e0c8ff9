import { describe, expect, it } from 'vitest';
import type { Lane, SemaphoreState, SemaphoreWaiter } from '../../src/types.js';
import { admitUser, chargeGrant, forgetIdleUsers, grantOrder, nextWaiter } from '../../src/workflows/grant-order.js';

// The semaphore's grant order on its own: lanes with aging, fair share between users by weight, per-user caps,
// warm checkpoints as a tie-breaker, and arrival order within one user and lane.

const MINUTE = 60_000;
const policy = { agingMs: 5 * MINUTE };
let counter = 0;

function waiter(user: string, extra: Partial<SemaphoreWaiter> = {}): SemaphoreWaiter {
  counter++;
  return { workflowId: `${user}-${counter}`, runId: 'r', leaseId: `l${counter}`, user, requestedAt: counter, ...extra };
}

function state(queue: SemaphoreWaiter[], extra: Partial<SemaphoreState> = {}): SemaphoreState {
  const s: SemaphoreState = { limit: 1, holders: [], queue: [], totalGrants: 0, grantsThisRun: 0, ...extra };
  for (const w of queue) join(s, w);
  return s;
}

/** A waiter joins the queue, as the semaphore admits it. */
function join(s: SemaphoreState, w: SemaphoreWaiter) {
  admitUser(s, w.user);
  s.queue.push(w);
}

/** Grants one slot at a time, each freed at once, and returns the order of the granted waiters' workflow ids. */
function drain(s: SemaphoreState, now = 1000): string[] {
  const order: string[] = [];
  for (;;) {
    const i = nextWaiter(s, now, policy);
    if (i < 0) return order;
    const [next] = s.queue.splice(i, 1);
    chargeGrant(s, next);
    order.push(next.workflowId);
  }
}

describe('the grant order', () => {
  it('keeps arrival order within one user and one lane', () => {
    const q = [waiter('a'), waiter('a'), waiter('a')];
    expect(drain(state([...q]))).toEqual(q.map((w) => w.workflowId));
  });

  it('grants a higher lane first, whoever arrived first', () => {
    const low = waiter('a', { lane: 'low' });
    const normal = waiter('a');
    const high = waiter('a', { lane: 'high' });
    expect(drain(state([low, normal, high]))).toEqual([high.workflowId, normal.workflowId, low.workflowId]);
  });

  it('counts a low waiter as normal after an aging period, so a stream of normal ones does not starve it', () => {
    const low = waiter('a', { lane: 'low', requestedAt: 0 });
    const normals = [waiter('a', { requestedAt: 5 * MINUTE }), waiter('a', { requestedAt: 5 * MINUTE + 1 })];
    // Not yet aged: the normal ones first.
    expect(drain(state([low, ...normals]), 4 * MINUTE)[0]).toBe(normals[0].workflowId);
    // Waited a whole period: it counts as normal, and it came first.
    const aged = drain(state([low, ...normals]), 5 * MINUTE + 10);
    expect(aged[0]).toBe(low.workflowId);
  });

  it('stops aging at normal: a backlog of old normal tasks never outranks a fresh normal one', () => {
    const old = [waiter('A', { requestedAt: 0 }), waiter('A', { requestedAt: 1 })];
    const fresh = waiter('B', { requestedAt: 20 * MINUTE });
    const high = waiter('C', { lane: 'high', requestedAt: 20 * MINUTE + 1 });
    const s = state([...old, fresh, high]);
    const order = drain(s, 20 * MINUTE + 2);
    expect(order[0]).toBe(high.workflowId);
    // A and B share the normal lane; a's head came first.
    expect(order.slice(1)).toEqual([old[0].workflowId, fresh.workflowId, old[1].workflowId]);
  });

  it('shares a lane between users: a flood from one never starves another (at most 2 of A between B starts)', () => {
    const s = state([]);
    for (let i = 0; i < 250; i++) join(s, waiter('A'));
    // A has been granted 50 times before B arrives.
    for (let i = 0; i < 50; i++) chargeGrant(s, s.queue.shift()!);
    for (let i = 0; i < 5; i++) join(s, waiter('B'));
    const order = drain(s).map((id) => id.split('-')[0]);
    const bStarts = order.flatMap((u, i) => (u === 'B' ? [i] : []));
    expect(bStarts).toHaveLength(5);
    for (let k = 1; k < bStarts.length; k++) expect(bStarts[k] - bStarts[k - 1] - 1).toBeLessThanOrEqual(2);
    expect(bStarts[0]).toBeLessThanOrEqual(2);
  });

  it('weights the shares by the keys’ weights', () => {
    const s = state([]);
    for (let i = 0; i < 30; i++) {
      join(s, waiter('heavy', { weight: 2 }));
      join(s, waiter('light', { weight: 1 }));
    }
    const first = drain(s).slice(0, 30);
    const heavy = first.filter((id) => id.startsWith('heavy')).length;
    expect(heavy).toBeGreaterThanOrEqual(19);
    expect(heavy).toBeLessThanOrEqual(21);
  });

  it('never lets a user hold more than their cap, while others may still be granted', () => {
    const capped = [waiter('a', { maxSlots: 1 }), waiter('a', { maxSlots: 1 })];
    const other = waiter('b');
    const s = state([...capped, other], {
      holders: [{ workflowId: 'held', runId: 'r', leaseId: 'h', user: 'a', grantedAt: 0 }],
    });
    expect(s.queue[nextWaiter(s, 1000, policy)].workflowId).toBe(other.workflowId);
    s.queue.splice(2, 1);
    expect(nextWaiter(s, 1000, policy)).toBe(-1);
  });

  it('when fairness leaves a choice, prefers a checkpoint with an idle warm instance', () => {
    const cold = waiter('a', { model: 'cold.safetensors' });
    const warm = waiter('b', { model: 'warm.safetensors' });
    const s = state([cold, warm], { warm: { 'warm.safetensors': 1 } });
    expect(s.queue[nextWaiter(s, 1000, policy)].workflowId).toBe(warm.workflowId);
    // Fairness first: a user already served more does not jump the queue for warmth.
    s.service = { b: 5, a: 0 };
    expect(s.queue[nextWaiter(s, 1000, policy)].workflowId).toBe(cold.workflowId);
  });

  it('answers every waiter’s place in that order, and forgets users with nothing queued or held', () => {
    const lanes: Lane[] = ['low', 'normal', 'high'];
    const q = lanes.map((lane) => waiter('a', { lane }));
    const s = state([...q], { service: { gone: 3 } });
    expect(grantOrder(s, 1000, policy).map((w) => w.lane)).toEqual(['high', 'normal', 'low']);
    // The state itself is left as it was.
    expect(s.queue).toHaveLength(3);
    forgetIdleUsers(s);
    expect(s.service).toEqual({ a: 0 });
  });
});
