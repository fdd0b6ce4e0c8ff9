import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { formatInfotext, parseInfotext, quoteValue } from '../../src/sim/infotext.js';
import { resolveSampler } from '../../src/sim/lists.js';
import { parseExtrasBody, parseGenerationBody } from '../../src/sim/params.js';
import { insertTextChunks, pngSize, readTextChunks } from '../../src/sim/png.js';
import { renderPattern } from '../../src/sim/render.js';
import { jobTimestamp } from '../../src/sim/state.js';

// The simulator's pure parts: infotext, PNG text chunks, sampler names, body validation and rendering.

describe('sim units', () => {
  it('formats and parses A1111 infotext, quoting values with commas or colons', () => {
    expect(quoteValue('Euler a')).toBe('Euler a');
    expect(quoteValue('a, b')).toBe('"a, b"');
    const text = formatInfotext('a cat\non two lines', 'ugly', {
      Steps: 4,
      Sampler: 'Euler a',
      Lora: 'x: 1',
      Skipped: undefined,
    });
    expect(text).toBe('a cat\non two lines\nNegative prompt: ugly\nSteps: 4, Sampler: Euler a, Lora: "x: 1"');
    expect(parseInfotext(text)).toEqual({
      Prompt: 'a cat\non two lines',
      'Negative prompt': 'ugly',
      Steps: '4',
      Sampler: 'Euler a',
      Lora: 'x: 1',
    });
    expect(formatInfotext('p', '', { Seed: 1 })).toBe('p\nSeed: 1');
  });

  it('writes tEXt for Latin-1 and iTXt for other text, both readable by sharp', async () => {
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#336699' } })
      .png()
      .toBuffer();
    const out = insertTextChunks(png, { parameters: 'café', comment: '猫 🐱' });
    expect(readTextChunks(out)).toEqual({ parameters: 'café', comment: '猫 🐱' });
    expect(out.includes(Buffer.from('tEXtparameters\0caf\xe9', 'latin1'))).toBe(true);
    expect(pngSize(out)).toEqual({ width: 8, height: 8 });
    // libvips decodes tEXt as UTF-8, so only check what it reads right: the iTXt chunk.
    const meta = await sharp(out).metadata();
    expect(meta.comments).toContainEqual({ keyword: 'comment', text: '猫 🐱' });
    expect((await sharp(out).raw().toBuffer()).length).toBe(8 * 8 * 3);
  });

  it('resolves sampler names like A1111 1.10', () => {
    expect(resolveSampler('Euler a', null)).toEqual({ sampler: 'Euler a', scheduler: 'Automatic' });
    expect(resolveSampler('DPM++ 2M Karras', null)).toEqual({ sampler: 'DPM++ 2M', scheduler: 'Automatic' });
    expect(resolveSampler('DPM++ SDE Exponential', null)).toEqual({ sampler: 'DPM++ SDE', scheduler: 'Exponential' });
    expect(resolveSampler('Euler', 'karras')).toEqual({ sampler: 'Euler', scheduler: 'Karras' });
    expect(resolveSampler('k_lms', null).sampler).toBe('LMS');
    expect(resolveSampler('no such sampler', null).sampler).toBe('DPM++ 2M');
  });

  it('validates bodies like pydantic v1: coercion, defaults, unknown fields dropped', () => {
    const { parameters, request } = parseGenerationBody('txt2img', {
      steps: 20.9,
      width: '768',
      restore_faces: 'yes',
      x: 1,
    });
    expect(request).toMatchObject({ steps: 20, width: 768, height: 512, restore_faces: true, cfg_scale: 7, seed: -1 });
    expect(parameters).not.toHaveProperty('x');
    expect(parameters).toMatchObject({ sampler_index: 'Euler', send_images: true, save_images: false });
    expect(() => parseGenerationBody('txt2img', { steps: '20.5' })).toThrow(/steps/);
    expect(() => parseGenerationBody('img2img', { denoising_strength: 2 })).toThrow(/less than or equal to 1/);
    expect(parseExtrasBody({})).toMatchObject({ upscaler_1: 'None', upscaling_resize: 2, resize_mode: 0 });
  });

  it('renders deterministically and fast enough', () => {
    const spec = {
      width: 512,
      height: 512,
      seed: 1,
      subseed: 2,
      subseedStrength: 0,
      style: 3,
      detail: 4,
      cfgScale: 7,
      done: 1,
    };
    const t = performance.now();
    const a = renderPattern(spec);
    const ms = performance.now() - t;
    expect(a.equals(renderPattern(spec))).toBe(true);
    expect(a.equals(renderPattern({ ...spec, seed: 2 }))).toBe(false);
    expect(a.equals(renderPattern({ ...spec, subseed: 99 }))).toBe(true);
    expect(a.equals(renderPattern({ ...spec, subseed: 99, subseedStrength: 0.3 }))).toBe(false);
    expect(ms).toBeLessThan(1000); // ~20 ms normally; generous for a loaded machine
  });

  it('formats job timestamps as YYYYMMDDhhmmss', () => {
    expect(jobTimestamp(new Date(2024, 0, 2, 3, 4, 5))).toBe('20240102030405');
  });
});
