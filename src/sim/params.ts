import { apiError, type ValidationIssue, validationError } from './errors.js';

// Request bodies of the generation and extras routes, validated the way A1111's pydantic (v1) models do: numbers
// may be ints or floats (an int field truncates a float) or numeric strings, booleans accept the usual spellings,
// null means the default, and unknown fields are ignored. The validated values, defaults filled in, are what
// A1111 echoes back as `parameters`. A wrong type or an out-of-range value is a 422 in FastAPI's shape.

type Kind = 'int' | 'float' | 'str' | 'bool' | 'list' | 'strList' | 'dict' | 'any';

interface FieldSpec {
  kind: Kind;
  default: unknown;
  min?: number;
  max?: number;
}

const f = (kind: Kind, def: unknown, min?: number, max?: number): FieldSpec => ({ kind, default: def, min, max });

/** Limits the simulator sets so one request cannot take the process down. */
export const LIMITS = {
  maxSide: 4096,
  maxSteps: 10000,
  maxBatch: 64,
  maxIter: 10000,
  maxUpscaledSide: 8192,
  /** Images of one job are held in memory until it ends: 16 images of 2048×2048 at most. */
  maxJobPixels: 16 * 2048 * 2048,
};

/** A1111 holds a job's images in memory until it ends; so does the simulator, within a limit: a 422 beyond it. */
export function checkJobPixels(pixels: number, what: string): void {
  if (pixels <= LIMITS.maxJobPixels) return;
  throw apiError(422, `${what} is ${pixels} pixels; the simulator's limit is ${LIMITS.maxJobPixels}`);
}

const PROCESSING_FIELDS: Record<string, FieldSpec> = {
  prompt: f('str', ''),
  negative_prompt: f('str', ''),
  styles: f('strList', null),
  seed: f('int', -1),
  subseed: f('int', -1),
  subseed_strength: f('float', 0, 0, 1),
  seed_resize_from_h: f('int', -1),
  seed_resize_from_w: f('int', -1),
  sampler_name: f('str', null),
  scheduler: f('str', null),
  batch_size: f('int', 1, 1, LIMITS.maxBatch),
  n_iter: f('int', 1, 1, LIMITS.maxIter),
  steps: f('int', 50, 1, LIMITS.maxSteps),
  cfg_scale: f('float', 7.0),
  width: f('int', 512, 8, LIMITS.maxSide),
  height: f('int', 512, 8, LIMITS.maxSide),
  restore_faces: f('bool', null),
  tiling: f('bool', null),
  do_not_save_samples: f('bool', false),
  do_not_save_grid: f('bool', false),
  eta: f('float', null),
  denoising_strength: f('float', 0.75, 0, 1),
  s_min_uncond: f('float', null),
  s_churn: f('float', null),
  s_tmax: f('float', null),
  s_tmin: f('float', null),
  s_noise: f('float', null),
  override_settings: f('dict', null),
  override_settings_restore_afterwards: f('bool', true),
  refiner_checkpoint: f('str', null),
  refiner_switch_at: f('float', null),
  disable_extra_networks: f('bool', false),
  firstpass_image: f('str', null),
  comments: f('dict', null),
};

const API_FIELDS: Record<string, FieldSpec> = {
  sampler_index: f('str', 'Euler'),
  script_name: f('str', null),
  script_args: f('list', []),
  send_images: f('bool', true),
  save_images: f('bool', false),
  alwayson_scripts: f('dict', {}),
  infotext: f('str', null),
};

const TXT2IMG_FIELDS: Record<string, FieldSpec> = {
  ...PROCESSING_FIELDS,
  enable_hr: f('bool', false),
  firstphase_width: f('int', 0),
  firstphase_height: f('int', 0),
  hr_scale: f('float', 2.0),
  hr_upscaler: f('str', null),
  hr_second_pass_steps: f('int', 0),
  hr_resize_x: f('int', 0),
  hr_resize_y: f('int', 0),
  hr_checkpoint_name: f('str', null),
  hr_sampler_name: f('str', null),
  hr_scheduler: f('str', null),
  hr_prompt: f('str', ''),
  hr_negative_prompt: f('str', ''),
  force_task_id: f('str', null),
  ...API_FIELDS,
};

const IMG2IMG_FIELDS: Record<string, FieldSpec> = {
  ...PROCESSING_FIELDS,
  init_images: f('list', null),
  resize_mode: f('int', 0, 0, 3),
  image_cfg_scale: f('float', null),
  mask: f('str', null),
  mask_blur_x: f('int', 4),
  mask_blur_y: f('int', 4),
  mask_blur: f('int', null),
  mask_round: f('bool', true),
  inpainting_fill: f('int', 0),
  inpaint_full_res: f('bool', true),
  inpaint_full_res_padding: f('int', 0),
  inpainting_mask_invert: f('int', 0),
  initial_noise_multiplier: f('float', null),
  latent_mask: f('str', null),
  force_task_id: f('str', null),
  ...API_FIELDS,
  include_init_images: f('bool', false),
};

const EXTRAS_FIELDS: Record<string, FieldSpec> = {
  resize_mode: f('int', 0, 0, 1),
  show_extras_results: f('bool', true),
  gfpgan_visibility: f('float', 0, 0, 1),
  codeformer_visibility: f('float', 0, 0, 1),
  codeformer_weight: f('float', 0, 0, 1),
  upscaling_resize: f('float', 2, 0.01, 16),
  upscaling_resize_w: f('int', 512, 1, LIMITS.maxUpscaledSide),
  upscaling_resize_h: f('int', 512, 1, LIMITS.maxUpscaledSide),
  upscaling_crop: f('bool', true),
  upscaler_1: f('str', 'None'),
  upscaler_2: f('str', 'None'),
  extras_upscaler_2_visibility: f('float', 0, 0, 1),
  upscale_first: f('bool', false),
  image: f('str', ''),
};

type Coerced = { value: unknown } | { issue: Omit<ValidationIssue, 'loc'> };

const TRUE_WORDS = new Set(['1', 'on', 't', 'true', 'y', 'yes']);
const FALSE_WORDS = new Set(['0', 'off', 'f', 'false', 'n', 'no']);

function toNumber(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'string' && v.trim() !== '') {
    const n = Number(v.trim());
    return Number.isFinite(n) ? n : undefined;
  }
  return undefined;
}

function coerceInt(v: unknown): Coerced {
  const n = toNumber(v);
  if (n === undefined || (typeof v === 'string' && !/^\s*[-+]?\d+\s*$/.test(v))) {
    return { issue: { msg: 'value is not a valid integer', type: 'type_error.integer' } };
  }
  return { value: Math.trunc(n) };
}

function coerceFloat(v: unknown): Coerced {
  const n = toNumber(v);
  return n === undefined ? { issue: { msg: 'value is not a valid float', type: 'type_error.float' } } : { value: n };
}

function coerceBool(v: unknown): Coerced {
  if (typeof v === 'boolean') return { value: v };
  const word = typeof v === 'number' ? String(v) : typeof v === 'string' ? v.trim().toLowerCase() : undefined;
  if (word !== undefined && TRUE_WORDS.has(word)) return { value: true };
  if (word !== undefined && FALSE_WORDS.has(word)) return { value: false };
  return { issue: { msg: 'value could not be parsed to a boolean', type: 'type_error.bool' } };
}

function coerceStr(v: unknown): Coerced {
  if (typeof v === 'string') return { value: v };
  if (typeof v === 'number' && Number.isFinite(v)) return { value: String(v) };
  return { issue: { msg: 'str type expected', type: 'type_error.str' } };
}

function coerce(kind: Kind, v: unknown): Coerced {
  switch (kind) {
    case 'int':
      return coerceInt(v);
    case 'float':
      return coerceFloat(v);
    case 'bool':
      return coerceBool(v);
    case 'str':
      return coerceStr(v);
    case 'list':
    case 'strList':
      return Array.isArray(v) ? { value: v } : { issue: { msg: 'value is not a valid list', type: 'type_error.list' } };
    case 'dict':
      return typeof v === 'object' && v !== null && !Array.isArray(v)
        ? { value: v }
        : { issue: { msg: 'value is not a valid dict', type: 'type_error.dict' } };
    default:
      return { value: v };
  }
}

function rangeIssue(spec: FieldSpec, value: unknown): Omit<ValidationIssue, 'loc'> | undefined {
  if (typeof value !== 'number') return undefined;
  if (spec.min !== undefined && value < spec.min) {
    const msg = `ensure this value is greater than or equal to ${spec.min}`;
    return { msg, type: 'value_error.number.not_ge', ctx: { limit_value: spec.min } };
  }
  if (spec.max !== undefined && value > spec.max) {
    const msg = `ensure this value is less than or equal to ${spec.max}`;
    return { msg, type: 'value_error.number.not_le', ctx: { limit_value: spec.max } };
  }
  return undefined;
}

function validateField(name: string, spec: FieldSpec, raw: unknown, issues: ValidationIssue[]): unknown {
  if (raw === undefined || raw === null) return spec.default;
  const c = coerce(spec.kind, raw);
  if ('issue' in c) {
    issues.push({ loc: ['body', name], ...c.issue });
    return spec.default;
  }
  if (spec.kind === 'strList') {
    (c.value as unknown[]).forEach((item, i) => {
      if (typeof item !== 'string')
        issues.push({ loc: ['body', name, i], msg: 'str type expected', type: 'type_error.str' });
    });
  }
  const range = rangeIssue(spec, c.value);
  if (range) issues.push({ loc: ['body', name], ...range });
  return c.value;
}

/** Validates a body against a field table: returns the known fields with defaults filled, or throws a 422. */
function validateBody(body: unknown, fields: Record<string, FieldSpec>): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw validationError([{ loc: ['body'], msg: 'value is not a valid dict', type: 'type_error.dict' }]);
  }
  const input = body as Record<string, unknown>;
  const issues: ValidationIssue[] = [];
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(fields)) out[name] = validateField(name, spec, input[name], issues);
  if (issues.length > 0) throw validationError(issues);
  return out;
}

/** The fields the simulator reads from a generation request. */
export interface GenerationRequest {
  prompt: string;
  negative_prompt: string;
  styles: string[] | null;
  seed: number;
  subseed: number;
  subseed_strength: number;
  seed_resize_from_h: number;
  seed_resize_from_w: number;
  sampler_name: string | null;
  sampler_index: string;
  scheduler: string | null;
  batch_size: number;
  n_iter: number;
  steps: number;
  cfg_scale: number;
  width: number;
  height: number;
  restore_faces: boolean | null;
  tiling: boolean | null;
  denoising_strength: number;
  enable_hr: boolean;
  override_settings: Record<string, unknown> | null;
  override_settings_restore_afterwards: boolean;
  send_images: boolean;
  save_images: boolean;
  script_name: string | null;
  script_args: unknown[];
  // img2img
  init_images: unknown[] | null;
  mask: string | null;
  mask_blur: number | null;
  mask_blur_x: number;
  resize_mode: number;
  inpainting_mask_invert: number;
  include_init_images: boolean;
}

export type GenerationKind = 'txt2img' | 'img2img';

/** Validates a txt2img or img2img body. `parameters` is the echo A1111 returns; `request` is its typed view. */
export function parseGenerationBody(
  kind: GenerationKind,
  body: unknown,
): { parameters: Record<string, unknown>; request: GenerationRequest } {
  const parameters = validateBody(body, kind === 'txt2img' ? TXT2IMG_FIELDS : IMG2IMG_FIELDS);
  const request = { ...parameters } as unknown as GenerationRequest;
  if (kind === 'txt2img') {
    request.init_images = null;
    request.mask = null;
  }
  return { parameters, request };
}

export interface ExtrasRequest {
  resize_mode: number;
  gfpgan_visibility: number;
  codeformer_visibility: number;
  codeformer_weight: number;
  upscaling_resize: number;
  upscaling_resize_w: number;
  upscaling_resize_h: number;
  upscaling_crop: boolean;
  upscaler_1: string;
  upscaler_2: string;
  extras_upscaler_2_visibility: number;
  upscale_first: boolean;
  image: string;
}

export function parseExtrasBody(body: unknown): ExtrasRequest {
  return validateBody(body, EXTRAS_FIELDS) as unknown as ExtrasRequest;
}
