import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { functionNameFor, isFunctionName, MAX_FUNCTION_NAME_LENGTH } from '../../src/platform/functions/naming.js';
import {
  assertSafeKey,
  mayReference,
  ObjectKeyError,
  objectKeyForInput,
  objectKeyForModel,
  objectKeyForOutput,
  userPrefixes,
} from '../../src/platform/object-store/keys.js';
import { MODEL_TYPES } from '../../src/records.js';

const UNSAFE_KEYS = [
  '',
  '../x',
  'a/../b',
  'a/..',
  './a',
  'a/./b',
  '/abs',
  'a\\b',
  'http://x',
  'https://example.com/a.png',
  's3://x',
  'oss://bucket/key',
  'C:/windows',
  'a//b',
  'a/',
  'a/b\n',
  'a\u0000b',
  'x'.repeat(1025),
];

describe('object keys', () => {
  it('lays out outputs, inputs and models', () => {
    expect(objectKeyForOutput('u', 't', 1)).toBe('images/u/t_1.png');
    expect(objectKeyForOutput('alice', 'task-9', 12)).toBe('images/alice/task-9_12.png');
    expect(objectKeyForInput('u', 't', 'init_0.png')).toBe('inputs/u/t/init_0.png');
    expect(objectKeyForModel('stableDiffusion', 'sd15.safetensors')).toBe('models/stableDiffusion/sd15.safetensors');
    expect(objectKeyForModel('lora', 'x.safetensors')).toBe('models/lora/x.safetensors');
    expect(MODEL_TYPES).toEqual(['stableDiffusion', 'sdVae', 'lora', 'controlNet']);
    expect(userPrefixes('u')).toEqual(['images/u/', 'inputs/u/']);
  });

  it('accepts plain relative keys and returns them', () => {
    for (const key of [
      'a',
      'images/u/t_1.png',
      'models/lora/my model (v2).safetensors',
      'a/b..c/.d',
      'x'.repeat(1024),
    ]) {
      expect(assertSafeKey(key)).toBe(key);
    }
  });

  it.each(UNSAFE_KEYS)('refuses the unsafe key %j', (key) => {
    expect(() => assertSafeKey(key)).toThrow(ObjectKeyError);
  });

  it('refuses non-strings', () => {
    expect(() => assertSafeKey(undefined as unknown as string)).toThrow(ObjectKeyError);
    expect(() => assertSafeKey(42 as unknown as string)).toThrow(ObjectKeyError);
  });

  it('confines a user to their own images and inputs; an admin may reference any key', () => {
    expect(mayReference('images/alice/t_1.png', 'alice', false)).toBe(true);
    expect(mayReference('inputs/alice/t/init_0.png', 'alice', false)).toBe(true);
    expect(mayReference('images/bob/t_1.png', 'alice', false)).toBe(false);
    expect(mayReference('inputs/bob/t/x.png', 'alice', false)).toBe(false);
    expect(mayReference('images/alice2/t_1.png', 'alice', false)).toBe(false);
    expect(mayReference('images/alice', 'alice', false)).toBe(false);
    expect(mayReference('models/stableDiffusion/x', 'alice', false)).toBe(false);
    expect(mayReference('models/stableDiffusion/x', 'root', true)).toBe(true);
    expect(mayReference('images/bob/t_1.png', 'root', true)).toBe(true);
  });
});

describe('function names', () => {
  const sha40 = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 40);

  it('is <prefix>sd_<first 40 hex of sha256(model)>', () => {
    expect(functionNameFor('sd15.safetensors')).toBe(`sd_${sha40('sd15.safetensors')}`);
    expect(functionNameFor('sd15.safetensors', 'prod-')).toBe(`prod-sd_${sha40('sd15.safetensors')}`);
    expect(isFunctionName(functionNameFor('any model', 'p_1'))).toBe(true);
    expect(isFunctionName('sd_xyz')).toBe(false);
  });

  it('is deterministic and differs between models', () => {
    expect(functionNameFor('a')).toBe(functionNameFor('a'));
    expect(functionNameFor('a')).not.toBe(functionNameFor('b'));
  });

  it('stays within 64 characters with a 20-character prefix, even for a long model name', () => {
    const name = functionNameFor('m'.repeat(500), 'p'.repeat(20));
    expect(name.length).toBeLessThanOrEqual(MAX_FUNCTION_NAME_LENGTH);
    expect(name).toHaveLength(63);
  });

  it('refuses a bad prefix', () => {
    expect(() => functionNameFor('m', 'p'.repeat(21))).toThrow();
    expect(() => functionNameFor('m', 'Prod')).toThrow();
    expect(() => functionNameFor('m', 'a.b')).toThrow();
  });
});
