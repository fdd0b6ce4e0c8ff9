import type { Checkpoint, ModelFile } from './catalog.js';
import type { JobOutcome, Simulator } from './engine.js';
import { apiError } from './errors.js';
import { type DecodedImage, decodeImage, type Fit, toRawMask, toRawRgb } from './images.js';
import { formatInfotext, type InfotextParams } from './infotext.js';
import { resolveSampler } from './lists.js';
import { checkJobPixels, type GenerationKind, type GenerationRequest, parseGenerationBody } from './params.js';
import { insertTextChunks } from './png.js';
import { hash32, randomSeed } from './random.js';
import { blendWithInit, encodePng, gridRaw, renderPattern } from './render.js';
import { planScript, type ScriptPlan, type ScriptRunContext } from './scripts/index.js';
import { SdState } from './state.js';

// txt2img and img2img, shaped like A1111's processing: seeds resolved up front, n_iter iterations of `steps`
// simulated sampling steps over batch_size images each, then a VAE decode per image. Interrupt ends the job at the
// next step boundary and returns what was made (the current iteration partially sampled); skip ends only the
// current iteration. A selected script (script_name) runs instead, calling that processing once per pass it
// makes. PNGs are encoded after the lock is released, as A1111 encodes its API answer.

export const SIM_VERSION = 'sdflow-sim';

export interface GenerationResponse {
  images: string[];
  parameters: Record<string, unknown>;
  info: string;
}

/** Everything a job needs that can be checked before it queues: a bad input is rejected without waiting. */
export interface PreparedJob {
  kind: GenerationKind;
  request: GenerationRequest;
  parameters: Record<string, unknown>;
  sampler: string;
  scheduler: string;
  overrideCheckpoint?: Checkpoint;
  overrideVae?: { name: string; file?: ModelFile };
  /** img2img: the init images as sent (scripts that tile or extend read them at their own size). */
  sources: DecodedImage[];
  /** img2img: init images and mask at exactly the output size, raw. */
  inits: Buffer[];
  mask?: Buffer;
  /** A1111's all_prompts and all_negative_prompts: one per image. */
  prompts: string[];
  negativePrompts: string[];
  seeds: number[];
  subseeds: number[];
  /** The image size A1111 decodes to: the requested size rounded down to a multiple of 8. */
  width: number;
  height: number;
  /** Sampling steps per iteration (img2img runs a denoising-strength share of them, as A1111 does). */
  samplingSteps: number;
  /** A script's extra_generation_params, written into the infotext. */
  extraParams: InfotextParams;
  /** One pass of a script: the script sets job_count, and the ETA comes from progress, as in A1111. */
  scriptPass: boolean;
  /** The selected script, its arguments already checked. */
  script?: ScriptPlan;
}

/** What a script changes in A1111's `p` before one process_images pass. */
export interface JobChanges {
  request?: Partial<GenerationRequest>;
  /** One prompt per image (prompt matrix): the pass makes as many images. */
  prompts?: string[];
  negativePrompts?: string[];
  seeds?: number[];
  inits?: Buffer[];
  extraParams?: InfotextParams;
}

/** One image of an answer: raw RGB, its size and its infotext. */
export interface OutputImage {
  raw: Buffer;
  width: number;
  height: number;
  text: string;
}

/** What A1111's process_images (or a script's run) returns; `job` holds the parameters the info JSON reports. */
export interface Processed {
  job: PreparedJob;
  images: OutputImage[];
  indexOfFirstImage: number;
}

interface RenderedImage {
  raw: Buffer;
  index: number;
}

/** The job's settings once its checkpoint is loaded: the VAE, clip skip and the options in effect. */
export interface JobSetup {
  checkpoint: Checkpoint;
  vaeName: string | null;
  vaeHash: string | null;
  clipSkip: number;
  settings: Record<string, unknown>;
}

interface JobResult extends JobSetup {
  processed: Processed;
  jobTimestamp: string;
}

const floor8 = (n: number) => Math.max(8, Math.floor(n / 8) * 8);
const RESIZE_FITS: Record<number, Fit> = { 0: 'fill', 1: 'cover', 2: 'contain', 3: 'fill' };

/**
 * A1111's all_seeds/all_subseeds for `count` images: seed, seed+1, … (or one seed for all when a variation
 * strength is set).
 */
export function resolveSeeds(
  r: Pick<GenerationRequest, 'seed' | 'subseed' | 'subseed_strength' | 'batch_size' | 'n_iter'>,
  count = r.batch_size * r.n_iter,
) {
  const seed = r.seed === -1 ? randomSeed() : r.seed;
  const subseed = r.subseed === -1 ? randomSeed() : r.subseed;
  const seeds = Array.from({ length: count }, (_, i) => seed + (r.subseed_strength === 0 ? i : 0));
  const subseeds = Array.from({ length: count }, (_, i) => subseed + i);
  return { seeds, subseeds };
}

const samplingStepsOf = (kind: GenerationKind, r: GenerationRequest) =>
  kind === 'img2img' ? Math.trunc(Math.min(r.denoising_strength, 0.999) * r.steps) + 1 : r.steps;

async function prepareImg2img(r: GenerationRequest, width: number, height: number) {
  // As A1111: no init_images at all is its 404; an empty list is refused as input.
  if (!r.init_images) throw apiError(404, 'Init image not found');
  if (r.init_images.length === 0) throw apiError(422, 'init_images: Init image not found');
  const fit = RESIZE_FITS[r.resize_mode] ?? 'fill';
  const sources: DecodedImage[] = [];
  for (const [i, img] of r.init_images.entries()) sources.push(await decodeImage(img, `init_images[${i}]`));
  const inits = await Promise.all(sources.map((d) => toRawRgb(d, width, height, fit)));
  let mask: Buffer | undefined;
  if (r.mask) {
    const blur = r.mask_blur ?? r.mask_blur_x ?? 4;
    mask = await toRawMask(await decodeImage(r.mask, 'mask'), width, height, blur);
    if (r.inpainting_mask_invert) for (let i = 0; i < mask.length; i++) mask[i] = 255 - mask[i];
  }
  return { sources, inits, mask };
}

/** The checkpoint and VAE named in override_settings, resolved now so an unknown name is a 422 before queueing. */
async function resolveOverrides(sim: Simulator, r: GenerationRequest) {
  const overrides = r.override_settings ?? {};
  const ckpt = overrides.sd_model_checkpoint;
  const vae = overrides.sd_vae;
  return {
    overrideCheckpoint:
      ckpt === undefined || ckpt === null
        ? undefined
        : await sim.requireCheckpoint(ckpt, 'override_settings.sd_model_checkpoint'),
    overrideVae: vae === undefined || vae === null ? undefined : await sim.requireVae(vae, 'override_settings.sd_vae'),
  };
}

/** A script's pass: the job with the script's changes, its seeds, steps and sampler worked out again. */
function deriveJob(job: PreparedJob, changes: JobChanges): PreparedJob {
  const request = { ...job.request, ...changes.request };
  const count = changes.prompts?.length ?? request.batch_size * request.n_iter;
  const { seeds, subseeds } = resolveSeeds(request, count);
  const { sampler, scheduler } = resolveSampler(request.sampler_name ?? request.sampler_index, request.scheduler);
  const width = floor8(request.width);
  const height = floor8(request.height);
  return {
    ...job,
    request,
    sampler,
    scheduler,
    width,
    height,
    inits: changes.inits ?? job.inits,
    mask: width === job.width && height === job.height ? job.mask : undefined,
    prompts: changes.prompts ?? Array(count).fill(request.prompt),
    negativePrompts: changes.negativePrompts ?? Array(count).fill(request.negative_prompt),
    seeds: changes.seeds ?? seeds,
    subseeds,
    samplingSteps: samplingStepsOf(job.kind, request),
    extraParams: { ...job.extraParams, ...changes.extraParams },
    scriptPass: true,
    script: undefined,
  };
}

async function prepare(sim: Simulator, kind: GenerationKind, body: unknown): Promise<PreparedJob> {
  const { parameters, request: r } = parseGenerationBody(kind, body);
  const width = floor8(r.width);
  const height = floor8(r.height);
  if (!r.script_name) checkJobPixels(r.batch_size * r.n_iter * width * height, 'batch_size × n_iter × width × height');
  const overrides = await resolveOverrides(sim, r);
  const { sampler, scheduler } = resolveSampler(r.sampler_name ?? r.sampler_index, r.scheduler);
  const img2img = kind === 'img2img' ? await prepareImg2img(r, width, height) : { sources: [], inits: [] };
  if (kind === 'img2img' && !r.include_init_images) Object.assign(parameters, { init_images: null, mask: null });
  const { seeds, subseeds } = resolveSeeds(r);
  const job: PreparedJob = {
    kind,
    request: r,
    parameters,
    sampler,
    scheduler,
    ...overrides,
    ...img2img,
    prompts: Array(seeds.length).fill(r.prompt),
    negativePrompts: Array(seeds.length).fill(r.negative_prompt),
    seeds,
    subseeds,
    width,
    height,
    samplingSteps: samplingStepsOf(kind, r),
    extraParams: {},
    scriptPass: false,
  };
  if (!r.script_name) return job;
  job.script = planScript({ job, settings: effectiveSettings(sim, job), derive: (changes) => deriveJob(job, changes) });
  return job;
}

/** The options in effect for this job: the global ones with the request's override_settings on top. */
function effectiveSettings(sim: Simulator, job: PreparedJob): Record<string, unknown> {
  return { ...sim.options, ...(job.request.override_settings ?? {}) };
}

/** After the job: A1111 keeps override_settings only when override_settings_restore_afterwards is false. */
function persistOverrides(sim: Simulator, job: PreparedJob, checkpoint: Checkpoint, vaeName: string | undefined) {
  if (job.overrideCheckpoint === undefined && !sim.options.sd_model_checkpoint)
    sim.options.sd_model_checkpoint = checkpoint.title;
  if (job.request.override_settings_restore_afterwards || !job.request.override_settings) return;
  const { sd_model_checkpoint: _c, sd_vae: _v, ...rest } = job.request.override_settings;
  Object.assign(sim.options, rest);
  if (job.overrideCheckpoint) sim.options.sd_model_checkpoint = checkpoint.title;
  if (vaeName !== undefined) sim.options.sd_vae = vaeName;
}

function styleHashes(job: PreparedJob, setup: JobSetup, index: number) {
  const r = job.request;
  const { checkpoint, vaeName, clipSkip } = setup;
  const style = hash32(
    'style',
    job.prompts[index],
    job.negativePrompts[index],
    checkpoint.sha256,
    vaeName ?? '',
    clipSkip,
  );
  const detail = hash32(
    'detail',
    job.sampler,
    job.scheduler,
    r.steps,
    r.cfg_scale,
    r.tiling ? 1 : 0,
    job.kind,
    r.denoising_strength,
  );
  return { style, detail: job.kind === 'img2img' ? hash32(detail, index % Math.max(1, job.inits.length)) : detail };
}

function renderImage(job: PreparedJob, setup: JobSetup, index: number, done: number): Buffer {
  const r = job.request;
  const { style, detail } = styleHashes(job, setup, index);
  const pattern = renderPattern({
    width: job.width,
    height: job.height,
    seed: job.seeds[index],
    subseed: job.subseeds[index],
    subseedStrength: r.subseed_strength,
    style,
    detail,
    cfgScale: r.cfg_scale,
    done,
  });
  if (job.kind !== 'img2img') return pattern;
  const init = job.inits[index % job.inits.length];
  return blendWithInit(pattern, init, r.denoising_strength, job.mask);
}

interface LivePreview {
  every: number;
  render: (done: number) => Promise<Buffer>;
}

/**
 * The simulated sampling of `steps` steps over `images` images at the job's size; returns the fraction of the
 * steps done. Every `show_progress_every_n_steps` steps (with live previews on) it offers a preview: the
 * iteration's first image, as noisy as its sampling is unfinished.
 */
async function sample(
  sim: Simulator,
  job: PreparedJob,
  steps: number,
  images: number,
  itersLeft: number,
  preview: LivePreview | undefined,
): Promise<number> {
  const { state, opts } = sim;
  const stepMs = ((opts.stepMs * (job.width * job.height)) / (512 * 512)) * images;
  const vaeMs = opts.vaeMs * images;
  state.samplingSteps = steps;
  state.samplingStep = 0;
  let cursor = Date.now();
  for (let s = 1; s <= steps; s++) {
    cursor += stepMs;
    if (!job.scriptPass)
      state.expectedEnd = cursor + (steps - s) * stepMs + vaeMs + itersLeft * (steps * stepMs + vaeMs);
    await state.sleepUntil(cursor);
    if (state.interrupted || state.skipped) break;
    state.samplingStep = s;
    if (preview && s % preview.every === 0) state.setPreview(() => preview.render(s / steps));
  }
  return state.samplingStep / steps;
}

async function runIterations(sim: Simulator, job: PreparedJob, setup: JobSetup, outcome: JobOutcome) {
  const { state, opts } = sim;
  const r = job.request;
  const images: RenderedImage[] = [];
  const jobName = state.job;
  // A1111 draws a preview every show_progress_every_n_steps steps when live previews are on (-1 or 0: none).
  const previewEvery =
    setup.settings.live_previews_enable === false ? 0 : Math.trunc(Number(setup.settings.show_progress_every_n_steps));
  for (let n = 0; n < r.n_iter; n++) {
    if (state.skipped) state.skipped = false;
    if (state.interrupted) break;
    const first = n * r.batch_size;
    // The last iteration of a prompt matrix may hold fewer images than batch_size; an empty one ends the job.
    const size = Math.min(r.batch_size, job.seeds.length - first);
    if (size <= 0) break;
    state.job = r.n_iter > 1 ? `Batch ${n + 1} out of ${r.n_iter}` : jobName;
    const done = await sample(
      sim,
      job,
      job.samplingSteps,
      size,
      r.n_iter - n - 1,
      previewEvery > 0
        ? { every: previewEvery, render: (at) => encodePng(renderImage(job, setup, first, at), job.width, job.height) }
        : undefined,
    );
    const decodeEnd = Date.now() + opts.vaeMs * size;
    for (let index = first; index < first + size; index++) {
      images.push({ raw: renderImage(job, setup, index, done), index });
      await SdState.sleep(0);
    }
    await SdState.sleep(decodeEnd - Date.now());
    if (done < 1 && !state.interrupted) outcome.skipped = (Number(outcome.skipped) || 0) + 1;
    state.nextJob();
  }
  return images;
}

/**
 * A1111 adds a grid first when it may save one (save_images, as the API sets do_not_save_grid from it) and
 * return_grid is on, unless grid_only_if_multiple and there is a single image.
 */
function wantsGrid(saveImages: boolean, settings: Record<string, unknown>, images: number): boolean {
  const unwanted = images < 2 && settings.grid_only_if_multiple !== false;
  return saveImages && settings.return_grid !== false && !unwanted;
}

/** A1111's process_images: runs the job's iterations; each image carries its infotext, a grid first if wanted. */
async function processImages(
  sim: Simulator,
  job: PreparedJob,
  setup: JobSetup,
  outcome: JobOutcome,
): Promise<Processed> {
  const rendered = await runIterations(sim, job, setup, outcome);
  const size = { width: job.width, height: job.height };
  const images = rendered.map((img) => ({ raw: img.raw, ...size, text: infotext(job, setup, img.index) }));
  if (!wantsGrid(job.request.save_images, setup.settings, images.length)) return { job, images, indexOfFirstImage: 0 };
  const grid = gridRaw(images);
  return { job, images: [{ ...grid, text: infotext(job, setup, 0) }, ...images], indexOfFirstImage: 1 };
}

/** What the job runs with once its checkpoint is loaded: the VAE, clip skip and the options in effect. */
async function jobSetup(sim: Simulator, job: PreparedJob, checkpoint: Checkpoint): Promise<JobSetup> {
  const settings = effectiveSettings(sim, job);
  const selected = job.overrideVae?.name ?? (typeof sim.options.sd_vae === 'string' ? sim.options.sd_vae : 'Automatic');
  const special = selected === 'Automatic' || selected === 'None';
  const vaeFile = job.overrideVae?.file ?? (special ? undefined : sim.catalog.findVae(selected));
  const vaeHash = vaeFile ? ((await sim.catalog.fileSha256(vaeFile))?.slice(0, 10) ?? null) : null;
  const clipSkip = Math.max(1, Number(settings.CLIP_stop_at_last_layers) || 1);
  return { checkpoint, vaeName: vaeFile ? vaeFile.name : null, vaeHash, clipSkip, settings };
}

/** The planned time of the job's sampling and decoding, for eta_relative. */
function plannedMs(sim: Simulator, job: PreparedJob): number {
  const r = job.request;
  const stepMs = (sim.opts.stepMs * job.width * job.height * r.batch_size) / (512 * 512);
  return r.n_iter * (job.samplingSteps * stepMs + sim.opts.vaeMs * r.batch_size);
}

/** What a script's run may do: process a pass (A1111's process_images), or sample without making images. */
function scriptContext(sim: Simulator, setup: JobSetup, outcome: JobOutcome): ScriptRunContext {
  return {
    state: sim.state,
    settings: setup.settings,
    process: (pass) => processImages(sim, pass, setup, outcome),
    infotext: (pass, index) => infotext(pass, setup, index),
    sampleOnly: async (pass, steps) => {
      await sample(sim, pass, steps, pass.request.batch_size, 0, undefined);
      sim.state.nextJob();
    },
  };
}

async function runJob(sim: Simulator, job: PreparedJob, outcome: JobOutcome): Promise<JobResult> {
  const { state } = sim;
  const r = job.request;
  state.begin(job.kind === 'txt2img' ? 'scripts_txt2img' : 'scripts_img2img', job.script?.jobCount ?? r.n_iter);
  const jobTimestamp = state.jobTimestamp;
  try {
    const checkpoint = job.overrideCheckpoint ?? (await sim.defaultCheckpoint());
    if (!job.script)
      state.expectedEnd = Date.now() + plannedMs(sim, job) + (sim.isLoaded(checkpoint) ? 0 : sim.opts.loadMs);
    outcome.loadedModel = await sim.loadCheckpoint(checkpoint);
    const setup = await jobSetup(sim, job, checkpoint);
    const processed = job.script
      ? await job.script.run(scriptContext(sim, setup, outcome))
      : await processImages(sim, job, setup, outcome);
    persistOverrides(sim, job, checkpoint, job.overrideVae?.name);
    Object.assign(outcome, {
      interrupted: state.interrupted,
      images: processed.images.length,
      steps: job.samplingSteps,
    });
    Object.assign(outcome, { size: `${job.width}x${job.height}`, batch: `${r.batch_size}x${r.n_iter}` });
    if (job.script) outcome.script = job.script.title;
    return { ...setup, processed, jobTimestamp };
  } finally {
    state.end();
  }
}

function infotextParams(job: PreparedJob, setup: JobSetup, index: number): InfotextParams {
  const r = job.request;
  const s = setup.settings;
  const variation = r.subseed_strength !== 0;
  const params: InfotextParams = {
    Steps: r.steps,
    Sampler: job.sampler,
    'Schedule type': job.scheduler === 'Automatic' ? undefined : job.scheduler,
    'CFG scale': r.cfg_scale,
    Seed: job.seeds[index],
    'Face restoration': r.restore_faces ? String(s.face_restoration_model ?? 'CodeFormer') : undefined,
    Size: `${r.width}x${r.height}`,
    'Model hash': s.add_model_hash_to_info === false ? undefined : setup.checkpoint.hash,
    Model: s.add_model_name_to_info === false ? undefined : setup.checkpoint.shortName,
    'VAE hash': s.add_vae_hash_to_info === false ? undefined : setup.vaeHash,
    VAE: s.add_vae_name_to_info === false ? undefined : setup.vaeName,
    'Variation seed': variation ? job.subseeds[index] : undefined,
    'Variation seed strength': variation ? r.subseed_strength : undefined,
    'Seed resize from':
      r.seed_resize_from_w > 0 && r.seed_resize_from_h > 0
        ? `${r.seed_resize_from_w}x${r.seed_resize_from_h}`
        : undefined,
    ...extraGenerationParams(job),
    'Clip skip': setup.clipSkip > 1 ? setup.clipSkip : undefined,
    ENSD: Number(s.eta_noise_seed_delta) ? Number(s.eta_noise_seed_delta) : undefined,
    Tiling: r.tiling ? 'True' : undefined,
    // A1111 writes the extra_generation_params of scripts after its own and before the version.
    ...job.extraParams,
    Version: s.add_version_to_infotext === false ? undefined : SIM_VERSION,
  };
  return params;
}

function extraGenerationParams(job: PreparedJob): Record<string, number> {
  const r = job.request;
  const extra: Record<string, number> = {};
  if (job.kind === 'img2img' || r.enable_hr) extra['Denoising strength'] = r.denoising_strength;
  if (job.kind === 'img2img' && job.mask) extra['Mask blur'] = r.mask_blur ?? r.mask_blur_x;
  return extra;
}

/** The infotext of the job's image `index`. */
function infotext(job: PreparedJob, setup: JobSetup, index: number): string {
  return formatInfotext(job.prompts[index], job.negativePrompts[index], infotextParams(job, setup, index));
}

/** A1111's Processed.js(): the info JSON string. */
function infoJson(job: PreparedJob, res: JobResult, infotexts: string[], indexOfFirstImage: number): string {
  const r = job.request;
  return JSON.stringify({
    prompt: job.prompts[0] ?? r.prompt,
    all_prompts: job.prompts,
    negative_prompt: job.negativePrompts[0] ?? r.negative_prompt,
    all_negative_prompts: job.negativePrompts,
    seed: job.seeds[0],
    all_seeds: job.seeds,
    subseed: job.subseeds[0],
    all_subseeds: job.subseeds,
    subseed_strength: r.subseed_strength,
    width: r.width,
    height: r.height,
    sampler_name: job.sampler,
    cfg_scale: r.cfg_scale,
    steps: r.steps,
    batch_size: r.batch_size,
    restore_faces: r.restore_faces,
    face_restoration_model: r.restore_faces ? (res.settings.face_restoration_model ?? 'CodeFormer') : null,
    sd_model_name: res.checkpoint.shortName,
    sd_model_hash: res.checkpoint.hash,
    sd_vae_name: res.vaeName,
    sd_vae_hash: res.vaeHash,
    seed_resize_from_w: r.seed_resize_from_w,
    seed_resize_from_h: r.seed_resize_from_h,
    denoising_strength: job.kind === 'img2img' || r.enable_hr ? r.denoising_strength : null,
    extra_generation_params: { ...extraGenerationParams(job), ...job.extraParams },
    index_of_first_image: indexOfFirstImage,
    infotexts,
    styles: r.styles ?? [],
    job_timestamp: res.jobTimestamp,
    clip_skip: res.clipSkip,
    is_using_inpainting_conditioning: false,
    version: SIM_VERSION,
  });
}

async function encodeWithInfotext(image: OutputImage): Promise<string> {
  const png = await encodePng(image.raw, image.width, image.height);
  return insertTextChunks(png, { parameters: image.text }).toString('base64');
}

/** The answer: the PNGs, the parameters echo, and the info JSON. */
async function respond(job: PreparedJob, res: JobResult): Promise<GenerationResponse> {
  const { processed } = res;
  const images: string[] = [];
  if (job.request.send_images) for (const image of processed.images) images.push(await encodeWithInfotext(image));
  const infotexts = processed.images.map((image) => image.text);
  return {
    images,
    parameters: job.parameters,
    info: infoJson(processed.job, res, infotexts, processed.indexOfFirstImage),
  };
}

/** POST /sdapi/v1/txt2img and /sdapi/v1/img2img. */
export async function runGeneration(sim: Simulator, kind: GenerationKind, body: unknown): Promise<GenerationResponse> {
  sim.injectJobFault();
  const job = await prepare(sim, kind, body);
  const result = await sim.withJob(kind, (outcome) => runJob(sim, job, outcome));
  return respond(job, result);
}
