import sharp from 'sharp';
import type { JobOutcome, Simulator } from './engine.js';
import { apiError } from './errors.js';
import { type DecodedImage, decodeImage } from './images.js';
import { formatParams, type InfotextParams } from './infotext.js';
import { findUpscaler } from './lists.js';
import { type ExtrasRequest, LIMITS, parseExtrasBody } from './params.js';
import { insertTextChunks, readTextChunks } from './png.js';
import { blendRaw, encodePng } from './render.js';
import { SdState } from './state.js';

// POST /sdapi/v1/extra-single-image: A1111's postprocessing upscale. Lanczos and Nearest are real resizes (sharp's
// lanczos3 and nearest kernels); the model upscalers (ESRGAN, SwinIR, LDSR, …) are simulated: a lanczos resize,
// plus a time cost proportional to the pixels each model pass would output. Sizes follow A1111's Upscaler: the
// target is the scaled size rounded down to a multiple of 8, and "upscale to" with crop pastes the result centred
// on a canvas of exactly the requested size. Face restoration only costs time.

type Upscaler = NonNullable<ReturnType<typeof findUpscaler>>;

interface Plan {
  scale: number;
  destW: number;
  destH: number;
  crop?: { width: number; height: number };
  up1?: Upscaler;
  up2?: Upscaler;
  info: InfotextParams;
}

function requireUpscaler(name: string, field: string): Upscaler | undefined {
  const found = findUpscaler(name);
  if (!found) throw apiError(422, `${field}: upscaler '${name}' not found; GET /sdapi/v1/upscalers lists the names`);
  return found.kind === 'none' ? undefined : found;
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

function plan(r: ExtrasRequest, img: DecodedImage): Plan {
  const up1 = requireUpscaler(r.upscaler_1, 'upscaler_1');
  const up2 = requireUpscaler(r.upscaler_2, 'upscaler_2');
  const toSize = r.resize_mode === 1;
  const scale = toSize
    ? Math.max(r.upscaling_resize_w / img.width, r.upscaling_resize_h / img.height)
    : r.upscaling_resize;
  const info: InfotextParams = {};
  if (up1)
    info[toSize ? 'Postprocess upscale to' : 'Postprocess upscale by'] = toSize
      ? `${r.upscaling_resize_w}x${r.upscaling_resize_h}`
      : round3(scale);
  const destW = up1 ? Math.max(8, Math.floor((img.width * scale) / 8) * 8) : img.width;
  const destH = up1 ? Math.max(8, Math.floor((img.height * scale) / 8) * 8) : img.height;
  if (Math.max(destW, destH) > LIMITS.maxUpscaledSide) {
    throw apiError(
      422,
      `upscaled size ${destW}x${destH} is larger than the simulator's limit of ${LIMITS.maxUpscaledSide} per side`,
    );
  }
  const crop =
    up1 && toSize && r.upscaling_crop ? { width: r.upscaling_resize_w, height: r.upscaling_resize_h } : undefined;
  if (crop) info['Postprocess crop to'] = `${crop.width}x${crop.height}`;
  if (up1) info['Postprocess upscaler'] = up1.name;
  const second = up1 && up2 && r.extras_upscaler_2_visibility > 0 ? up2 : undefined;
  if (second) info['Postprocess upscaler 2'] = second.name;
  if (r.gfpgan_visibility > 0) info['GFPGAN visibility'] = round3(r.gfpgan_visibility);
  if (r.codeformer_visibility > 0) {
    info['CodeFormer visibility'] = round3(r.codeformer_visibility);
    info['CodeFormer weight'] = round3(r.codeformer_weight);
  }
  return { scale, destW, destH, crop, up1, up2: second, info };
}

const rgb = (img: DecodedImage) => sharp(img.bytes).removeAlpha().toColourspace('srgb');

/** Raw RGB of the image at its own size. */
function rawOf(img: DecodedImage): Promise<Buffer> {
  return rgb(img).removeAlpha().raw().toBuffer();
}

/** Simulated model time: each native pass (up to 3, as A1111) until the target is reached costs its output pixels. */
function modelPassesMs(sim: Simulator, up: Upscaler, img: DecodedImage, p: Plan): number {
  let [w, h] = [img.width, img.height];
  let ms = 0;
  for (let pass = 0; pass < 3; pass++) {
    if (w >= p.destW && h >= p.destH && p.scale !== 1) break;
    w *= up.scale;
    h *= up.scale;
    ms += (sim.opts.stepMs * w * h) / (512 * 512);
  }
  return ms;
}

async function upscaleOnce(sim: Simulator, up: Upscaler, img: DecodedImage, p: Plan): Promise<Buffer> {
  if (up.kind === 'nearest') {
    const nw = Math.max(1, Math.trunc(img.width * p.scale));
    const nh = Math.max(1, Math.trunc(img.height * p.scale));
    const near = await rgb(img).resize(nw, nh, { fit: 'fill', kernel: 'nearest' }).removeAlpha().raw().toBuffer();
    if (nw === p.destW && nh === p.destH) return near;
    return sharp(near, { raw: { width: nw, height: nh, channels: 3 } })
      .resize(p.destW, p.destH, { fit: 'fill', kernel: 'lanczos3' })
      .raw()
      .toBuffer();
  }
  const until = Date.now() + (up.kind === 'model' ? modelPassesMs(sim, up, img, p) : 0);
  const out = await rgb(img)
    .resize(p.destW, p.destH, { fit: 'fill', kernel: 'lanczos3' })
    .removeAlpha()
    .raw()
    .toBuffer();
  await sim.state.sleepUntil(until);
  return out;
}

/** A1111's crop: the image pasted centred on a black canvas of exactly the target size. */
function pasteCentred(raw: Buffer, w: number, h: number, tw: number, th: number): Buffer {
  const out = Buffer.alloc(tw * th * 3);
  const ox = Math.floor(tw / 2) - Math.floor(w / 2);
  const oy = Math.floor(th / 2) - Math.floor(h / 2);
  const x0 = Math.max(0, ox);
  const x1 = Math.min(tw, ox + w);
  if (x1 <= x0) return out;
  for (let ty = Math.max(0, oy); ty < Math.min(th, oy + h); ty++) {
    const sy = ty - oy;
    raw.copy(out, (ty * tw + x0) * 3, (sy * w + (x0 - ox)) * 3, (sy * w + (x1 - ox)) * 3);
  }
  return out;
}

async function postprocess(sim: Simulator, r: ExtrasRequest, img: DecodedImage, p: Plan, outcome: JobOutcome) {
  sim.state.begin('extras', 1);
  try {
    let raw = p.up1 ? await upscaleOnce(sim, p.up1, img, p) : await rawOf(img);
    let [width, height] = p.up1 ? [p.destW, p.destH] : [img.width, img.height];
    if (p.up2) raw = blendRaw(raw, await upscaleOnce(sim, p.up2, img, p), r.extras_upscaler_2_visibility);
    if (p.crop) {
      raw = pasteCentred(raw, width, height, p.crop.width, p.crop.height);
      [width, height] = [p.crop.width, p.crop.height];
    }
    const restorers = (r.gfpgan_visibility > 0 ? 1 : 0) + (r.codeformer_visibility > 0 ? 1 : 0);
    await SdState.sleep((restorers * sim.opts.vaeMs * width * height) / (512 * 512));
    Object.assign(outcome, {
      upscaler: p.up1?.name ?? 'None',
      size: `${width}x${height}`,
      interrupted: sim.state.interrupted,
    });
    return { raw, width, height };
  } finally {
    sim.state.end();
  }
}

const escapeHtml = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** POST /sdapi/v1/extra-single-image. */
export async function runExtras(sim: Simulator, body: unknown): Promise<{ html_info: string; image: string }> {
  const r = parseExtrasBody(body);
  const img = await decodeImage(r.image, 'image');
  const p = plan(r, img);
  const out = await sim.withJob('extras', (outcome) => postprocess(sim, r, img, p, outcome));
  const infotext = formatParams(p.info);
  const carried = readTextChunks(img.bytes);
  const texts: Record<string, string> = {};
  if (carried.parameters !== undefined) texts.parameters = carried.parameters;
  if (infotext) texts.postprocessing = infotext;
  const png = insertTextChunks(await encodePng(out.raw, out.width, out.height), texts);
  return { html_info: `<p>${escapeHtml(infotext)}</p>`, image: png.toString('base64') };
}
