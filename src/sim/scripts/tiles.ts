import { apiError } from '../errors.js';
import type { OutputImage } from '../generate.js';
import { toRawRgb } from '../images.js';
import { UPSCALERS } from '../lists.js';
import { checkJobPixels, LIMITS } from '../params.js';
import { cropRaw, pasteRaw, type RawImage, resizeRaw } from '../render.js';
import { fixedSeeds, type Planner, pyContains, pyIndex, pyNumber, pythonError, type ScriptInput } from './common.js';

// The img2img scripts that work in tiles of the request's width × height: A1111 1.10.1's scripts/sd_upscale.py and
// scripts/poor_mans_outpainting.py, with the tiling of modules/images.py's split_grid.

interface Tile {
  x: number;
  y: number;
}

/** split_grid: tiles of tileW × tileH over a width × height image, overlapping by at least `overlap`. */
function splitGrid(width: number, height: number, tileW: number, tileH: number, overlap: number): Tile[] {
  if (tileW === overlap || tileH === overlap) throw pythonError('ZeroDivisionError', 'division by zero');
  const cols = Math.ceil((width - overlap) / (tileW - overlap));
  const rows = Math.ceil((height - overlap) / (tileH - overlap));
  // No row of tiles at all: A1111 fails reading the first one.
  if (!(rows > 0)) throw pythonError('IndexError', 'list index out of range');
  const dx = cols > 1 ? (width - tileW) / (cols - 1) : 0;
  const dy = rows > 1 ? (height - tileH) / (rows - 1) : 0;
  const tiles: Tile[] = [];
  for (let row = 0; row < rows; row++) {
    const y = Math.min(Math.trunc(row * dy), height - tileH);
    for (let col = 0; col < cols; col++) tiles.push({ x: Math.min(Math.trunc(col * dx), width - tileW), y });
  }
  return tiles;
}

/** The first init image at its own size, raw (what these scripts tile or extend). */
async function sourceImage({ job }: ScriptInput): Promise<RawImage> {
  const src = job.sources[0];
  return { raw: await toRawRgb(src, src.width, src.height), width: src.width, height: src.height };
}

/** The upscaler script_args name: an index into GET /sdapi/v1/upscalers, or a name (any case). */
function pickUpscaler(arg: unknown) {
  if (typeof arg !== 'string') return pyIndex(UPSCALERS, arg);
  const found = UPSCALERS.find((u) => u.name.toLowerCase() === arg.toLowerCase());
  if (!found) throw pythonError('ValueError', `'${arg.toLowerCase()}' is not in list`);
  return found;
}

/**
 * SD upscale, args [_, overlap, upscaler, scale]: the first init image upscaled (each side to floor(side × scale / 8)
 * × 8; upscaler None keeps the size), cut into tiles that are redrawn in batches of batch_size, once per n_iter (the
 * seed one higher each time); the answer is one image per n_iter, each the tiles put back together, no grid.
 */
export const sdUpscale: Planner = (input) => {
  const { job, args, derive } = input;
  const [, overlapArg, upscalerArg, scaleArg] = args;
  const upscaler = pickUpscaler(upscalerArg);
  const overlap = pyNumber(overlapArg, 'overlap');
  const scale = pyNumber(scaleArg, 'scale_factor');
  const src = job.sources[0];
  const [width, height] =
    upscaler.name === 'None'
      ? [src.width, src.height]
      : [Math.floor((src.width * scale) / 8) * 8, Math.floor((src.height * scale) / 8) * 8];
  if (width <= 0 || height <= 0) throw pythonError('ValueError', 'height and width must be > 0');
  if (Math.max(width, height) > LIMITS.maxUpscaledSide) {
    const detail = `upscaled size ${width}x${height} is over the simulator's limit of ${LIMITS.maxUpscaledSide} a side`;
    throw apiError(422, detail);
  }
  const r = job.request;
  const tiles = splitGrid(width, height, job.width, job.height, overlap);
  checkJobPixels(r.n_iter * width * height + tiles.length * job.width * job.height, "SD upscale's images");
  const batchCount = Math.ceil(tiles.length / r.batch_size);
  const jobCount = batchCount * r.n_iter;
  const extraParams = { 'SD upscale overlap': overlap, 'SD upscale upscaler': upscaler.name };
  const fixed = fixedSeeds(job);
  return {
    jobCount,
    run: async (ctx) => {
      const source = await sourceImage(input);
      const upscaled = upscaler.name === 'None' ? source : await resizeRaw(source, width, height);
      const work = tiles.map((t) => cropRaw(upscaled, t.x, t.y, job.width, job.height).raw);
      const images: OutputImage[] = [];
      let firstPass = derive({ request: fixed, extraParams });
      let info: string | undefined;
      for (let n = 0; n < r.n_iter && !ctx.state.interrupted; n++) {
        let seed = fixed.seed + n;
        const redrawn: OutputImage[] = [];
        for (let i = 0; i < batchCount; i++) {
          const inits = work.slice(i * r.batch_size, (i + 1) * r.batch_size);
          ctx.state.job = `Batch ${i + 1 + n * batchCount} out of ${jobCount}`;
          // A single init image is repeated to fill the batch, as A1111's img2img does.
          const batch = inits.length === 1 ? r.batch_size : inits.length;
          const pass = derive({
            request: { ...fixed, seed, n_iter: 1, batch_size: batch, save_images: false },
            inits,
            extraParams,
          });
          const processed = await ctx.process(pass);
          if (info === undefined && processed.images.length > 0) [firstPass, info] = [pass, processed.images[0].text];
          seed = pass.seeds[0] + 1;
          redrawn.push(...processed.images);
        }
        const combined: RawImage = { raw: Buffer.alloc(width * height * 3), width, height };
        for (const [i, t] of tiles.entries()) if (redrawn[i]) pasteRaw(combined, redrawn[i], t.x, t.y);
        images.push({ ...combined, text: info ?? '' });
      }
      return { job: firstPass, images, indexOfFirstImage: 0 };
    },
  };
};

/**
 * Poor man's outpainting, args [pixels, mask blur, masked content, directions]: the first init image on a canvas
 * grown by `pixels` on each chosen side (to a multiple of 64 a side), redrawn one tile at a time where a tile
 * reaches into the new border; the answer is that one image, whatever n_iter and batch_size.
 */
export const poorMansOutpainting: Planner = (input) => {
  const { job, args, derive } = input;
  const [pixelsArg, , , direction] = args;
  const pixels = pyNumber(pixelsArg, 'pixels');
  const src = job.sources[0];
  let [left, right, up, down] = ['left', 'right', 'up', 'down'].map((d) => (pyContains(direction, d) ? pixels : 0));
  const width = Math.ceil((src.width + left + right) / 64) * 64;
  const height = Math.ceil((src.height + up + down) / 64) * 64;
  if (left > 0) left = Math.floor((left * (width - src.width)) / (left + right));
  if (right > 0) right = width - src.width - left;
  if (up > 0) up = Math.floor((up * (height - src.height)) / (up + down));
  if (down > 0) down = height - src.height - up;
  const inBorder = (t: Tile) =>
    !(t.x >= left && t.x + job.width <= width - right && t.y >= up && t.y + job.height <= height - down);
  const tiles = splitGrid(width, height, job.width, job.height, pixels).filter(inBorder);
  checkJobPixels(2 * width * height, "Poor man's outpainting's image");
  const fixed = fixedSeeds(job);
  return {
    jobCount: tiles.length,
    run: async (ctx) => {
      const canvas: RawImage = { raw: Buffer.alloc(width * height * 3), width, height };
      pasteRaw(canvas, await sourceImage(input), left, up);
      const work = tiles.map((t) => cropRaw(canvas, t.x, t.y, job.width, job.height).raw);
      let seed = fixed.seed;
      let firstPass = derive({ request: fixed });
      let info: string | undefined;
      for (const [i, tile] of tiles.entries()) {
        if (ctx.state.interrupted) break;
        ctx.state.job = `Batch ${i + 1} out of ${tiles.length}`;
        const pass = derive({
          request: { ...fixed, seed, n_iter: 1, batch_size: 1, save_images: false },
          inits: [work[i]],
        });
        const processed = await ctx.process(pass);
        if (info === undefined && processed.images.length > 0) [firstPass, info] = [pass, processed.images[0].text];
        seed = pass.seeds[0] + 1;
        if (processed.images[0]) pasteRaw(canvas, processed.images[0], tile.x, tile.y);
      }
      return { job: firstPass, images: [{ ...canvas, text: info ?? '' }], indexOfFirstImage: 0 };
    },
  };
};
