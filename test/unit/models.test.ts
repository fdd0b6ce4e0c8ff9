import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BrokenModelError,
  checkSafetensorsHeader,
  MAX_SAFETENSORS_HEADER_BYTES,
  safetensorsHeaderLength,
} from '../../src/activities/models.js';
import { isCheckpointAlias } from '../../src/api/checkpoints.js';
import { describeZodError } from '../../src/api/errors.js';
import { findByName, loraNames } from '../../src/api/model-refs.js';
import { registerModelBody, registerModelForm, updateModelBody } from '../../src/api/model-schemas.js';
import { emptySafetensors } from '../../src/cli/demo-models.js';
import { SqliteMetaStore } from '../../src/platform/meta-store/sqlite/store.js';
import type { ModelRecord } from '../../src/records.js';
import { registrationWorkflowId } from '../../src/temporal.js';

// The pure parts of model management: LoRA references in prompts, the safetensors header check, the request
// schemas, and the meta store's removal of an abandoned registration.

describe('LoRA references in prompts', () => {
  it("finds A1111's <lora:name> and <lora:name:weight…> tags, each name once, in order", () => {
    expect(loraNames('a cat <lora:detail:0.8>, <lora:style>  <LORA:detail:1> <lora: spaced name :0.5:0.2>')).toEqual([
      'detail',
      'style',
      'spaced name',
    ]);
  });

  it('ignores other extra networks and text that only looks like a tag', () => {
    expect(loraNames('<hypernet:x:1> <lyco:y:1> lora:z <lora:> <lora::1> plain')).toEqual([]);
  });

  it('matches a registered LoRA by file name or by name without its extension', () => {
    const lora = (name: string) => ({ name, type: 'lora', status: 'loaded' }) as ModelRecord;
    const loras = [lora('detail.safetensors'), lora('style.v2.pt'), lora('plain')];
    expect(findByName(loras, 'detail')?.name).toBe('detail.safetensors');
    expect(findByName(loras, 'detail.safetensors')?.name).toBe('detail.safetensors');
    expect(findByName(loras, 'style.v2')?.name).toBe('style.v2.pt');
    expect(findByName(loras, 'plain')?.name).toBe('plain');
    expect(findByName(loras, 'style')).toBeUndefined();
  });
});

/** The 8-byte little-endian length, then the header, then `data` bytes. */
function file(header: string, data = 0, length = Buffer.byteLength(header)): Buffer {
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(length));
  return Buffer.concat([prefix, Buffer.from(header), Buffer.alloc(data)]);
}

/** Runs both checks the registration runs on a whole file. */
function check(bytes: Buffer): void {
  const n = safetensorsHeaderLength(bytes.subarray(0, 8), bytes.length);
  checkSafetensorsHeader(bytes.subarray(8, 8 + n), bytes.length - 8 - n);
}

describe('the safetensors check', () => {
  const tensor = (begin: number, end: number) =>
    JSON.stringify({ __metadata__: { format: 'pt' }, w: { dtype: 'F16', shape: [2, 2], data_offsets: [begin, end] } });

  it('accepts a well-formed file, and the demo checkpoints', () => {
    expect(() => check(file(tensor(0, 8), 8))).not.toThrow();
    expect(() => check(file('{}      '))).not.toThrow();
    const demo = emptySafetensors({ name: 'sdflow-demo-v1.safetensors' });
    expect(demo.readBigUInt64LE(0) % 8n).toBe(0n);
    expect(() => check(demo)).not.toThrow();
  });

  it('refuses a file too short for its header length, or a length that is absurd or past the end', () => {
    expect(() => safetensorsHeaderLength(Buffer.from([1, 2, 3]), 3)).toThrow(/shorter than the 8-byte header/);
    expect(() => check(file('{}', 0, 1))).toThrow(/too short/);
    expect(() => check(file('{}', 0, MAX_SAFETENSORS_HEADER_BYTES + 1))).toThrow(/over the 100000000-byte limit/);
    const huge = Buffer.alloc(16, 0xff);
    expect(() => check(huge)).toThrow(BrokenModelError);
    expect(() => check(file('{}', 0, 4096))).toThrow(/runs past the end of the file/);
  });

  it('refuses a header that is not a JSON object, or tensors outside the data', () => {
    expect(() => check(file('not json'))).toThrow('not a safetensors file: its header is not JSON');
    expect(() => check(file('[1, 2]'))).toThrow(/not a JSON object/);
    expect(() => check(file(JSON.stringify({ w: { dtype: 'F16' } })))).toThrow(/tensor "w" has no valid/);
    expect(() => check(file(tensor(4, 2), 8))).toThrow(/tensor "w" has no valid/);
    expect(() => check(file(tensor(0, 16), 8))).toThrow(/tensor "w" ends at byte 16 of data, but the file holds 8/);
  });
});

describe('model request schemas', () => {
  const refusal = (schema: typeof registerModelBody | typeof updateModelBody, body: unknown) => {
    const r = schema.safeParse(body);
    if (r.success) throw new Error(`accepted: ${JSON.stringify(body)}`);
    return describeZodError(r.error);
  };
  const good = { type: 'lora', name: 'x.safetensors', ossPath: 'uploads/x.safetensors' };

  it('accepts a plain name, a known type and a safe key', () => {
    expect(registerModelBody.parse(good)).toEqual(good);
    expect(registerModelForm.parse({ type: 'controlNet', name: 'cn v1.1 (depth).pth' }).type).toBe('controlNet');
    expect(updateModelBody.parse({})).toEqual({});
  });

  it('names the field of every refusal', () => {
    expect(refusal(registerModelBody, { ...good, type: 'hypernetwork' })).toBe(
      'type: must be one of stableDiffusion, sdVae, lora, controlNet',
    );
    expect(refusal(registerModelBody, {})).toMatch(/^type: is required.*; name: is required.*; ossPath: is required/);
    for (const name of ['a/b', 'a\\b', '..', 'x..y', '.hidden', 'tab\there', ' padded', '', 'n'.repeat(201)]) {
      expect(refusal(registerModelBody, { ...good, name }), name).toMatch(/^name: /);
    }
    for (const ossPath of ['../x', 'a/../b', '/abs', 'oss://bucket/x', 'a\\b', 'a//b', '']) {
      expect(refusal(registerModelBody, { ...good, ossPath }), ossPath).toMatch(/^ossPath: /);
    }
    expect(refusal(updateModelBody, { ossPath: '../x' })).toMatch(/^ossPath: object key must not contain '\.\.'/);
    expect(refusal(registerModelBody, [1])).toBe('body: must be a JSON object');
  });
});

describe("A1111's checkpoint aliases", () => {
  const sha = 'e815473ce9250fb2a1b1e5d7b4c0d2c6f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1';
  const model: ModelRecord = {
    type: 'stableDiffusion',
    name: 'dream-v1.safetensors',
    ossPath: 'models/stableDiffusion/dream-v1.safetensors',
    etag: sha,
    status: 'loaded',
    registeredTime: '2024-01-01T00:00:00.000Z',
    lastModificationTime: '2024-01-01T00:00:00.000Z',
  };

  it('name a checkpoint by file name, name without extension, short hash, sha256, or a name with [hash]', () => {
    for (const ref of [
      'dream-v1.safetensors',
      'dream-v1',
      'e815473ce9',
      'E815473CE9',
      sha,
      'dream-v1.safetensors [e815473ce9]',
      'dream-v1 [e815473ce9]',
      'dream-v1.safetensors [0123456789]',
      ' dream-v1 ',
    ]) {
      expect(isCheckpointAlias(model, ref), ref).toBe(true);
    }
  });

  it('do not match another name, a partial name, or a hash of another length', () => {
    for (const ref of [
      'dream',
      'dream-v1.ckpt',
      'dream-v2',
      'e815473c',
      'e815473ce92',
      'zz15473ce9',
      '',
      '[e815473ce9]',
    ]) {
      expect(isCheckpointAlias(model, ref), ref).toBe(false);
    }
    expect(isCheckpointAlias({ ...model, etag: '' }, 'e815473ce9')).toBe(false);
  });
});

describe('registration workflow ids', () => {
  it('are one per model and deployment', () => {
    const id = registrationWorkflowId('prod', 'x.safetensors');
    expect(id).toMatch(/^sdflow-model-prod-[0-9a-f]{16}$/);
    expect(registrationWorkflowId('prod', 'x.safetensors')).toBe(id);
    expect(registrationWorkflowId('prod', 'y.safetensors')).not.toBe(id);
    expect(registrationWorkflowId('test', 'x.safetensors')).not.toBe(id);
  });
});

describe('removing an abandoned registration', () => {
  let dir: string | undefined;
  let store: SqliteMetaStore | undefined;
  afterEach(async () => {
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('removes only the row that registration inserted, while it is still registering', async () => {
    dir = mkdtempSync(join(tmpdir(), 'sdflow-models-'));
    store = SqliteMetaStore.open(join(dir, 'meta.db'));
    const row: ModelRecord = {
      type: 'lora',
      name: 'x.safetensors',
      ossPath: 'models/lora/x.safetensors',
      etag: '',
      status: 'registering',
      registeredTime: '2024-01-01T00:00:00.000Z',
      lastModificationTime: '2024-01-01T00:00:00.000Z',
    };
    expect(await store.insertModel(row)).toBe(true);
    expect(await store.removeModel(row.name, '2024-02-02T00:00:00.000Z')).toBe(false);
    await store.putModel({ ...row, status: 'loaded' });
    expect(await store.removeModel(row.name, row.registeredTime)).toBe(false);
    expect((await store.getModel(row.name))?.status).toBe('loaded');
    await store.putModel(row);
    expect(await store.removeModel(row.name, row.registeredTime)).toBe(true);
    expect(await store.getModel(row.name)).toBeNull();
  });
});
