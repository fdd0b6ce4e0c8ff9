import { type XyzAxis, xyzAxes } from '../../a1111/scripts.js';
import { apiError } from '../errors.js';
import type { OutputImage, PreparedJob } from '../generate.js';
import { checkJobPixels, type GenerationRequest } from '../params.js';
import { randomSeed } from '../random.js';
import { gridRaw } from '../render.js';
import { fixedSeeds, type Planner, pyIndex, pythonError, truthy } from './common.js';

// X/Y/Z plot, as A1111 1.10.1's scripts/xyz_grid.py runs it: one pass per cell of the x × y × z values, each
// cell showing its pass's first image (its grid, when the pass makes one). The answer is a grid of the z grids,
// then the z grids (with "include sub grids") and the cells (with "include sub images").
//
// The simulator applies the axes that change what it draws or how long it takes (seeds, steps, CFG scale, prompt
// S/R, sampler, schedule type, denoising, size); the others only count. Cells are made z, then y, then x (A1111
// puts a costly axis such as the checkpoint outermost).

/** csv.reader with skipinitialspace, each field stripped: "a, b" and '"a, b", c' as A1111 splits axis values. */
function csvValues(text: string): string[] {
  const fields: string[] = [];
  for (const line of text.split(/\r\n|\n|\r/)) {
    if (line === '') continue;
    let field = '';
    let quoted = false;
    let start = true;
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      if (quoted) {
        if (c === '"' && line[i + 1] === '"') field += line[++i];
        else if (c === '"') quoted = false;
        else field += c;
      } else if (c === ',') {
        fields.push(field.trim());
        [field, start] = ['', true];
      } else if (start && c === ' ') {
      } else if (start && c === '"') {
        [quoted, start] = [true, false];
      } else {
        field += c;
        start = false;
      }
    }
    fields.push(field.trim());
  }
  return fields;
}

/** The reverse, for the infotext's "X Values" when the values came as a list. */
const csvLine = (values: unknown[]) =>
  values.map((v) => (/[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v))).join(',');

const INT = String.raw`\s*([+-]?\s*\d+)\s*-\s*([+-]?\s*\d+)`;
const FLOAT = String.raw`\s*([+-]?\s*\d+(?:.\d*)?)\s*-\s*([+-]?\s*\d+(?:.\d*)?)`;
const RANGES = {
  int: {
    step: new RegExp(`^${INT}(?:\\s*\\(([+-]\\d+)\\s*\\))?\\s*$`),
    count: new RegExp(`^${INT}(?:\\s*\\[(\\d+)\\s*])?\\s*$`),
  },
  float: {
    step: new RegExp(`^${FLOAT}(?:\\s*\\(([+-]\\d+(?:.\\d*)?)\\s*\\))?\\s*$`),
    count: new RegExp(`^${FLOAT}(?:\\s*\\[(\\d+(?:.\\d*)?)\\s*])?\\s*$`),
  },
};

const num = (s: string) => Number(s.replace(/\s+/g, ''));

/** More values on one axis than any grid within the simulator's limits could hold. */
const MAX_AXIS_VALUES = 1_000_000;

function checkAxisSize(count: number): void {
  if (count > MAX_AXIS_VALUES)
    throw apiError(422, `an X/Y/Z plot axis has ${count} values; the simulator's limit is ${MAX_AXIS_VALUES}`);
}

function linspace(start: number, stop: number, count: number): number[] {
  if (count === 1) return [start];
  checkAxisSize(count);
  return Array.from({ length: Math.max(0, count) }, (_, i) => start + ((stop - start) * i) / (count - 1));
}

/** "1-5" (every integer), "1-5 (+2)" (in steps) and "1-5 [3]" (that many, evenly spaced) expanded. */
function expandRanges(values: string[], type: 'int' | 'float'): Array<string | number> {
  const out: Array<string | number> = [];
  for (const value of values) {
    if (value.trim() === '') continue;
    const step = RANGES[type].step.exec(value);
    const count = RANGES[type].count.exec(value);
    if (step) {
      const [start, end, by] = [num(step[1]), num(step[2]), step[3] === undefined ? 1 : num(step[3])];
      if (by === 0)
        throw type === 'int'
          ? pythonError('ValueError', 'range() arg 3 must not be zero')
          : pythonError('ZeroDivisionError', 'division by zero');
      // int: range(start, end + 1, by); float: numpy's arange(start, end + by, by).
      const n = type === 'int' ? Math.ceil((end + 1 - start) / by) : Math.ceil((end + by - start) / by);
      checkAxisSize(out.length + n);
      for (let i = 0; i < n; i++) out.push(start + i * by);
    } else if (count) {
      const points = linspace(num(count[1]), num(count[2]), count[3] === undefined ? 1 : Math.trunc(num(count[3])));
      checkAxisSize(out.length + points.length);
      out.push(...(type === 'int' ? points.map(Math.trunc) : points));
    } else out.push(value);
  }
  return out;
}

function toInt(v: string | number): number {
  if (typeof v === 'number') return Math.trunc(v);
  if (!/^\s*[-+]?\d+\s*$/.test(v)) throw pythonError('ValueError', `invalid literal for int() with base 10: '${v}'`);
  return Number(v);
}

function toFloat(v: string | number): number {
  const n = typeof v === 'number' ? v : v.trim() === '' ? Number.NaN : Number(v);
  if (Number.isNaN(n)) throw pythonError('ValueError', `could not convert string to float: '${v}'`);
  return n;
}

const factorial = (n: number): number => (n <= 1 ? 1 : n * factorial(n - 1));

interface Axis {
  axis: XyzAxis;
  values: unknown[];
  /** The values as the infotext reports them. */
  text: string;
}

/** An axis's values, as A1111 reads them from its type and the text or list the request sent. */
function readAxis(axes: XyzAxis[], typeArg: unknown, text: unknown, list: unknown, csvMode: boolean): Axis {
  const axis = pyIndex(axes, typeArg ?? 0);
  if (axis.label === 'Nothing') return { axis, values: [0], text: String(text ?? '') };
  const fromList = axis.choices && !csvMode;
  const raw = fromList ? (Array.isArray(list) ? list.map(String) : []) : csvValues(String(text ?? ''));
  const shown = fromList ? csvLine(raw) : String(text ?? '');
  switch (axis.type) {
    case 'int':
      return { axis, values: expandRanges(raw, 'int').map(toInt), text: shown };
    case 'float':
      return { axis, values: expandRanges(raw, 'float').map(toFloat), text: shown };
    // Every ordering of the words: only their number matters to the simulator.
    case 'permutations': {
      const count = factorial(raw.length);
      checkAxisSize(count);
      return { axis, values: Array.from({ length: count }, (_, i) => i), text: shown };
    }
    default:
      return { axis, values: raw, text: shown };
  }
}

/** What a cell's value changes in the request, for the axes the simulator applies. */
function applyAxis(axis: Axis, value: unknown, request: Partial<GenerationRequest>, base: GenerationRequest): void {
  const fields: Record<string, keyof GenerationRequest> = {
    Seed: 'seed',
    'Var. seed': 'subseed',
    'Var. strength': 'subseed_strength',
    Steps: 'steps',
    'CFG Scale': 'cfg_scale',
    Sampler: 'sampler_name',
    'Schedule type': 'scheduler',
    Denoising: 'denoising_strength',
  };
  const label = axis.axis.label;
  if (fields[label]) Object.assign(request, { [fields[label]]: value });
  else if (label === 'Prompt S/R') {
    const [find] = axis.values as string[];
    const [prompt, negative] = [request.prompt ?? base.prompt, request.negative_prompt ?? base.negative_prompt];
    if (!prompt.includes(find) && !negative.includes(find))
      throw pythonError('RuntimeError', `Prompt S/R did not find ${find} in prompt or negative prompt.`);
    request.prompt = prompt.replaceAll(find, String(value));
    request.negative_prompt = negative.replaceAll(find, String(value));
  } else if (label === 'Size') {
    const [w, h] = String(value).split('x');
    if (/^\s*[-+]?\d+\s*$/.test(w) && /^\s*[-+]?\d+\s*$/.test(h ?? ''))
      Object.assign(request, { width: +w, height: +h });
  }
}

/** What a grid's infotext adds: the script and the axes it shows. */
function gridParams(x: Axis, y: Axis, z: Axis | undefined, fixedSeeds: boolean): Record<string, string> {
  const params: Record<string, string> = { Script: 'X/Y/Z plot' };
  for (const [name, axis] of [
    ['X', x],
    ['Y', y],
    ['Z', z],
  ] as const) {
    if (!axis || axis.axis.label === 'Nothing') continue;
    params[`${name} Type`] = axis.axis.label;
    params[`${name} Values`] = axis.text;
    if (fixedSeeds && (axis.axis.label === 'Seed' || axis.axis.label === 'Var. seed'))
      params[`Fixed ${name} Values`] = axis.values.join(', ');
  }
  return params;
}

/**
 * X/Y/Z plot, args [x type, x values, x values (list), the same for y and z, draw legend, include sub images,
 * include sub grids, keep -1 for seeds, vary seeds for x, y, z, margin, use text inputs]. Axis types index the
 * tab's list of axis types (xyzAxes); list-valued axes (sampler, checkpoint, ...) take their values from the list
 * argument unless text inputs are asked for.
 */
export const xyzPlot: Planner = ({ job, args, settings, derive }) => {
  const [xType, xText, xList, yType, yText, yList, zType, zText, zList] = args;
  const [, includeImages, includeGrids, keepRandom, varyX, varyY, varyZ, , csvModeArg] = args.slice(9);
  const csvMode = truthy(csvModeArg);
  const fixSeeds = !truthy(keepRandom);
  const axes = xyzAxes(job.kind);
  const [x, y, z] = [
    readAxis(axes, xType, xText, xList, csvMode),
    readAxis(axes, yType, yText, yList, csvMode),
    readAxis(axes, zType, zText, zList, csvMode),
  ];
  for (const a of [x, y, z])
    if (fixSeeds && (a.axis.label === 'Seed' || a.axis.label === 'Var. seed'))
      a.values = a.values.map((v) => (v === -1 ? randomSeed() : v));
  const r = job.request;
  const cells = x.values.length * y.values.length * z.values.length;
  const megapixels = Math.round((cells * r.width * r.height) / 1_000_000);
  const limit = Number(settings.img_max_size_mp);
  if (!(megapixels < limit))
    throw pythonError(
      'AssertionError',
      `Error: Resulting grid would be too large (${megapixels} MPixels) (max configured size is ${limit} MPixels)`,
    );
  const base = fixSeeds ? { ...r, ...fixedSeeds(job) } : r;
  const batchSize = settings.return_grid === false ? 1 : r.batch_size;
  // The cells and their grids, and one cell's pass at a time.
  checkJobPixels((2 * cells + batchSize * r.n_iter) * job.width * job.height, "X/Y/Z plot's images");
  const xDim = truthy(varyX) ? x.values.length : 1;
  const yDim = truthy(varyY) ? y.values.length : 1;

  function cellPass(ix: number, iy: number, iz: number): PreparedJob {
    const request: Partial<GenerationRequest> = { batch_size: batchSize };
    for (const [axis, i] of [
      [x, ix],
      [y, iy],
      [z, iz],
    ] as const)
      applyAxis(axis, axis.values[i], request, base);
    const seed = request.seed ?? base.seed;
    const offset = (truthy(varyX) ? ix : 0) + (truthy(varyY) ? iy * xDim : 0) + (truthy(varyZ) ? iz * xDim * yDim : 0);
    return derive({ request: { subseed: base.subseed, ...request, seed: seed + offset } });
  }
  // Planned now so that an axis A1111 refuses while applying it (a Prompt S/R text not in the prompt) fails first.
  const passes = z.values.map((_, iz) => y.values.map((_, iy) => x.values.map((_, ix) => cellPass(ix, iy, iz))));

  return {
    jobCount: cells * r.n_iter,
    run: async (ctx) => {
      const images: Array<OutputImage | undefined> = [];
      let first: PreparedJob | undefined;
      // A cell after an interrupt makes no image: A1111 leaves it blank.
      for (const pass of passes.flat(2)) {
        ctx.state.job = `${images.length + 1} out of ${cells}`;
        const made = ctx.state.interrupted ? undefined : (await ctx.process(pass)).images[0];
        if (made) first ??= pass;
        images.push(made);
      }
      if (!first) return { job, images: [], indexOfFirstImage: 0 };
      const blank = images.find((i) => i !== undefined)!;
      const cellsMade = images.map((i) => i ?? { ...blank, raw: Buffer.alloc(blank.raw.length) });
      const perZ = x.values.length * y.values.length;
      // A grid's infotext is its first cell's, with the axes it shows.
      const gridText = (iz: number, params: Record<string, string>) => {
        const cell = passes[iz][0][0];
        return ctx.infotext({ ...cell, extraParams: { ...cell.extraParams, ...params } }, 0);
      };
      const zGrids = z.values.map((_, iz) => ({
        ...gridRaw(cellsMade.slice(iz * perZ, (iz + 1) * perZ), y.values.length),
        text: gridText(iz, gridParams(x, y, undefined, fixSeeds)),
      }));
      const main = { ...gridRaw(zGrids, 1), text: gridText(0, gridParams(x, y, z, fixSeeds)) };
      const out = [main, ...(truthy(includeGrids) ? zGrids : []), ...(truthy(includeImages) ? cellsMade : [])];
      return { job: first, images: out, indexOfFirstImage: 1 };
    },
  };
};
