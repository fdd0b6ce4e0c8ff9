import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { describeZodError } from '../../src/api/errors.js';
import { openApiDocument } from '../../src/api/openapi.js';
import { generationSchemas, retryBody } from '../../src/api/schemas.js';
import { loadConfig } from '../../src/config/index.js';
import { TASK_ID } from '../../src/protocol/invoke.js';

// The request schemas on their own: what passes, what is refused, and that every refusal names its field.

const schemas = generationSchemas(loadConfig({}).limits);
const { txt2img, img2img, extraImages } = schemas;
const model = { stable_diffusion_model: 'm.safetensors' };
const image = 'images/u/t_1.png';

function refusal(schema: z.ZodType, body: unknown): string {
  const r = schema.safeParse(body);
  if (r.success) throw new Error(`accepted: ${JSON.stringify(body)}`);
  return describeZodError(r.error);
}

describe('generation request schemas', () => {
  it('accepts A1111 bodies, floats where A1111 takes them, and passes unknown fields through', () => {
    const body = txt2img.parse({
      ...model,
      prompt: 'p',
      steps: 20.0,
      cfg_scale: 7.5,
      width: 512,
      seed: -1,
      sampler_name: 'Euler a',
      enable_hr: true,
      hr_scale: 2,
      alwayson_scripts: { controlnet: { args: [{ enabled: true }] } },
      some_extension_field: { nested: [1, 2] },
    });
    expect(body.steps).toBe(20);
    expect(body.cfg_scale).toBe(7.5);
    expect(body.some_extension_field).toEqual({ nested: [1, 2] });
    expect(body.hr_scale).toBe(2);
  });

  it('truncates integer fields given as floats, like A1111', () => {
    expect(txt2img.parse({ ...model, steps: 20.7, batch_size: 2.2 })).toMatchObject({ steps: 20, batch_size: 2 });
  });

  it.each([
    [{ prompt: 'x' }, /^stable_diffusion_model: is required/],
    [{ stable_diffusion_model: 42 }, /^stable_diffusion_model: must be a string/],
    [{ ...model, steps: -5 }, /^steps: must be at least 1/],
    [{ ...model, steps: 'many' }, /^steps: must be a number/],
    [{ ...model, steps: 501 }, /^steps: must be at most 500/],
    [{ ...model, width: 4096 }, /^width: must be at most 2048/],
    [{ ...model, cfg_scale: Number.NaN }, /^cfg_scale: /],
    [{ ...model, batch_size: 8, n_iter: 4 }, /^batch_size: batch_size × n_iter is 32; at most 16/],
    [{ ...model, prompt: 'x'.repeat(8001) }, /^prompt: must be at most 8000 characters/],
    [{ ...model, restore_faces: 'maybe' }, /^restore_faces: must be true or false/],
    [{ ...model, override_settings: 'x' }, /^override_settings: must be an object/],
    [{ ...model, alwayson_scripts: { controlnet: { args: 'x' } } }, /^alwayson_scripts\.controlnet\.args: /],
  ])('refuses %j naming the field', (body, message) => {
    expect(refusal(txt2img, body)).toMatch(message);
  });

  it('img2img needs init_images, within the configured count', () => {
    expect(refusal(img2img, { ...model })).toMatch(/^init_images: is required/);
    expect(refusal(img2img, { ...model, init_images: [] })).toMatch(/^init_images: must hold at least one image/);
    expect(refusal(img2img, { ...model, init_images: Array(9).fill('k') })).toMatch(
      /^init_images: must hold at most 8/,
    );
    expect(refusal(img2img, { ...model, init_images: [42] })).toMatch(/^init_images\[0\]: must be a string/);
    expect(img2img.parse({ ...model, init_images: ['images/u/t_1.png'], denoising_strength: 0.4 })).toBeTruthy();
  });

  it('extra_images needs an image; the model is optional', () => {
    expect(refusal(extraImages, {})).toMatch(/^image: is required/);
    expect(refusal(txt2img, [1, 2])).toBe('body: must be a JSON object');
    expect(refusal(extraImages, { image: 'k', upscaling_resize: 9 })).toMatch(/^upscaling_resize: must be at most 8/);
    expect(extraImages.parse({ image: 'images/u/t_1.png', upscaling_resize: 2, upscaler_1: 'Lanczos' })).toBeTruthy();
  });

  it('limits follow config', () => {
    const strict = generationSchemas(loadConfig({ SDFLOW_MAX_STEPS: '10', SDFLOW_MAX_WIDTH: '256' }).limits);
    expect(strict.txt2img.safeParse({ ...model, steps: 11 }).success).toBe(false);
    expect(strict.txt2img.safeParse({ ...model, width: 320 }).success).toBe(false);
    expect(strict.txt2img.safeParse({ ...model, steps: 10, width: 256 }).success).toBe(true);
  });

  it('client task ids match ^[A-Za-z0-9_-]{1,64}$', () => {
    for (const ok of ['a', 'task_1-A', 'x'.repeat(64)]) expect(TASK_ID.test(ok)).toBe(true);
    for (const bad of ['', 'x'.repeat(65), 'a b', 'a/b', '../x', 'ü']) expect(TASK_ID.test(bad)).toBe(false);
  });
});

/** Each generation body schema, with the smallest body it accepts and the fields that body needs. */
const bodies = [
  { route: '/txt2img', schema: txt2img, minimal: model, required: ['stable_diffusion_model'] },
  {
    route: '/img2img',
    schema: img2img,
    minimal: { ...model, init_images: [image] },
    required: ['stable_diffusion_model', 'init_images'],
  },
  { route: '/extra_images', schema: extraImages, minimal: { image }, required: ['image'] },
  { route: '/sdapi/v1/txt2img', schema: schemas.a1111.txt2img, minimal: {}, required: [] },
  {
    route: '/sdapi/v1/img2img',
    schema: schemas.a1111.img2img,
    minimal: { init_images: [image] },
    required: ['init_images'],
  },
];

/** The fields of a body schema (its object, before the nulls are dropped), split into optional and required. */
function fieldsOf(schema: (typeof bodies)[number]['schema']) {
  const shape: Record<string, z.ZodType> = schema.in.shape;
  const names = Object.keys(shape);
  const optional = names.filter((name) => shape[name].safeParse(undefined).success);
  return { optional, required: names.filter((name) => !optional.includes(name)) };
}

describe.each(bodies)('$route: null means the default', ({ schema, minimal, required }) => {
  const fields = fieldsOf(schema);

  it('knows which fields are required', () => {
    expect(fields.required).toEqual(required);
  });

  it('accepts null on every optional field, and drops it', () => {
    for (const field of fields.optional)
      expect(schema.parse({ ...minimal, [field]: null }), field).toStrictEqual(minimal);
  });

  it('accepts a body whose optional fields are all null, unknown ones too', () => {
    const nulls = Object.fromEntries([...fields.optional, 'some_extension_field'].map((field) => [field, null]));
    expect(schema.parse({ ...minimal, ...nulls })).toStrictEqual(minimal);
  });

  it('refuses a null required field, naming it', () => {
    for (const field of required)
      expect(refusal(schema, { ...minimal, [field]: null })).toMatch(`${field}: is required`);
  });

  if (fields.optional.includes('override_settings')) {
    it('leaves out a setting that override_settings sets to null: it is not overridden', () => {
      const body = { ...minimal, override_settings: { sd_vae: null, CLIP_stop_at_last_layers: 2 } };
      expect(schema.parse(body)).toStrictEqual({ ...minimal, override_settings: { CLIP_stop_at_last_layers: 2 } });
    });
  }
});

describe("A1111's coercions", () => {
  it('reads numeric strings as numbers, numbers as str, and keeps the typed value', () => {
    const body = txt2img.parse({
      ...model,
      seed: '1234',
      subseed: ' -1 ',
      cfg_scale: '7.5',
      denoising_strength: '.5',
      subseed_strength: '1e-1',
      steps: '20',
      width: 512.9,
      prompt: 5,
      sampler_name: 1.5,
      styles: [1, 'film'],
    });
    expect(body).toEqual({
      ...model,
      seed: 1234,
      subseed: -1,
      cfg_scale: 7.5,
      denoising_strength: 0.5,
      subseed_strength: 0.1,
      steps: 20,
      width: 512,
      prompt: '5',
      sampler_name: '1.5',
      styles: ['1', 'film'],
    });
  });

  it.each([true, 'true', 'True', 'YES', 'y', 't', 'on', '1', 1])('reads %j as true', (value) => {
    expect(txt2img.parse({ ...model, restore_faces: value }).restore_faces).toBe(true);
    expect(img2img.parse({ ...model, init_images: [image], inpaint_full_res: value }).inpaint_full_res).toBe(true);
    expect(extraImages.parse({ image, upscaling_crop: value }).upscaling_crop).toBe(true);
  });

  it.each([false, 'false', 'False', 'NO', 'n', 'f', 'off', '0', 0])('reads %j as false', (value) => {
    expect(txt2img.parse({ ...model, tiling: value }).tiling).toBe(false);
  });

  it('reads a bool as 1 or 0 where a number is wanted, as pydantic does', () => {
    expect(txt2img.parse({ ...model, steps: true, seed: false })).toMatchObject({ steps: 1, seed: 0 });
  });

  it.each([
    [{ seed: 'abc' }, /^seed: must be a number$/],
    [{ seed: {} }, /^seed: must be a number$/],
    [{ steps: '12.5' }, /^steps: must be an integer$/],
    [{ steps: '' }, /^steps: must be a number$/],
    [{ steps: '0x10' }, /^steps: must be a number$/],
    [{ cfg_scale: '7,5' }, /^cfg_scale: must be a number$/],
    [{ cfg_scale: '1e999' }, /^cfg_scale: must be a finite number$/],
    [{ steps: '501' }, /^steps: must be at most 500$/],
    [{ restore_faces: 2 }, /^restore_faces: must be true or false$/],
    [{ restore_faces: ' yes' }, /^restore_faces: must be true or false$/],
    [{ prompt: true }, /^prompt: must be a string$/],
    [{ prompt: { text: 'x' } }, /^prompt: must be a string$/],
    [{ styles: [null] }, /^styles\[0\]: must be a string$/],
    [{ override_settings: 5 }, /^override_settings: must be an object$/],
    [{ mask: 5 }, /^mask: must be a string/],
    [{ init_images: 'k' }, /^init_images: must be an array$/],
  ])('still refuses %j, naming the field', (fields, message) => {
    expect(refusal(img2img, { ...model, init_images: [image], ...fields })).toMatch(message);
  });
});

describe('webhook fields', () => {
  const hook = 'https://hooks.example.com/sdflow';

  it('are taken by the platform routes and a retry, not by the drop-in', () => {
    const fields = { webhook: hook, webhook_events_filter: ['start', 'completed'] };
    expect(txt2img.parse({ ...model, ...fields })).toMatchObject(fields);
    expect(img2img.parse({ ...model, init_images: [image], ...fields })).toMatchObject(fields);
    expect(extraImages.parse({ image, ...fields })).toMatchObject(fields);
    expect(retryBody.parse(fields)).toEqual(fields);
    expect(retryBody.parse({})).toEqual({});
    // A null is the default, as for every optional field: no webhook.
    expect(txt2img.parse({ ...model, webhook: null, webhook_events_filter: null })).toEqual(model);
    // The drop-in does not take them: there it is an unknown field, unchecked (and, an sdflow name, not sent to SD).
    expect(schemas.a1111.txt2img.parse({ webhook: 'not checked' })).toEqual({ webhook: 'not checked' });
  });

  it('are refused, naming the field, when malformed', () => {
    expect(refusal(txt2img, { ...model, webhook: 'file:///etc/passwd' })).toBe('webhook: must be an http or https URL');
    expect(refusal(txt2img, { ...model, webhook: 42 })).toMatch(/^webhook: /);
    expect(refusal(txt2img, { ...model, webhook: hook, webhook_events_filter: 'completed' })).toBe(
      'webhook_events_filter: must be an array of start, progress, completed',
    );
    expect(refusal(txt2img, { ...model, webhook: hook, webhook_events_filter: ['finished'] })).toBe(
      'webhook_events_filter[0]: must be start, progress, completed',
    );
    expect(refusal(extraImages, { image, webhook_events_filter: ['start'] })).toBe(
      'webhook_events_filter: needs a webhook',
    );
    expect(refusal(retryBody, { prompt: 'x' })).toBe('body: unknown field(s): prompt');
  });
});

describe('the OpenAPI document', () => {
  const doc = openApiDocument(schemas);
  type JsonSchema = { anyOf?: JsonSchema[]; type?: string; pattern?: string; nullable?: boolean };
  const bodyOf = (route: '/txt2img' | '/img2img' | '/extra_images') =>
    doc.paths[route].post.requestBody.content['application/json'].schema as {
      properties: Record<string, JsonSchema>;
      required: string[];
    };

  it.each(['/txt2img', '/img2img', '/extra_images'] as const)('%s marks every optional field nullable', (route) => {
    const body = bodyOf(route);
    for (const [field, schema] of Object.entries(body.properties)) {
      const nullable = schema.anyOf?.some((option) => option.type === 'null') ?? false;
      expect(nullable, field).toBe(!body.required.includes(field));
      // OpenAPI 3.1 spells a null as JSON Schema does: `nullable` belongs to 3.0.
      expect(schema.nullable, field).toBeUndefined();
    }
  });

  it('documents the webhook fields and the routes of events and webhooks', () => {
    for (const route of ['/txt2img', '/img2img', '/extra_images'] as const) {
      expect(Object.keys(bodyOf(route).properties)).toEqual(
        expect.arrayContaining(['webhook', 'webhook_events_filter']),
      );
    }
    const paths = doc.paths as Record<string, Record<string, any>>;
    expect(
      paths['/tasks/{taskId}/retry'].post.requestBody.content['application/json'].schema.properties,
    ).toHaveProperty('webhook');
    expect(Object.keys(paths['/tasks/{taskId}/events'].get.responses['200'].content)).toEqual(['text/event-stream']);
    expect(paths['/tasks/{taskId}/webhooks'].get).toBeDefined();
    expect(paths['/tasks/{taskId}/webhooks/redeliver'].post.responses).toHaveProperty('202');
  });

  it('shows that numbers may also be numeric strings', () => {
    const { seed, cfg_scale } = bodyOf('/txt2img').properties;
    const pattern = (schema: JsonSchema) => new RegExp(schema.anyOf!.find((o) => o.type === 'string')!.pattern!);
    expect(seed.anyOf).toContainEqual({ type: 'number' });
    expect(pattern(seed).test('1234')).toBe(true);
    expect(pattern(seed).test('12.5')).toBe(false);
    expect(pattern(cfg_scale).test('7.5')).toBe(true);
  });
});
