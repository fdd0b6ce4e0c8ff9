import { expect, it } from 'vitest';
import { idleInstances } from '../../src/warmth.js';

it('counts the idle instances per checkpoint; busy ones and functions without instances count for nothing', () => {
  const instance = (busy: boolean) => ({ id: 'i', busy, startedAt: '' });
  expect(
    idleInstances([
      { functionName: 'f1', model: 'a', resources: {}, instances: [instance(false), instance(true), instance(false)] },
      { functionName: 'f2', model: 'b', resources: {}, instances: [instance(true)] },
      { functionName: 'f3', model: 'c', resources: {} },
      { functionName: 'f4', model: 'a', resources: {}, instances: [instance(false)] },
    ]),
  ).toEqual({ a: 3 });
});
