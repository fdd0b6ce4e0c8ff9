// Facts about AUTOMATIC1111 WebUI 1.10.1's API request models (git tag v1.10.1, commit 82a973c0), written down as
// our own tables: the field names, pydantic (v1) types, defaults, plus a typical client value each. Sources read:
// modules/api/models.py (the generated request models and the API-only fields it adds), modules/processing.py (the
// StableDiffusionProcessing, …Txt2Img and …Img2Img dataclass fields models.py derives them from), modules/api/api.py
// (what the handlers do with them). Cross-checked against a second copy of 1.10.1 (a fork that changed neither
// models.py nor the dataclass fields). Every default below was read from those files; none is guessed.
//
// How 1.10.1 builds the generation models: every __init__ parameter of the dataclass and of its base class becomes
// an Optional field, minus a deny-list; the base class's signature is applied last, so the base's default wins for
// a field both declare (txt2img's denoising_strength is therefore None, not the subclass's 0.75); a property default
// becomes None (img2img's mask_blur); fields annotated `Image` become `str`. Then the API-only fields are added
// (they replace a derived field of the same name: img2img's denoising_strength becomes `float = 0.75`).
//
// Where sdflow deliberately differs from A1111: A1111 takes null on an Optional field as None and may then fail
// (steps=None is a 500), and its pydantic v1 answers 422 to null on a field that is not Optional (sampler_index,
// script_args, send_images, save_images, alwayson_scripts, include_init_images, img2img's denoising_strength and
// every extras field). sdflow and its simulator take null as "the default" on every one of them, so the
// suite expects 200 for null throughout.

/** A 64×64 grey PNG, base64: the init image, first-pass image and so on. */
export const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAIAAAAlC+aJAAAACXBIWXMAAAPoAAAD6AG1e1JrAAAAS0lEQVRo3u3PMQ0AAAwDoEqv9ErYvQQckD4XAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAYHLAB8+AWkItYjrAAAAAElFTkSuQmCC';
/** A 64×64 white PNG: an inpainting mask that masks everything. */
export const MASK =
  'iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAIAAAAlC+aJAAAACXBIWXMAAAPoAAAD6AG1e1JrAAAAS0lEQVRo3u3PMQ0AAAwDoPo33UrYvQQckD4XAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAYHLAMpT0sLy/XNzAAAAAElFTkSuQmCC';
/** PNG with a `parameters` tEXt chunk holding INFOTEXT, as A1111 saves its images. */
export const PNG_WITH_INFOTEXT =
  'iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAIAAAAlC+aJAAAACXBIWXMAAAPoAAAD6AG1e1JrAAAAS0lEQVRo3u3PMQ0AAAwDoEqv9ErYvQQckD4XAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAYHLAB8+AWkItYjrAAAAWHRFWHRwYXJhbWV0ZXJzAGEgbGlnaHRob3VzZQpTdGVwczogMjAsIFNhbXBsZXI6IEV1bGVyIGEsIENGRyBzY2FsZTogNywgU2VlZDogNDIsIFNpemU6IDY0eDY0/a3MBwAAAABJRU5ErkJggg==';
export const INFOTEXT = 'a lighthouse\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 64x64';
/** The checkpoint file the suite puts in the simulator's models dir (typical value of the checkpoint fields). */
export const CHECKPOINT = 'compat-v1.safetensors';

export interface FieldFact {
  name: string;
  /** The pydantic (v1) type in 1.10.1's model. */
  type: string;
  /** A1111 1.10.1's default. */
  default: unknown;
  /** A value a client typically sends. */
  typical: unknown;
  /** A1111's status for `typical` when it is not 200, why, and the `detail` it answers. */
  status?: number;
  why?: string;
  detail?: string;
  /** Further values worth sending, each with A1111's status. */
  more?: Array<{ value: unknown; status: number; why: string; detail?: string }>;
  /** Required in practice: always in the base request, never sent null or default on its own. */
  required?: boolean;
}

type Extra = Pick<FieldFact, 'status' | 'why' | 'detail' | 'more' | 'required'>;
const f = (name: string, type: string, def: unknown, typical: unknown, extra: Extra = {}): FieldFact => ({
  name,
  type,
  default: def,
  typical,
  ...extra,
});
const refused = (status: number, why: string, detail?: string): Extra => ({ status, why, detail });
const also = (value: unknown, status: number, why: string, detail?: string) => ({ value, status, why, detail });

/** The fields StableDiffusionProcessing contributes to both generation models (its init fields, less the deny-list). */
const PROCESSING: FieldFact[] = [
  f('prompt', 'Optional[str]', '', 'a lighthouse at dusk'),
  f('negative_prompt', 'Optional[str]', '', 'blurry'),
  f('styles', 'Optional[list[str]]', null, ['cinematic'], {
    more: [also(['no such style'], 200, 'an unknown style name is skipped')],
  }),
  f('seed', 'Optional[int]', -1, 1234, { more: [also('42', 200, 'pydantic v1 coerces a numeric string')] }),
  f('subseed', 'Optional[int]', -1, 99),
  f('subseed_strength', 'Optional[float]', 0, 0.3),
  f('seed_resize_from_h', 'Optional[int]', -1, 512),
  f('seed_resize_from_w', 'Optional[int]', -1, 512),
  f('sampler_name', 'Optional[str]', null, 'DPM++ 2M', {
    more: [also('no such sampler', 200, 'an unknown sampler falls back to the default sampler')],
  }),
  f('scheduler', 'Optional[str]', null, 'Karras'),
  f('batch_size', 'Optional[int]', 1, 2),
  f('n_iter', 'Optional[int]', 1, 2),
  f('steps', 'Optional[int]', 50, 20, { more: [also('2', 200, 'pydantic v1 coerces a numeric string')] }),
  f('cfg_scale', 'Optional[float]', 7.0, 5.5, { more: [also('6.5', 200, 'pydantic v1 coerces a numeric string')] }),
  f('width', 'Optional[int]', 512, 128, { more: [also('64', 200, 'pydantic v1 coerces a numeric string')] }),
  f('height', 'Optional[int]', 512, 128),
  f('restore_faces', 'Optional[bool]', null, true),
  f('tiling', 'Optional[bool]', null, true),
  f('do_not_save_samples', 'Optional[bool]', false, true),
  f('do_not_save_grid', 'Optional[bool]', false, true),
  f('eta', 'Optional[float]', null, 1.0),
  f('s_min_uncond', 'Optional[float]', null, 0.1),
  f('s_churn', 'Optional[float]', null, 0.5),
  f('s_tmax', 'Optional[float]', null, 10),
  f('s_tmin', 'Optional[float]', null, 0.1),
  f('s_noise', 'Optional[float]', null, 1.003),
  f('override_settings', 'Optional[dict[str, Any]]', null, { CLIP_stop_at_last_layers: 2 }),
  f('override_settings_restore_afterwards', 'Optional[bool]', true, false),
  f('refiner_checkpoint', 'Optional[str]', null, CHECKPOINT),
  f('refiner_switch_at', 'Optional[float]', null, 0.8),
  f('disable_extra_networks', 'Optional[bool]', false, true),
  // Annotated `Image`, sent as base64; only read by a hires-fix pass (txt2img with enable_hr).
  f('firstpass_image', 'Optional[str]', null, PNG),
  f('comments', 'Optional[dict]', null, { note: 'from the compat suite' }),
];

/** Fields models.py adds to both generation models. */
const API_ONLY: FieldFact[] = [
  f('sampler_index', 'str', 'Euler', 'Euler a'),
  f('script_name', 'str (default None)', null, 'Ultimate SD upscale', {
    ...refused(422, 'not a script of a stock install', "Script 'Ultimate SD upscale' not found"),
    more: [also('', 200, 'an empty name runs no script')],
  }),
  f('script_args', 'list', [], []),
  f('send_images', 'bool', true, false),
  f('save_images', 'bool', false, true),
  // Refiner is one of 1.10.1's stock always-on scripts (modules/processing_scripts); its args: enable, checkpoint, switch at.
  f('alwayson_scripts', 'dict', {}, { Refiner: { args: [false, '', 0.8] } }),
  f('force_task_id', 'str (default None)', null, 'task(compat-suite)'),
  f('infotext', 'str (default None)', null, INFOTEXT),
];

export const TXT2IMG: FieldFact[] = [
  ...PROCESSING,
  // The base class's default wins (see the top): None, so a hires fix needs it sent (the base request does).
  f('denoising_strength', 'Optional[float]', null, 0.7),
  f('enable_hr', 'Optional[bool]', false, true),
  // Legacy: any non-zero value replaces width and height both, so clients send 0.
  f('firstphase_width', 'Optional[int]', 0, 0),
  f('firstphase_height', 'Optional[int]', 0, 0),
  f('hr_scale', 'Optional[float]', 2.0, 1.5),
  f('hr_upscaler', 'Optional[str]', null, 'Latent'),
  f('hr_second_pass_steps', 'Optional[int]', 0, 1),
  f('hr_resize_x', 'Optional[int]', 0, 128),
  f('hr_resize_y', 'Optional[int]', 0, 128),
  f('hr_checkpoint_name', 'Optional[str]', null, CHECKPOINT),
  f('hr_sampler_name', 'Optional[str]', null, 'Euler a'),
  f('hr_scheduler', 'Optional[str]', null, 'Karras'),
  f('hr_prompt', 'Optional[str]', '', 'sharper details'),
  f('hr_negative_prompt', 'Optional[str]', '', 'blurry'),
  ...API_ONLY,
];

export const IMG2IMG: FieldFact[] = [
  ...PROCESSING,
  f('init_images', 'list (default None)', null, [PNG], {
    required: true,
    more: [also(null, 404, 'the handler refuses a request without init images', 'Init image not found')],
  }),
  f('resize_mode', 'Optional[int]', 0, 1),
  // models.py's own field replaces the derived one: not Optional, 0.75.
  f('denoising_strength', 'float', 0.75, 0.5, { more: [also('0.6', 200, 'pydantic v1 coerces a numeric string')] }),
  f('image_cfg_scale', 'Optional[float]', null, 1.5),
  f('mask', 'str (default None)', null, MASK),
  f('mask_blur_x', 'Optional[int]', 4, 8),
  f('mask_blur_y', 'Optional[int]', 4, 8),
  f('mask_blur', 'Optional[int]', null, 8),
  f('mask_round', 'Optional[bool]', true, false),
  f('inpainting_fill', 'Optional[int]', 0, 1),
  f('inpaint_full_res', 'Optional[bool]', true, false),
  f('inpaint_full_res_padding', 'Optional[int]', 0, 32),
  f('inpainting_mask_invert', 'Optional[int]', 0, 1),
  f('initial_noise_multiplier', 'Optional[float]', null, 0.98),
  // Annotated `Image`; only read together with a mask.
  f('latent_mask', 'Optional[str]', null, MASK),
  f('include_init_images', 'bool', false, true),
  ...API_ONLY,
];

/** ExtrasSingleImageRequest: ExtrasBaseRequest's fields plus `image`. None of them is Optional. */
export const EXTRAS: FieldFact[] = [
  f('resize_mode', 'Literal[0, 1]', 0, 1, { more: [also(2, 422, 'not one of the Literal values 0, 1')] }),
  f('show_extras_results', 'bool', true, false),
  f('gfpgan_visibility', 'float (ge=0, le=1)', 0, 0.5, { more: [also(1.5, 422, 'above le=1')] }),
  f('codeformer_visibility', 'float (ge=0, le=1)', 0, 0.5),
  f('codeformer_weight', 'float (ge=0, le=1)', 0, 0.5),
  f('upscaling_resize', 'float (gt=0)', 2, 1.5, {
    more: [also(0.5, 200, '1.10 allows a factor below 1 (gt=0)'), also(0, 422, 'not above gt=0')],
  }),
  f('upscaling_resize_w', 'int (ge=1)', 512, 128),
  f('upscaling_resize_h', 'int (ge=1)', 512, 128),
  f('upscaling_crop', 'bool', true, false),
  f('upscaler_1', 'str', 'None', 'Lanczos'),
  f('upscaler_2', 'str', 'None', 'Nearest'),
  f('extras_upscaler_2_visibility', 'float (ge=0, le=1)', 0, 0.5),
  f('upscale_first', 'bool', false, true),
  f('image', 'str', '', PNG, {
    required: true,
    more: [also(null, 422, 'pydantic v1: null is not allowed for a str field that is not Optional')],
  }),
];

/** PNGInfoRequest: one required field. The answer is PNGInfoResponse {info, items, parameters}. */
export const PNG_INFO: FieldFact[] = [
  f('image', 'str (required)', undefined, PNG_WITH_INFOTEXT, {
    required: true,
    more: [also(null, 422, 'a required field')],
  }),
];

/** The request every variant starts from: small, and complete enough that A1111 itself would run each variant. */
export const BASE = {
  txt2img: { prompt: 'compat', steps: 1, width: 64, height: 64, denoising_strength: 0.5 },
  img2img: { prompt: 'compat', steps: 1, width: 64, height: 64, init_images: [PNG] },
  extras: { image: PNG },
  pngInfo: { image: PNG_WITH_INFOTEXT },
};
