import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generationSchemas } from '../../src/api/schemas.js';
import { loadConfig } from '../../src/config/index.js';
import { createMetaStore } from '../../src/platform/index.js';
import { call, DEMO_MODEL, type Stack, startStack } from '../helpers/stack.js';

// Bodies as A1111 clients send them, on the real stack: null fields mean their defaults, and values in the forms
// A1111's pydantic coerces (numeric strings) render as the typed value.

let stack: Stack;
const api = (method: string, path: string, body?: unknown) => call(stack.url, method, path, body);

/** A body with every optional field of `schema` set to null. */
function allNull(schema: { in: { shape: object } }, except: string[]) {
  const optional = Object.keys(schema.in.shape).filter((field) => !except.includes(field));
  return Object.fromEntries(optional.map((field) => [field, null]));
}

/** The params a task was stored with: what went on to SD. */
async function storedParams(taskId: string) {
  const meta = await createMetaStore(loadConfig({ ...process.env, ...stack.env }));
  try {
    return (await meta.getTask(taskId))!.params;
  } finally {
    await meta.close();
  }
}

const schemas = generationSchemas(loadConfig({}).limits);

beforeAll(async () => {
  stack = await startStack({ env: { SDFLOW_SIM_STEP_MS: '0', SDFLOW_SIM_LOAD_MS: '0' } });
});

afterAll(async () => {
  await stack?.stop();
});

describe('null means the default', () => {
  it('a platform txt2img with every optional field null renders with the defaults', async () => {
    const r = await api('POST', '/txt2img', {
      ...allNull(schemas.txt2img, ['stable_diffusion_model']),
      stable_diffusion_model: DEMO_MODEL,
      prompt: 'all the rest is null',
    });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json.status).toBe('succeeded');
    expect(r.json.images).toHaveLength(1);
    expect(await storedParams(r.json.taskId)).toEqual({ prompt: 'all the rest is null' });
    const result = (await api('GET', `/tasks/${r.json.taskId}/result`)).json;
    expect(result.parameters).toMatchObject({ steps: 50, width: 512, height: 512, negative_prompt: '' });
  });

  it('an A1111 txt2img with every field null answers 200 with an image', async () => {
    const r = await api('POST', '/sdapi/v1/txt2img', {
      ...allNull(schemas.a1111.txt2img, []),
      some_extension_field: null,
    });
    expect(r.status, JSON.stringify(r.json).slice(0, 300)).toBe(200);
    expect(r.json.images).toHaveLength(1);
  });

  it('img2img takes mask: null', async () => {
    const init = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#336699' } })
      .png()
      .toBuffer();
    const r = await api('POST', '/img2img', {
      stable_diffusion_model: DEMO_MODEL,
      prompt: 'no mask',
      init_images: [init.toString('base64')],
      mask: null,
      steps: 2,
      width: 64,
      height: 64,
    });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json.status).toBe('succeeded');
  });
});

describe("A1111's coercions", () => {
  it('renders "seed": "1234" with seed 1234, stored as the number', async () => {
    const r = await api('POST', '/sdapi/v1/txt2img', {
      prompt: 'a seed as text',
      seed: '1234',
      steps: '2',
      width: 64,
      height: 64,
      cfg_scale: '7.5',
      restore_faces: 'no',
    });
    expect(r.status, JSON.stringify(r.json).slice(0, 300)).toBe(200);
    const info = JSON.parse(r.json.info);
    expect(info.seed).toBe(1234);
    expect(info.all_seeds).toEqual([1234]);
    expect(await storedParams(r.headers.get('taskId')!)).toMatchObject({
      seed: 1234,
      steps: 2,
      cfg_scale: 7.5,
      restore_faces: false,
    });
  });
});
