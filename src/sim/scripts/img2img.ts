import type { OutputImage, PreparedJob } from '../generate.js';
import { toRawRgb } from '../images.js';
import { checkJobPixels } from '../params.js';
import { cropRaw, pasteRaw, type RawImage } from '../render.js';
import {
  fixedSeeds,
  gridImage,
  type Planner,
  pyContains,
  pyInt,
  pyNumber,
  type ScriptRunContext,
  truthy,
} from './common.js';

// The img2img scripts that redraw the init image as a whole: A1111 1.10.1's scripts/loopback.py,
// scripts/outpainting_mk_2.py and scripts/img2imgalt.py.

/** The strength of loop `loop` of `loops`, moving from `start` to `final` along the chosen curve. */
function loopStrength(start: number, final: number, curve: unknown, loop: number, loops: number): number {
  if (loops === 1) return start;
  const progress = loop / (loops - 1);
  const shape =
    curve === 'Aggressive'
      ? Math.sin(progress * Math.PI * 0.5)
      : curve === 'Lazy'
        ? 1 - Math.cos(progress * Math.PI * 0.5)
        : progress;
  return start + (final - start) * shape;
}

/**
 * Loopback, args [loops, final denoising strength, denoising curve, append interrogated prompt]: per n_iter, `loops`
 * passes of one image, each redrawing the previous one. With n_iter 1 the answer holds every loop's image, else the
 * last image of each n_iter; a grid (one row) comes first when there is more than one image and return_grid is on.
 * The simulator has no interrogator: the prompt is never appended to.
 */
export const loopback: Planner = ({ job, args, settings, derive }) => {
  const [loopsArg, finalArg, curve] = args;
  const loops = pyInt(loopsArg, 'loops');
  const final = pyNumber(finalArg, 'final_denoising_strength');
  const r = job.request;
  const batches = r.n_iter;
  checkJobPixels((Math.max(loops, batches) + 1) * 2 * job.width * job.height, "Loopback's images");
  const extraParams = { 'Final denoising strength': final, 'Denoising curve': String(curve) };
  const fixed = fixedSeeds(job);
  return {
    jobCount: loops * batches,
    run: async (ctx) => {
      const { state } = ctx;
      const history: OutputImage[] = [];
      let seed = fixed.seed;
      let firstPass: PreparedJob | undefined;
      for (let n = 0; n < batches; n++) {
        let init = job.inits[0];
        let strength = r.denoising_strength;
        let last: OutputImage | undefined;
        for (let i = 0; i < loops; i++) {
          state.job = `Iteration ${i + 1}/${loops}, batch ${n + 1}/${batches}`;
          const pass = derive({
            request: { ...fixed, seed, n_iter: 1, batch_size: 1, denoising_strength: strength, save_images: false },
            inits: [init],
            extraParams,
          });
          const processed = await ctx.process(pass);
          if (state.interrupted) break;
          firstPass ??= pass;
          seed = pass.seeds[0] + 1;
          strength = loopStrength(r.denoising_strength, final, curve, i + 1, loops);
          if (state.skipped) break;
          last = processed.images[0];
          init = last.raw;
          if (batches === 1) history.push(last);
        }
        if (batches > 1 && last && !state.skipped && !state.interrupted) history.push(last);
        if (state.interrupted) break;
      }
      const text = history[0]?.text ?? '';
      const images = history.map((image) => ({ ...image, text }));
      if (history.length > 1 && settings.return_grid !== false) images.unshift(gridImage(images, 1));
      return { job: firstPass ?? job, images, indexOfFirstImage: 0 };
    },
  };
};

type Side = 'left' | 'right' | 'up' | 'down';

/**
 * Outpainting mk2, args [_, pixels, mask blur, directions, fall-off exponent, color variation]: per n_iter, one
 * pass of batch_size images per chosen side, each growing the images by that side's share of the border (the
 * border making each grown side a multiple of 64). The answer is every image, after a grid when there is more than
 * one and return_grid is on.
 */
export const outpaintingMk2: Planner = ({ job, args, settings, derive }) => {
  const [, pixelsArg, , direction] = args;
  const pixels = pyNumber(pixelsArg, 'pixels');
  const src = job.sources[0];
  const r = job.request;
  const amounts: Record<Side, number> = { left: 0, right: 0, up: 0, down: 0 };
  for (const side of ['left', 'right', 'up', 'down'] as const) amounts[side] = pyContains(direction, side) ? pixels : 0;
  const targetW = Math.ceil((src.width + amounts.left + amounts.right) / 64) * 64;
  const targetH = Math.ceil((src.height + amounts.up + amounts.down) / 64) * 64;
  const { left, up } = amounts;
  if (left > 0) amounts.left = Math.floor((left * (targetW - src.width)) / (left + amounts.right));
  if (amounts.right > 0) amounts.right = targetW - src.width - amounts.left;
  if (up > 0) amounts.up = Math.floor((up * (targetH - src.height)) / (up + amounts.down));
  if (amounts.down > 0) amounts.down = targetH - src.height - amounts.up;
  const sides = (['left', 'right', 'up', 'down'] as const).filter((side) => amounts[side] > 0);
  const count = r.n_iter * r.batch_size;
  checkJobPixels(2 * count * targetW * targetH, "Outpainting mk2's images");

  /** One pass: every image grown by `amount` on `side`, the new strip redrawn at most the request's size. */
  async function grow(ctx: ScriptRunContext, images: RawImage[], side: Side) {
    const amount = amounts[side];
    const horizontal = side === 'left' || side === 'right';
    const [first] = images;
    const grownW = first.width + (horizontal ? amount : 0);
    const grownH = first.height + (horizontal ? 0 : amount);
    const canvasW = Math.ceil(grownW / 64) * 64;
    const canvasH = Math.ceil(grownH / 64) * 64;
    const request = {
      width: horizontal ? Math.min(r.width, grownW) : canvasW,
      height: horizontal ? canvasH : Math.min(r.height, grownH),
      n_iter: 1,
      save_images: false,
    };
    // The size the pass draws at (the requested one rounded down to 8), where the init images are cut from.
    const { width, height } = derive({ request });
    const canvases = images.map((img) => {
      const canvas: RawImage = { raw: Buffer.alloc(canvasW * canvasH * 3), width: canvasW, height: canvasH };
      return pasteRaw(canvas, img, side === 'left' ? amount : 0, side === 'up' ? amount : 0);
    });
    const [x, y] = [side === 'left' ? 0 : canvasW - width, side === 'up' ? 0 : canvasH - height];
    const pass = derive({ request, inits: canvases.map((canvas) => cropRaw(canvas, x, y, width, height).raw) });
    const processed = await ctx.process(pass);
    return {
      pass,
      images: canvases.map((canvas, n) => {
        const redrawn = processed.images[n];
        if (redrawn) pasteRaw(canvas, redrawn, x, y);
        return cropRaw(canvas, 0, 0, grownW, grownH);
      }),
      text: processed.images[0]?.text,
    };
  }

  return {
    jobCount: r.n_iter * sides.length,
    run: async (ctx) => {
      const source: RawImage = {
        raw: await toRawRgb(src, src.width, src.height),
        width: src.width,
        height: src.height,
      };
      const all: RawImage[] = [];
      let lastPass: PreparedJob = job;
      let text: string | undefined;
      for (let n = 0; n < r.n_iter && !ctx.state.interrupted; n++) {
        ctx.state.job = `Batch ${n + 1} out of ${r.n_iter}`;
        let images: RawImage[] = Array(r.batch_size).fill(source);
        for (const side of sides) {
          const grown = await grow(ctx, images, side);
          [images, lastPass] = [grown.images, grown.pass];
          text ??= grown.text;
        }
        all.push(...images);
      }
      const images = all.map((image) => ({ ...image, text: text ?? '' }));
      const unwanted = images.length < 2 && settings.grid_only_if_multiple !== false;
      if (settings.return_grid !== false && images.length > 0 && !unwanted) images.unshift(gridImage(images));
      return { job: lastPass, images, indexOfFirstImage: 0 };
    },
  };
};

/**
 * img2img alternative test, args [_, override sampler, override prompt, original prompt, original negative prompt,
 * override steps, decode steps, override strength, decode CFG scale, randomness, sigma adjustment]: one ordinary
 * pass (sampler Euler, the original prompts, the decode steps and strength 1 where overridden), after a search for
 * the init image's noise that takes the decode steps once.
 */
export const img2imgAlternativeTest: Planner = ({ job, args, derive }) => {
  const [, overrideSampler, overridePrompt, prompt, negative, overrideSteps, decodeSteps, overrideStrength] = args;
  const [cfg, randomness, sigmaAdjustment] = args.slice(8);
  const steps = pyInt(decodeSteps, 'st');
  const pass = derive({
    request: {
      ...(truthy(overrideSampler) ? { sampler_name: 'Euler' } : {}),
      ...(truthy(overridePrompt) ? { prompt: String(prompt), negative_prompt: String(negative) } : {}),
      ...(truthy(overrideSteps) ? { steps } : {}),
      ...(truthy(overrideStrength) ? { denoising_strength: 1 } : {}),
    },
    extraParams: {
      'Decode prompt': String(prompt),
      'Decode negative prompt': String(negative),
      'Decode CFG scale': pyNumber(cfg, 'cfg'),
      'Decode steps': steps,
      Randomness: pyNumber(randomness, 'randomness'),
      'Sigma Adjustment': truthy(sigmaAdjustment) ? 'True' : 'False',
    },
  });
  checkJobPixels(pass.seeds.length * pass.width * pass.height, "img2img alternative test's images");
  return {
    jobCount: job.request.n_iter + 1,
    run: async (ctx) => {
      await ctx.sampleOnly(pass, steps);
      return ctx.process(pass);
    },
  };
};
