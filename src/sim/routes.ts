import { queryFlag } from '../a1111/query.js';
import { A1111_SCRIPT_NAMES } from '../a1111/scripts.js';
import type { Simulator } from './engine.js';
import { validationError } from './errors.js';
import { runExtras } from './extras.js';
import { runGeneration } from './generate.js';
import { decodeImage } from './images.js';
import { parseInfotext } from './infotext.js';
import {
  cmdFlags,
  FACE_RESTORERS,
  LATENT_UPSCALE_MODES,
  memoryReport,
  SAMPLERS,
  SCHEDULERS,
  UPSCALERS,
} from './lists.js';
import { readTextChunks } from './png.js';

// The route table: A1111's /sdapi/v1 API (plus the ControlNet extension's list routes), and /sim/stats. Each
// handler returns the JSON body of a 200, or throws an HttpError.

export interface RouteContext {
  sim: Simulator;
  query: URLSearchParams;
  port: number;
  /** The parsed JSON body; a missing or malformed body is a 422 in FastAPI's shape. */
  json(): Promise<unknown>;
}

export type Handler = (ctx: RouteContext) => unknown | Promise<unknown>;

/** A boolean query parameter as FastAPI (A1111's framework) reads one. */
const CONTROLNET_MODULES = [
  'none',
  'canny',
  'depth',
  'depth_leres',
  'lineart',
  'mlsd',
  'normal_bae',
  'openpose',
  'scribble_hed',
  'seg_ofade20k',
  'softedge_hed',
  'tile_resample',
];

async function rescanned(sim: Simulator) {
  if (sim.catalog.checkpoints.length === 0 && sim.catalog.vaes.length === 0) await sim.catalog.scan();
  return sim.catalog;
}

async function pngInfo(ctx: RouteContext) {
  const body = (await ctx.json()) as { image?: unknown } | null;
  const img = await decodeImage(body?.image, 'image');
  const items = readTextChunks(img.bytes);
  const { parameters: info = '', ...rest } = items;
  return { info, items: rest, parameters: info ? parseInfotext(info) : {} };
}

const generation: Record<string, Handler> = {
  'POST /sdapi/v1/txt2img': async (ctx) => runGeneration(ctx.sim, 'txt2img', await ctx.json()),
  'POST /sdapi/v1/img2img': async (ctx) => runGeneration(ctx.sim, 'img2img', await ctx.json()),
  'POST /sdapi/v1/extra-single-image': async (ctx) => runExtras(ctx.sim, await ctx.json()),
  'POST /sdapi/v1/png-info': pngInfo,
};

const control: Record<string, Handler> = {
  'GET /sdapi/v1/progress': async ({ sim, query }) => {
    const progress = sim.state.progress();
    // As in A1111, the live preview comes unless the client asks to skip it.
    if (!queryFlag(query.get('skip_current_image'))) progress.current_image = await sim.state.currentImage();
    return progress;
  },
  'POST /sdapi/v1/interrupt': ({ sim }) => {
    sim.state.interrupt();
    return {};
  },
  'POST /sdapi/v1/skip': ({ sim }) => {
    sim.state.skip();
    return null;
  },
  'GET /sdapi/v1/options': ({ sim }) => sim.optionsView(),
  'POST /sdapi/v1/options': async (ctx) => ctx.sim.setOptions(await ctx.json()),
  'GET /sdapi/v1/cmd-flags': ({ sim, port }) => cmdFlags(port, sim.opts.modelsDir),
  'GET /sdapi/v1/memory': ({ sim }) => memoryReport(sim.loaded?.size ?? 0),
  'POST /sdapi/v1/unload-checkpoint': async ({ sim }) => {
    await sim.withLock(async () => sim.unloadCheckpoint());
    return {};
  },
  'POST /sdapi/v1/reload-checkpoint': async ({ sim }) => {
    await sim.reloadCheckpoint();
    return {};
  },
  'GET /internal/ping': () => ({}),
  'GET /sim/stats': ({ sim }) => sim.stats.snapshot(),
};

const lists: Record<string, Handler> = {
  'GET /sdapi/v1/samplers': () => SAMPLERS,
  'GET /sdapi/v1/schedulers': () => SCHEDULERS,
  'GET /sdapi/v1/upscalers': () => UPSCALERS,
  'GET /sdapi/v1/latent-upscale-modes': () => LATENT_UPSCALE_MODES,
  'GET /sdapi/v1/face-restorers': () => FACE_RESTORERS,
  'GET /sdapi/v1/realesrgan-models': () =>
    UPSCALERS.filter((u) => u.name.startsWith('R-ESRGAN')).map((u) => ({
      name: u.name,
      path: u.model_path,
      scale: u.scale,
    })),
  'GET /sdapi/v1/sd-models': async ({ sim }) =>
    (await rescanned(sim)).checkpoints.map((c) => ({
      title: c.title,
      model_name: c.modelName,
      hash: c.hash,
      sha256: c.sha256,
      filename: c.filename,
      config: null,
    })),
  'GET /sdapi/v1/sd-vae': async ({ sim }) =>
    (await rescanned(sim)).vaes.map((v) => ({ model_name: v.name, filename: v.filename })),
  'GET /sdapi/v1/loras': async ({ sim }) =>
    (await rescanned(sim)).loras.map((l) => ({ name: l.stem, alias: l.stem, path: l.filename, metadata: {} })),
  'GET /sdapi/v1/hypernetworks': () => [],
  'GET /sdapi/v1/prompt-styles': () => [],
  'GET /sdapi/v1/embeddings': () => ({ loaded: {}, skipped: {} }),
  'GET /sdapi/v1/scripts': () => A1111_SCRIPT_NAMES,
  'GET /sdapi/v1/script-info': () => [],
  'GET /sdapi/v1/extensions': () => [],
  'POST /sdapi/v1/refresh-checkpoints': async ({ sim }) => {
    await sim.withLock(() => sim.catalog.scan());
    return null;
  },
  'POST /sdapi/v1/refresh-vae': async ({ sim }) => {
    await sim.withLock(() => sim.catalog.scan());
    return null;
  },
  'POST /sdapi/v1/refresh-loras': async ({ sim }) => {
    await sim.catalog.scan();
    return null;
  },
  'POST /sdapi/v1/refresh-embeddings': () => null,
  'GET /controlnet/model_list': async ({ sim }) => ({
    model_list: (await rescanned(sim)).controlNets.map((c) => c.title),
  }),
  'GET /controlnet/module_list': () => ({ module_list: CONTROLNET_MODULES }),
  'GET /controlnet/version': () => ({ version: 2 }),
};

export const ROUTES: Record<string, Handler> = { ...generation, ...control, ...lists };

/** The paths the table knows, for telling 405 from 404. */
export const KNOWN_PATHS = new Set(Object.keys(ROUTES).map((k) => k.slice(k.indexOf(' ') + 1)));

/** FastAPI's answer to a JSON body that does not parse. */
export function jsonDecodeError(err: unknown, text: string) {
  const msg = err instanceof Error ? err.message : String(err);
  const pos = Number(/position (\d+)/.exec(msg)?.[1] ?? text.length);
  return validationError([{ loc: ['body', pos], msg: `JSON decode error: ${msg}`, type: 'value_error.jsondecode' }]);
}

/** FastAPI's answer to a missing body. */
export function missingBodyError() {
  return validationError([{ loc: ['body'], msg: 'field required', type: 'value_error.missing' }]);
}
