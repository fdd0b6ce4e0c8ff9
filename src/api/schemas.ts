import { z } from 'zod';
import type { Config } from '../config.js';

// The request schemas: the API validates with them, /openapi.json is generated from them, and the CLI's types
// come from them. A1111 bodies are loose objects: unknown fields pass through to SD unchanged. Numbers may be
// integers or floats wherever A1111 accepts either; integer fields are truncated like A1111's pydantic does.

export type Limits = Config['limits'];

const number = () => z.number({ error: 'must be a number' }).refine(Number.isFinite, 'must be a finite number');

function integer(min: number, max: number) {
  return number()
    .transform(Math.trunc)
    .pipe(z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));
}

function decimal(min: number, max: number) {
  return number().pipe(z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));
}

/** A message for a required field: absent, or of the wrong type. */
const required = (what: string, type: string) => (issue: { input?: unknown }) =>
  issue.input === undefined ? `is required: ${what}` : `must be ${type}`;

const text = (max: number) => z.string({ error: 'must be a string' }).max(max, `must be at most ${max} characters`);
const name = z
  .string({ error: 'must be a string' })
  .min(1, 'must not be empty')
  .max(255, 'must be at most 255 characters');
/** An image: base64 (with or without a data: prefix) or an object key of the caller's. */
const imageRef = z
  .string({ error: required('an image (base64 or an object key)', 'a string: base64 or an object key') })
  .min(1, 'must not be empty');

/** Extension arguments (ControlNet and others): free-form, but images inside are checked by the claim check. */
const alwaysonScripts = z.record(z.string(), z.looseObject({ args: z.array(z.unknown()).optional() }), {
  error: 'must be an object of {"<script>": {"args": [...]}}',
});

export function generationSchemas(limits: Limits) {
  const maxSide = Math.max(limits.maxWidth, limits.maxHeight);
  const common = {
    stable_diffusion_model: z
      .string({ error: required('the checkpoint to render with', 'a string') })
      .min(1, 'must not be empty'),
    sd_vae: name.optional(),
    prompt: text(limits.maxPromptChars).optional(),
    negative_prompt: text(limits.maxPromptChars).optional(),
    styles: z.array(text(200)).max(50).optional(),
    seed: integer(-1, Number.MAX_SAFE_INTEGER).optional(),
    subseed: integer(-1, Number.MAX_SAFE_INTEGER).optional(),
    subseed_strength: decimal(0, 1).optional(),
    seed_resize_from_h: integer(-1, maxSide).optional(),
    seed_resize_from_w: integer(-1, maxSide).optional(),
    sampler_name: text(100).optional(),
    sampler_index: text(100).optional(),
    scheduler: text(100).optional(),
    batch_size: integer(1, limits.maxImagesPerTask).optional(),
    n_iter: integer(1, limits.maxImagesPerTask).optional(),
    steps: integer(1, limits.maxSteps).optional(),
    cfg_scale: decimal(0, 100).optional(),
    width: integer(8, limits.maxWidth).optional(),
    height: integer(8, limits.maxHeight).optional(),
    denoising_strength: decimal(0, 1).optional(),
    restore_faces: z.boolean({ error: 'must be true or false' }).optional(),
    tiling: z.boolean({ error: 'must be true or false' }).optional(),
    override_settings: z.record(z.string(), z.unknown(), { error: 'must be an object' }).optional(),
    alwayson_scripts: alwaysonScripts.optional(),
    script_name: text(200).optional(),
    script_args: z.array(z.unknown()).optional(),
  };
  const imagesPerTask = (body: { batch_size?: number; n_iter?: number }, ctx: z.RefinementCtx) => {
    const total = (body.batch_size ?? 1) * (body.n_iter ?? 1);
    if (total > limits.maxImagesPerTask) {
      ctx.addIssue({
        code: 'custom',
        path: ['batch_size'],
        message: `batch_size × n_iter is ${total}; at most ${limits.maxImagesPerTask} images per task`,
      });
    }
  };

  const img2imgFields = {
    init_images: z
      .array(imageRef, { error: required('an array of images (base64 or object keys)', 'an array') })
      .min(1, 'must hold at least one image')
      .max(limits.maxInputImages, `must hold at most ${limits.maxInputImages} images`),
    mask: imageRef.optional(),
    resize_mode: integer(0, 3).optional(),
    mask_blur: integer(0, 64).optional(),
    inpainting_fill: integer(0, 3).optional(),
    inpaint_full_res: z.union([z.boolean(), integer(0, 1)]).optional(),
  };
  // A1111's own routes name the checkpoint in override_settings.sd_model_checkpoint (or not at all).
  const a1111Common = { ...common, stable_diffusion_model: common.stable_diffusion_model.optional() };

  const txt2img = z.looseObject(common).superRefine(imagesPerTask);
  const img2img = z.looseObject({ ...common, ...img2imgFields }).superRefine(imagesPerTask);
  const extraImages = z.looseObject({
    stable_diffusion_model: z.string().min(1, 'must not be empty').optional(),
    image: imageRef.describe('the image to upscale: base64 or an object key'),
    resize_mode: integer(0, 1).optional(),
    upscaling_resize: decimal(1, 8).optional(),
    upscaling_resize_w: integer(1, limits.maxWidth * 4).optional(),
    upscaling_resize_h: integer(1, limits.maxHeight * 4).optional(),
    upscaling_crop: z.boolean({ error: 'must be true or false' }).optional(),
    upscaler_1: text(100).optional(),
    upscaler_2: text(100).optional(),
    extras_upscaler_2_visibility: decimal(0, 1).optional(),
    gfpgan_visibility: decimal(0, 1).optional(),
    codeformer_visibility: decimal(0, 1).optional(),
    codeformer_weight: decimal(0, 1).optional(),
  });
  return {
    txt2img,
    img2img,
    extraImages,
    a1111: {
      txt2img: z.looseObject(a1111Common).superRefine(imagesPerTask),
      img2img: z.looseObject({ ...a1111Common, ...img2imgFields }).superRefine(imagesPerTask),
    },
  };
}

export type GenerationSchemas = ReturnType<typeof generationSchemas>;
export type Txt2ImgRequest = z.infer<GenerationSchemas['txt2img']>;
export type Img2ImgRequest = z.infer<GenerationSchemas['img2img']>;
export type ExtraImagesRequest = z.infer<GenerationSchemas['extraImages']>;

/** A client-chosen task id (the `taskId` header). */
export const TASK_ID = /^[A-Za-z0-9_-]{1,64}$/;
