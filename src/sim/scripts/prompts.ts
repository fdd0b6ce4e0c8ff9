import { checkJobPixels, type GenerationRequest } from '../params.js';
import { fixedSeeds, gridImage, type Planner, pythonError, truthy } from './common.js';

// The scripts that vary the prompt: A1111 1.10.1's scripts/prompt_matrix.py and scripts/prompts_from_file.py.

/**
 * Prompt matrix: the prompt split at "|" into a base and N parts gives 2^N prompts (the base with each subset of
 * the parts), made in one pass of ceil(2^N / batch_size) iterations; the answer is a grid of them (2^(N/2) rows)
 * and then each image.
 */
export const promptMatrix: Planner = ({ job, args, derive }) => {
  const [putAtStart, differentSeeds, promptType, delimiter] = args;
  if (promptType !== 'positive' && promptType !== 'negative')
    throw pythonError('ValueError', `Unknown prompt type ${promptType}`);
  if (delimiter !== 'comma' && delimiter !== 'space')
    throw pythonError('ValueError', `Unknown variations delimiter ${delimiter}`);
  const r = job.request;
  const parts = (promptType === 'positive' ? r.prompt : r.negative_prompt).split('|');
  const count = 2 ** (parts.length - 1);
  checkJobPixels(2 * count * job.width * job.height, "Prompt matrix's images");
  const joiner = delimiter === 'comma' ? ', ' : ' ';
  const variants = Array.from({ length: count }, (_, combination) => {
    const picked = parts
      .slice(1)
      .filter((_, n) => combination & (1 << n))
      .map((part) => part.trim().replace(/^,+|,+$/g, ''));
    return (truthy(putAtStart) ? [...picked, parts[0]] : [parts[0], ...picked]).join(joiner);
  });
  const { seed, subseed } = fixedSeeds(job);
  const nIter = Math.ceil(count / r.batch_size);
  const pass = derive({
    request: { n_iter: nIter, subseed, save_images: false },
    prompts: promptType === 'positive' ? variants : Array(count).fill(r.prompt),
    negativePrompts: promptType === 'negative' ? variants : Array(count).fill(r.negative_prompt),
    seeds: variants.map((_, i) => seed + (truthy(differentSeeds) ? i : 0)),
  });
  return {
    jobCount: nIter,
    run: async (ctx) => {
      const processed = await ctx.process(pass);
      if (processed.images.length === 0) return processed;
      const grid = gridImage(processed.images, 1 << Math.floor((parts.length - 1) / 2));
      return { job: pass, images: [grid, ...processed.images], indexOfFirstImage: 1 };
    },
  };
};

type LineArgs = Partial<GenerationRequest>;

/** The options a line may set, and how A1111 reads each value. */
const LINE_OPTIONS: Record<string, 'int' | 'float' | 'str' | 'bool'> = {
  sd_model: 'str',
  outpath_samples: 'str',
  outpath_grids: 'str',
  prompt_for_display: 'str',
  styles: 'str',
  seed: 'int',
  subseed_strength: 'float',
  subseed: 'int',
  seed_resize_from_h: 'int',
  seed_resize_from_w: 'int',
  sampler_index: 'int',
  sampler_name: 'str',
  batch_size: 'int',
  n_iter: 'int',
  steps: 'int',
  cfg_scale: 'float',
  width: 'int',
  height: 'int',
  restore_faces: 'bool',
  tiling: 'bool',
  do_not_save_samples: 'bool',
  do_not_save_grid: 'bool',
};

/**
 * The options the simulator applies; the others are accepted and left out (it saves no files, and a line's
 * sd_model is not loaded).
 */
const APPLIED = new Set([
  'seed',
  'subseed_strength',
  'subseed',
  'seed_resize_from_h',
  'seed_resize_from_w',
  'sampler_name',
  'batch_size',
  'n_iter',
  'steps',
  'cfg_scale',
  'width',
  'height',
  'restore_faces',
  'tiling',
]);

/** Python's shlex.split: words split at whitespace, with '…' and "…" quoting and \ escapes. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let quote = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote === "'") {
      if (c === "'") quote = '';
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = '';
      else if (c === '\\' && '"\\$`'.includes(line[i + 1] ?? '')) word += line[++i];
      else word += c;
    } else if (/\s/.test(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else {
      word ??= '';
      if (c === "'" || c === '"') quote = c;
      else if (c === '\\') word += line[++i] ?? '';
      else word += c;
    }
  }
  if (quote) throw new Error('No closing quotation');
  if (word !== undefined) words.push(word);
  return words;
}

function lineValue(kind: 'int' | 'float' | 'str' | 'bool', text: string): unknown {
  if (kind === 'str') return text;
  if (kind === 'bool') return text === 'true';
  const n = kind === 'int' && /^\s*[-+]?\d+\s*$/.test(text) ? Number(text) : kind === 'float' ? Number(text) : NaN;
  if (text.trim() === '' || !Number.isFinite(n)) throw new Error(`invalid ${kind}: ${text}`);
  return n;
}

/** A line in the "--option value" form; throws where A1111's parser does. */
function lineArgs(line: string): LineArgs {
  const words = shellWords(line);
  const out: Record<string, unknown> = {};
  for (let pos = 0; pos < words.length; ) {
    const arg = words[pos];
    if (!arg.startsWith('--')) throw new Error(`must start with "--": ${arg}`);
    if (pos + 1 >= words.length) throw new Error(`missing argument for command line option ${arg}`);
    const tag = arg.slice(2);
    if (tag === 'prompt' || tag === 'negative_prompt') {
      let text = words[++pos];
      for (pos++; pos < words.length && !words[pos].startsWith('--'); pos++) text += ` ${words[pos]}`;
      out[tag] = text;
      continue;
    }
    const kind = LINE_OPTIONS[tag];
    if (!kind) throw new Error(`unknown commandline option: ${arg}`);
    const value = lineValue(kind, words[pos + 1]);
    if (APPLIED.has(tag)) out[tag] = value;
    pos += 2;
  }
  return out as LineArgs;
}

/** A line of the list: its options when it has any ("--"), else the whole line is the prompt, as A1111 reads it. */
function readLine(line: string): LineArgs {
  if (!line.includes('--')) return { prompt: line };
  try {
    return lineArgs(line);
  } catch {
    return { prompt: line };
  }
}

/**
 * Prompts from file or textbox: one pass per non-empty line, the line's prompt put before or after the request's,
 * with the options a line sets; the answer is every image of every pass, with no grid.
 */
export const promptsFromFile: Planner = ({ job, args, derive }) => {
  const [iterate, sameRandomSeed, position, text] = args;
  if (typeof text !== 'string')
    throw pythonError('AttributeError', `'${typeof text}' object has no attribute 'splitlines'`);
  const r = job.request;
  const lines = text
    .split(/\r\n|[\n\r\v\f\u2028\u2029]/)
    .map((line) => line.trim())
    .filter(Boolean);
  // A seed of -1 is fixed once when the seeds follow from it; otherwise each pass draws its own.
  let seed = (truthy(iterate) || truthy(sameRandomSeed)) && r.seed === -1 ? job.seeds[0] : r.seed;
  const passes = lines.map((line) => {
    const { prompt, negative_prompt, ...rest } = readLine(line);
    const joined = (own: string | undefined, base: string) =>
      own && base ? (position === 'start' ? `${own} ${base}` : `${base} ${own}`) : (own ?? base);
    const pass = derive({
      request: {
        seed,
        ...rest,
        prompt: joined(prompt, r.prompt),
        negative_prompt: joined(negative_prompt, r.negative_prompt),
        save_images: false,
      },
    });
    if (truthy(iterate)) seed += r.batch_size * r.n_iter;
    return pass;
  });
  const pixels = passes.reduce((sum, p) => sum + p.seeds.length * p.width * p.height, 0);
  checkJobPixels(pixels, "Prompts from file or textbox's images");
  const jobCount = passes.reduce((sum, p) => sum + p.request.n_iter, 0);
  return {
    jobCount,
    run: async (ctx) => {
      const images = [];
      for (const pass of passes) {
        if (ctx.state.interrupted) break;
        ctx.state.job = `${ctx.state.jobNo + 1} out of ${jobCount}`;
        images.push(...(await ctx.process(pass)).images);
      }
      return { job, images, indexOfFirstImage: 0 };
    },
  };
};
