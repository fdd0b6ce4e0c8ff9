import type { JobChanges, OutputImage, PreparedJob, Processed } from '../generate.js';
import { gridRaw } from '../render.js';
import type { SdState } from '../state.js';

// What every script uses: its inputs and run context, and Python's semantics for the arguments it reads. A script
// argument A1111 cannot use fails as it does there: an uncaught Python exception, which its API answers with a 500
// naming it (ValueError, IndexError, TypeError, ...).

export interface ScriptInput {
  job: PreparedJob;
  /** script_args; missing trailing ones take the script's UI defaults. */
  args: unknown[];
  settings: Record<string, unknown>;
  /** A pass: the job with a script's changes to A1111's `p`. */
  derive(changes: JobChanges): PreparedJob;
}

export interface ScriptRunContext {
  state: SdState;
  settings: Record<string, unknown>;
  /** A1111's process_images on one pass. */
  process(pass: PreparedJob): Promise<Processed>;
  /** Sampling that makes no image (a search for the noise of an image), counted as one job. */
  sampleOnly(pass: PreparedJob, steps: number): Promise<void>;
  /** The infotext of the pass's image `index`. */
  infotext(pass: PreparedJob, index: number): string;
}

export interface ScriptPlan {
  title: string;
  /** A1111's state.job_count while the script runs. */
  jobCount: number;
  run(ctx: ScriptRunContext): Promise<Processed>;
}

export type Planner = (input: ScriptInput) => Omit<ScriptPlan, 'title'>;

/** An exception A1111 does not catch: its API answers 500 with the exception's class and message. */
export function pythonError(name: string, message: string): Error {
  const err = new Error(message);
  err.name = name;
  return err;
}

/** Python's truth value of a JSON value. */
export function truthy(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object' && v !== null) return Object.keys(v).length > 0;
  return Boolean(v);
}

/** The Python type name of a JSON value, for error messages. */
function pyType(v: unknown): string {
  if (v === null) return 'NoneType';
  if (typeof v === 'string') return 'str';
  if (Array.isArray(v)) return 'list';
  return typeof v === 'object' ? 'dict' : 'float';
}

/** A value the script does arithmetic with: a number (a boolean counts as 0 or 1, as in Python). */
export function pyNumber(v: unknown, what: string): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'boolean') return Number(v);
  throw pythonError('TypeError', `${what}: unsupported operand type '${pyType(v)}'`);
}

/** A value the script counts with (range, list index): an integer. */
export function pyInt(v: unknown, what: string): number {
  if (typeof v === 'boolean') return Number(v);
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  throw pythonError('TypeError', `${what}: '${pyType(v)}' object cannot be interpreted as an integer`);
}

/** `list[index]`, Python-style: negative indexes count from the end; an index out of range is an IndexError. */
export function pyIndex<T>(list: readonly T[], index: unknown): T {
  if (!(typeof index === 'boolean' || Number.isInteger(index)))
    throw pythonError('TypeError', `list indices must be integers or slices, not ${pyType(index)}`);
  const i = Number(index);
  const item = list[i < 0 ? list.length + i : i];
  if (item === undefined) throw pythonError('IndexError', 'list index out of range');
  return item;
}

/** `word in value`, for a list of words or a string. */
export function pyContains(value: unknown, word: string): boolean {
  if (Array.isArray(value) || typeof value === 'string') return value.includes(word);
  throw pythonError('TypeError', `argument of type '${pyType(value)}' is not iterable`);
}

/** A grid of images, first image's infotext, as scripts put before their images. */
export function gridImage(images: OutputImage[], rows?: number): OutputImage {
  return { ...gridRaw(images, rows), text: images[0].text };
}

/** The seed and subseed a script fixes before its passes (A1111's fix_seed): the ones the job resolved. */
export function fixedSeeds(job: PreparedJob): { seed: number; subseed: number } {
  return { seed: job.seeds[0], subseed: job.subseeds[0] };
}
