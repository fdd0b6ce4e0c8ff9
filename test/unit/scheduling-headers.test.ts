import type { Context } from 'koa';
import { describe, expect, it } from 'vitest';
import { type Principal, parseKeys } from '../../src/api/auth.js';
import { HttpError } from '../../src/api/errors.js';
import { slotOwnerOf, taskDeadline, taskPriority } from '../../src/api/request-headers.js';

// A key's scheduling attributes, and the Task-Priority and Task-Deadline headers that place a task in the grant order.

const principals = (text: string) => [...parseKeys(text, 'keys').byHash.values()];
const ctxWith = (headers: Record<string, string>) =>
  ({ get: (name: string) => headers[name.toLowerCase()] ?? '' }) as unknown as Context;
const refusal = (run: () => unknown) => {
  try {
    run();
  } catch (err) {
    if (err instanceof HttpError) return { status: err.status, message: err.message };
    throw err;
  }
  throw new Error('not refused');
};

describe('key attributes', () => {
  it('reads lane, maxLane, weight and maxSlots after the secret, which may hold colons', () => {
    const [p] = principals('ann:user:se:cret-1;lane=low;maxLane=normal;weight=2.5;maxSlots=3');
    expect(p).toMatchObject({ user: 'ann', role: 'user', lane: 'low', maxLane: 'normal', weight: 2.5, maxSlots: 3 });
    const [bare] = principals('bo:admin:secret-22');
    expect(bare).toEqual({ user: 'bo', role: 'admin', keyId: expect.any(String) });
  });

  it('the same secret with or without attributes is the same key', () => {
    const [a] = principals('ann:user:secret-11;weight=2');
    const [b] = principals('ann:user:secret-11');
    expect(a.keyId).toBe(b.keyId);
  });

  it('refuses an unknown attribute or a bad value, naming the key and the attribute', () => {
    expect(() => principals('ann:user:secret-11;color=red')).toThrow(/key of ann: unknown attribute "color"/);
    expect(() => principals('ann:user:secret-11;lane=urgent')).toThrow(/key of ann: lane must be one of high/);
    expect(() => principals('ann:user:secret-11;weight=0')).toThrow(/key of ann: weight must be/);
    expect(() => principals('ann:user:secret-11;maxSlots=1.5')).toThrow(/key of ann: maxSlots must be/);
    expect(() => principals('ann:user:secret-11;lane=high;maxLane=normal')).toThrow(/lane high is above its maxLane/);
  });
});

describe('Task-Priority', () => {
  const plain: Principal = { user: 'ann', role: 'user' };
  const limited: Principal = { user: 'cy', role: 'user', lane: 'low', maxLane: 'normal' };

  it('is the key’s lane when absent (normal for a key without one), any case accepted', () => {
    expect(taskPriority(ctxWith({}), plain)).toBe('normal');
    expect(taskPriority(ctxWith({}), limited)).toBe('low');
    expect(taskPriority(ctxWith({ 'task-priority': 'HIGH' }), plain)).toBe('high');
    expect(taskPriority(ctxWith({ 'task-priority': 'normal' }), limited)).toBe('normal');
  });

  it('is a 403 above the key’s maxLane and a 400 when not a lane, naming the header', () => {
    expect(refusal(() => taskPriority(ctxWith({ 'task-priority': 'high' }), limited))).toEqual({
      status: 403,
      message: 'Task-Priority header: your key allows lanes up to normal, not high',
    });
    expect(refusal(() => taskPriority(ctxWith({ 'task-priority': 'asap' }), plain))).toEqual({
      status: 400,
      message: 'Task-Priority header: must be one of high, normal, low',
    });
  });
});

describe('Task-Deadline', () => {
  it('is seconds from now, as epoch ms', () => {
    expect(taskDeadline(ctxWith({}), 1000)).toBeUndefined();
    expect(taskDeadline(ctxWith({ 'task-deadline': '2.5' }), 1000)).toBe(3500);
  });

  it('refuses what is not a positive number of seconds up to a day', () => {
    for (const value of ['0', '-1', 'soon', '1e3', '86401']) {
      expect(refusal(() => taskDeadline(ctxWith({ 'task-deadline': value }), 0))).toMatchObject({
        status: 400,
        message: expect.stringMatching(/^Task-Deadline header: /),
      });
    }
  });
});

it('a submission’s owner carries the user and their key’s share and cap', () => {
  const owner = slotOwnerOf(ctxWith({ 'task-priority': 'low' }), {
    user: 'ann',
    role: 'user',
    weight: 2,
    maxSlots: 1,
  });
  expect(owner).toEqual({ owner: { lane: 'low', user: 'ann', weight: 2, maxSlots: 1 } });
});
