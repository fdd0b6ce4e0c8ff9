import { z } from 'zod';
import type { Config } from '../config/index.js';
import { WEBHOOK_EVENTS } from '../records.js';

// The request schemas: the API validates with them, /openapi.json is generated from them, and the CLI's types
// come from them. A1111 bodies are loose objects: unknown fields pass through to SD. Values are read the way
// A1111's pydantic (v1) models read them, and the typed value is what goes on to SD:
// - an optional field may be null, meaning its default: the body drops it (`withoutNulls`);
// - a number may be an int, a float or a numeric string; an int field truncates a float (12.5 → 12) but refuses
//   the string "12.5", as pydantic's int() does;
// - a bool may be 1 / 0 or a word such as "yes" or "off";
// - an A1111 str field may be a number (5 → "5"). Images and sdflow's own names stay strings: no number is one.

export type Limits = Config['limits'];

/** A number as pydantic v1's float() reads a string: " 7.5", "-1", "1e3". */
const DECIMAL_TEXT = /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/;
/** An integer as pydantic v1's int() reads a string: "12", never "12.5". */
const INTEGER_TEXT = /^\s*[-+]?\d+\s*$/;

/** "12.5" for an int field is a number, just not an integer. */
const numberError = (issue: { input?: unknown }) =>
  typeof issue.input === 'string' && DECIMAL_TEXT.test(issue.input) ? 'must be an integer' : 'must be a number';

/** pydantic v1 also reads a bool as 1 or 0 (Python's bool is an int); the spec leaves that spelling out. */
const boolAsNumber = (value: unknown) => (typeof value === 'boolean' ? Number(value) : value);

/** A number, or a string holding one as `textForm` says. */
function number(textForm: RegExp) {
  return z
    .preprocess(
      boolAsNumber,
      z.union([z.number(), z.string().regex(textForm).transform(Number)], { error: numberError }),
    )
    .refine(Number.isFinite, 'must be a finite number');
}

function integer(min: number, max: number) {
  return number(INTEGER_TEXT)
    .transform(Math.trunc)
    .pipe(z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));
}

function decimal(min: number, max: number) {
  return number(DECIMAL_TEXT).pipe(z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));
}

/** pydantic v1's bool: true / false, 1 / 0, or one of its words in any case. */
const boolean = () =>
  z.union(
    [
      z.boolean(),
      z.literal([0, 1]).transform((n) => n === 1),
      z.stringbool({ truthy: ['1', 'on', 't', 'true', 'y', 'yes'], falsy: ['0', 'off', 'f', 'false', 'n', 'no'] }),
    ],
    { error: 'must be true or false' },
  );

/** A message for a required field: absent (or null, which asks for a default it has not got), or of the wrong type. */
const required = (what: string, type: string) => (issue: { input?: unknown }) =>
  issue.input == null ? `is required: ${what}` : `must be ${type}`;

/** An A1111 str field: a number is taken as its text. */
const text = (max: number) =>
  z.union([z.string().max(max, `must be at most ${max} characters`), z.number().transform(String)], {
    error: 'must be a string',
  });
const name = z
  .string({ error: 'must be a string' })
  .min(1, 'must not be empty')
  .max(255, 'must be at most 255 characters');
/** An image: base64 (with or without a data: prefix) or an object key of the caller's. */
const imageRef = z
  .string({ error: required('an image (base64 or an object key)', 'a string: base64 or an object key') })
  .min(1, 'must not be empty');

type WithoutNulls<T> = { [K in keyof T]: Exclude<T[K], null> };

/**
 * A validated body without its null fields. A null asks for the field's default, as in A1111, so the field is left
 * out: SD applies its own default, and the claim check, the model checks and the stored params never see it. An
 * unknown field's null is left out too: absent is how SD is asked for any field's default, whereas a null passed on
 * would reach A1111's code as None, which not every field there handles.
 */
function withoutNulls<T extends Record<string, unknown>>(body: T): WithoutNulls<T> {
  return Object.fromEntries(Object.entries(body).filter(([, value]) => value !== null)) as WithoutNulls<T>;
}

/** Extension arguments (ControlNet and others): free-form, but images inside are checked by the claim check. */
const alwaysonScripts = z.record(z.string(), z.looseObject({ args: z.array(z.unknown()).optional() }), {
  error: 'must be an object of {"<script>": {"args": [...]}}',
});

/**
 * Where a task's webhook events go, named as Replicate names them: sdflow's own fields, never sent to SD. The
 * filter defaults to `completed`.
 */
export const webhookFields = {
  webhook: z
    .url({ protocol: /^https?$/, error: 'must be an http or https URL' })
    .max(2048, 'must be at most 2048 characters')
    .nullish()
    .describe('a URL to POST the task’s events to, signed as Standard Webhooks signs them'),
  webhook_events_filter: z
    .array(z.enum(WEBHOOK_EVENTS, { error: `must be ${WEBHOOK_EVENTS.join(', ')}` }), {
      error: `must be an array of ${WEBHOOK_EVENTS.join(', ')}`,
    })
    .min(1, `must name at least one of ${WEBHOOK_EVENTS.join(', ')}`)
    .nullish()
    .describe('which events go to the webhook (default ["completed"])'),
};

/** A filter names events of a webhook: without one it has nothing to filter. */
function filterNeedsWebhook(body: { webhook?: unknown; webhook_events_filter?: unknown }, ctx: z.RefinementCtx) {
  if (body.webhook_events_filter != null && body.webhook == null) {
    ctx.addIssue({ code: 'custom', path: ['webhook_events_filter'], message: 'needs a webhook' });
  }
}

/** The body of `POST /tasks/{id}/retry`: optional, and only a webhook of its own (else the original's). */
export const retryBody = z
  .strictObject(webhookFields, {
    error: (issue) =>
      issue.code === 'unrecognized_keys' ? `unknown field(s): ${(issue.keys ?? []).join(', ')}` : undefined,
  })
  .superRefine(filterNeedsWebhook);

export function generationSchemas(limits: Limits) {
  const maxSide = Math.max(limits.maxWidth, limits.maxHeight);
  const common = {
    stable_diffusion_model: z
      .string({ error: required('the checkpoint to render with', 'a string') })
      .min(1, 'must not be empty'),
    sd_vae: name.nullish(),
    prompt: text(limits.maxPromptChars).nullish(),
    negative_prompt: text(limits.maxPromptChars).nullish(),
    styles: z.array(text(200)).max(50).nullish(),
    seed: integer(-1, Number.MAX_SAFE_INTEGER).nullish(),
    subseed: integer(-1, Number.MAX_SAFE_INTEGER).nullish(),
    subseed_strength: decimal(0, 1).nullish(),
    seed_resize_from_h: integer(-1, maxSide).nullish(),
    seed_resize_from_w: integer(-1, maxSide).nullish(),
    sampler_name: text(100).nullish(),
    sampler_index: text(100).nullish(),
    scheduler: text(100).nullish(),
    batch_size: integer(1, limits.maxImagesPerTask).nullish(),
    n_iter: integer(1, limits.maxImagesPerTask).nullish(),
    steps: integer(1, limits.maxSteps).nullish(),
    cfg_scale: decimal(0, 100).nullish(),
    width: integer(8, limits.maxWidth).nullish(),
    height: integer(8, limits.maxHeight).nullish(),
    denoising_strength: decimal(0, 1).nullish(),
    restore_faces: boolean().nullish(),
    tiling: boolean().nullish(),
    // A setting set to null is not overridden: the instance's own value stays, as for a null field.
    override_settings: z
      .record(z.string(), z.unknown(), { error: 'must be an object' })
      .transform(withoutNulls)
      .nullish(),
    alwayson_scripts: alwaysonScripts.nullish(),
    script_name: text(200).nullish(),
    script_args: z.array(z.unknown()).nullish(),
  };
  const imagesPerTask = (body: { batch_size?: number | null; n_iter?: number | null }, ctx: z.RefinementCtx) => {
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
    mask: imageRef.nullish(),
    resize_mode: integer(0, 3).nullish(),
    mask_blur: integer(0, 64).nullish(),
    inpainting_fill: integer(0, 3).nullish(),
    inpaint_full_res: boolean().nullish(),
  };
  // A1111's own routes name the checkpoint in override_settings.sd_model_checkpoint (or not at all).
  const a1111Common = { ...common, stable_diffusion_model: common.stable_diffusion_model.nullish() };

  const txt2img = z
    .looseObject({ ...common, ...webhookFields })
    .superRefine(imagesPerTask)
    .superRefine(filterNeedsWebhook)
    .transform(withoutNulls);
  const img2img = z
    .looseObject({ ...common, ...img2imgFields, ...webhookFields })
    .superRefine(imagesPerTask)
    .superRefine(filterNeedsWebhook)
    .transform(withoutNulls);
  const extraImages = z
    .looseObject({
      ...webhookFields,
      stable_diffusion_model: z.string().min(1, 'must not be empty').nullish(),
      image: imageRef.describe('the image to upscale: base64 or an object key'),
      resize_mode: integer(0, 1).nullish(),
      upscaling_resize: decimal(1, 8).nullish(),
      upscaling_resize_w: integer(1, limits.maxWidth * 4).nullish(),
      upscaling_resize_h: integer(1, limits.maxHeight * 4).nullish(),
      upscaling_crop: boolean().nullish(),
      upscaler_1: text(100).nullish(),
      upscaler_2: text(100).nullish(),
      extras_upscaler_2_visibility: decimal(0, 1).nullish(),
      gfpgan_visibility: decimal(0, 1).nullish(),
      codeformer_visibility: decimal(0, 1).nullish(),
      codeformer_weight: decimal(0, 1).nullish(),
    })
    .superRefine(filterNeedsWebhook)
    .transform(withoutNulls);
  return {
    txt2img,
    img2img,
    extraImages,
    a1111: {
      txt2img: z.looseObject(a1111Common).superRefine(imagesPerTask).transform(withoutNulls),
      img2img: z
        .looseObject({ ...a1111Common, ...img2imgFields })
        .superRefine(imagesPerTask)
        .transform(withoutNulls),
    },
  };
}

export type GenerationSchemas = ReturnType<typeof generationSchemas>;
export type Txt2ImgRequest = z.infer<GenerationSchemas['txt2img']>;
export type Img2ImgRequest = z.infer<GenerationSchemas['img2img']>;
export type ExtraImagesRequest = z.infer<GenerationSchemas['extraImages']>;
