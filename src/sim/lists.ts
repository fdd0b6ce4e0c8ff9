import { freemem, totalmem } from 'node:os';

// The static lists A1111 1.10 answers with (samplers, schedulers, upscalers, flags), as the simulator
// reports them. Values follow A1111's API shapes; only what a client could reasonably read is kept.

export interface SamplerItem {
  name: string;
  aliases: string[];
  options: Record<string, string>;
}

const T = 'True';
export const SAMPLERS: readonly SamplerItem[] = [
  { name: 'DPM++ 2M', aliases: ['k_dpmpp_2m'], options: { scheduler: 'karras' } },
  { name: 'DPM++ SDE', aliases: ['k_dpmpp_sde'], options: { scheduler: 'karras', second_order: T, brownian_noise: T } },
  { name: 'DPM++ 2M SDE', aliases: ['k_dpmpp_2m_sde'], options: { scheduler: 'exponential', brownian_noise: T } },
  {
    name: 'DPM++ 2M SDE Heun',
    aliases: ['k_dpmpp_2m_sde_heun'],
    options: { scheduler: 'exponential', brownian_noise: T, solver_type: 'heun' },
  },
  { name: 'DPM++ 2S a', aliases: ['k_dpmpp_2s_a'], options: { scheduler: 'karras', uses_ensd: T, second_order: T } },
  {
    name: 'DPM++ 3M SDE',
    aliases: ['k_dpmpp_3m_sde'],
    options: { scheduler: 'exponential', discard_next_to_last_sigma: T, brownian_noise: T },
  },
  { name: 'Euler a', aliases: ['k_euler_a', 'k_euler_ancestral'], options: { uses_ensd: T } },
  { name: 'Euler', aliases: ['k_euler'], options: {} },
  { name: 'LMS', aliases: ['k_lms'], options: {} },
  { name: 'Heun', aliases: ['k_heun'], options: { second_order: T } },
  { name: 'DPM2', aliases: ['k_dpm_2'], options: { discard_next_to_last_sigma: T, second_order: T } },
  { name: 'DPM2 a', aliases: ['k_dpm_2_a'], options: { discard_next_to_last_sigma: T, uses_ensd: T, second_order: T } },
  { name: 'DPM fast', aliases: ['k_dpm_fast'], options: { uses_ensd: T } },
  { name: 'DPM adaptive', aliases: ['k_dpm_ad'], options: { uses_ensd: T } },
  { name: 'Restart', aliases: ['restart'], options: { scheduler: 'karras', second_order: T } },
  { name: 'DDIM', aliases: ['ddim'], options: {} },
  { name: 'DDIM CFG++', aliases: ['ddim_cfgpp'], options: {} },
  { name: 'PLMS', aliases: ['plms'], options: {} },
  { name: 'UniPC', aliases: ['unipc'], options: {} },
  { name: 'LCM', aliases: ['k_lcm'], options: {} },
];

export interface SchedulerItem {
  name: string;
  label: string;
  aliases: string[] | null;
  default_rho: number;
  need_inner_model: boolean;
}

const scheduler = (name: string, label: string, rho = -1, inner = false, aliases: string[] | null = null) => ({
  name,
  label,
  aliases,
  default_rho: rho,
  need_inner_model: inner,
});

export const SCHEDULERS: readonly SchedulerItem[] = [
  scheduler('automatic', 'Automatic'),
  scheduler('uniform', 'Uniform', -1, true),
  scheduler('karras', 'Karras', 7),
  scheduler('exponential', 'Exponential'),
  scheduler('polyexponential', 'Polyexponential', 1),
  scheduler('sgm_uniform', 'SGM Uniform', -1, true, ['SGMUniform']),
  scheduler('kl_optimal', 'KL Optimal'),
  scheduler('align_your_steps', 'Align Your Steps'),
  scheduler('simple', 'Simple', -1, true),
  scheduler('normal', 'Normal', -1, true),
  scheduler('ddim', 'DDIM', -1, true),
  scheduler('beta', 'Beta', -1, true),
];

/**
 * A1111's get_sampler_and_scheduler: a sampler name may carry a scheduler suffix ("DPM++ 2M Karras"); aliases
 * resolve to the sampler; an unknown name falls back to the first sampler; the sampler's own default scheduler is
 * reported as Automatic.
 */
export function resolveSampler(
  name: string | null,
  schedulerName: string | null,
): { sampler: string; scheduler: string } {
  const lookup = (s: string | null) =>
    SCHEDULERS.find((x) => s !== null && (x.name === s || x.label === s || x.aliases?.includes(s)));
  let found = lookup(schedulerName) ?? SCHEDULERS[0];
  let base = name || SAMPLERS[0].name;
  for (const s of SCHEDULERS) {
    const option = [s.label, s.name, ...(s.aliases ?? [])].find((o) => base.endsWith(` ${o}`));
    if (option) {
      found = s;
      base = base.slice(0, -(option.length + 1));
      break;
    }
  }
  const lower = base.toLowerCase();
  const sampler =
    SAMPLERS.find((x) => x.name === base) ??
    SAMPLERS.find((x) => x.name.toLowerCase() === lower || x.aliases.includes(base)) ??
    SAMPLERS[0];
  if (sampler.options.scheduler === found.name) found = SCHEDULERS[0];
  return { sampler: sampler.name, scheduler: found.label };
}

export interface UpscalerItem {
  name: string;
  model_name: string | null;
  model_path: string | null;
  model_url: string | null;
  scale: number;
}

/** How an upscaler is carried out: real resizing with sharp, or a simulated model (lanczos plus a time cost). */
export type UpscalerKind = 'none' | 'lanczos' | 'nearest' | 'model';

interface UpscalerSpec extends UpscalerItem {
  kind: UpscalerKind;
}

const up = (name: string, kind: UpscalerKind, scale = 4, modelName: string | null = null): UpscalerSpec => ({
  name,
  model_name: modelName,
  model_path: null,
  model_url: null,
  scale,
  kind,
});

const UPSCALER_SPECS: readonly UpscalerSpec[] = [
  up('None', 'none'),
  up('Lanczos', 'lanczos'),
  up('Nearest', 'nearest'),
  up('DAT x2', 'model', 2),
  up('DAT x3', 'model', 3),
  up('DAT x4', 'model', 4),
  up('ESRGAN_4x', 'model', 4, 'ESRGAN_4x'),
  up('LDSR', 'model', 4),
  up('R-ESRGAN 4x+', 'model', 4),
  up('R-ESRGAN 4x+ Anime6B', 'model', 4),
  up('R-ESRGAN General 4xV3', 'model', 4),
  up('R-ESRGAN General WDN 4xV3', 'model', 4),
  up('R-ESRGAN AnimeVideo', 'model', 4),
  up('R-ESRGAN 2x+', 'model', 2),
  up('ScuNET GAN', 'model', 4, 'ScuNET'),
  up('ScuNET PSNR', 'model', 4, 'ScuNET'),
  up('SwinIR 4x', 'model', 4, 'SwinIR 4x'),
];

export const UPSCALERS: readonly UpscalerItem[] = UPSCALER_SPECS.map(({ kind: _kind, ...item }) => item);

/** The upscaler named (exactly, or case-insensitively), or undefined. */
export function findUpscaler(name: string): UpscalerSpec | undefined {
  return (
    UPSCALER_SPECS.find((u) => u.name === name) ??
    UPSCALER_SPECS.find((u) => u.name.toLowerCase() === name.toLowerCase())
  );
}

export const FACE_RESTORERS = [
  { name: 'CodeFormer', cmd_dir: null },
  { name: 'GFPGAN', cmd_dir: null },
];

export const LATENT_UPSCALE_MODES = [
  { name: 'Latent' },
  { name: 'Latent (antialiased)' },
  { name: 'Latent (bicubic)' },
  { name: 'Latent (bicubic antialiased)' },
  { name: 'Latent (nearest)' },
  { name: 'Latent (nearest-exact)' },
];

/** A1111's cmd-flags, as a simulator started with --api --nowebui answers them. */
export function cmdFlags(port: number, modelsDir: string): Record<string, unknown> {
  return {
    api: true,
    nowebui: true,
    listen: false,
    port,
    api_auth: null,
    api_log: false,
    api_server_stop: false,
    xformers: false,
    opt_sdp_attention: false,
    medvram: false,
    lowvram: false,
    precision: 'autocast',
    no_half: false,
    no_half_vae: false,
    skip_torch_cuda_test: false,
    ckpt: null,
    ckpt_dir: `${modelsDir}/stableDiffusion`,
    vae_dir: `${modelsDir}/sdVae`,
    lora_dir: `${modelsDir}/lora`,
    data_dir: modelsDir,
    models_dir: modelsDir,
    disable_safe_unpickle: false,
    enable_insecure_extension_access: false,
    sdflow_sim: true,
  };
}

/** A1111's /sdapi/v1/memory: real host RAM, and a simulated 24 GB GPU whose use grows with the loaded model. */
export function memoryReport(loadedModelBytes: number): Record<string, unknown> {
  const total = totalmem();
  const free = freemem();
  const gpuTotal = 24 * 1024 ** 3;
  const allocated = loadedModelBytes > 0 ? loadedModelBytes + 1.2 * 1024 ** 3 : 0;
  const reserved = allocated * 1.1;
  const current = Math.round(allocated);
  return {
    ram: { free, used: total - free, total },
    cuda: {
      system: { free: Math.round(gpuTotal - reserved), used: Math.round(reserved), total: gpuTotal },
      active: { current, peak: current },
      allocated: { current, peak: current },
      reserved: { current: Math.round(reserved), peak: Math.round(reserved) },
      inactive: { current: 0, peak: 0 },
      events: { retries: 0, oom: 0 },
    },
  };
}
