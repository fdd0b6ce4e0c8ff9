import { isJsonObject } from '../json.js';
import type { SdParams, TaskKind } from '../types.js';

// Image references in A1111 bodies. The API's claim check and the agent both walk the same fields with
// `mapImageRefs` and tell object keys from base64 with `classifyImageRef`, so they can never disagree.

export type ImageRef =
  | { kind: 'key'; key: string }
  /** Raw base64 without a data: prefix. */
  | { kind: 'base64'; base64: string }
  | { kind: 'invalid'; reason: string };

const MAX_KEY_LENGTH = 1024;
const DATA_URL = /^data:image\/[A-Za-z0-9.+-]+;base64,/;
const BASE64 = /^[A-Za-z0-9+/\s]*={0,2}\s*$/;

/** The image's bytes, from base64 or a data URL (as some SD front-ends and forks send and answer images). */
export const imageBytes = (value: string): Buffer => Buffer.from(value.replace(DATA_URL, ''), 'base64');

/** Leading bytes of the image formats SD front-ends send. */
const SIGNATURES: readonly (readonly number[])[] = [
  [0x89, 0x50, 0x4e, 0x47], // PNG
  [0xff, 0xd8, 0xff], // JPEG
  [0x47, 0x49, 0x46, 0x38], // GIF
  [0x52, 0x49, 0x46, 0x46], // RIFF (WebP)
  [0x42, 0x4d], // BMP
];

/** Whether base64 text starts with the bytes of a PNG, JPEG, GIF, WebP or BMP. */
export function startsWithImageSignature(value: string): boolean {
  const head = Buffer.from(value.slice(0, 16), 'base64');
  return SIGNATURES.some((sig) => sig.every((byte, i) => head[i] === byte));
}

/**
 * Tells what an image field holds. The rule, in order:
 * 1. `data:image/<type>;base64,<data>` is a data URL: its data is the base64.
 * 2. A string longer than 1024 characters, or holding `+`, `=` or whitespace, or no `/`, is base64
 *    (object keys are short, always have a `/`, and never hold those characters).
 * 3. A string whose first bytes decode to a PNG, JPEG, GIF, WebP or BMP signature is base64.
 * 4. Anything else is an object key (still to be checked with `assertSafeKey` and `mayReference`).
 * A string taken for base64 that holds characters outside the base64 alphabet is invalid.
 */
export function classifyImageRef(value: string): ImageRef {
  if (value.startsWith('data:')) {
    const prefix = DATA_URL.exec(value);
    if (!prefix) return { kind: 'invalid', reason: 'a data URL must be data:image/<type>;base64,<data>' };
    return base64Ref(value.slice(prefix[0].length));
  }
  const keyShaped = value.length <= MAX_KEY_LENGTH && value.includes('/') && !/[+=\s]/.test(value);
  if (keyShaped && !startsWithImageSignature(value)) return { kind: 'key', key: value };
  return base64Ref(value);
}

function base64Ref(value: string): ImageRef {
  if (value.length === 0) return { kind: 'invalid', reason: 'the image is empty' };
  if (!BASE64.test(value)) return { kind: 'invalid', reason: 'neither an object key nor base64' };
  return { kind: 'base64', base64: value };
}

/**
 * Whether a free-form script argument is an image reference. Script arguments also hold plain strings (module
 * names, prompts), so only unambiguous images count: data URLs, base64 with an image signature, and keys under the
 * user-referenceable prefixes.
 */
function isScriptImageArg(value: string): boolean {
  if (value.startsWith('data:')) return true;
  const ref = classifyImageRef(value);
  if (ref.kind === 'key') return /^(images|inputs)\//.test(ref.key);
  return ref.kind === 'base64' && startsWithImageSignature(ref.base64);
}

/** The fields of a script argument object (ControlNet units and the like) that hold images. */
const UNIT_IMAGE_FIELDS = ['image', 'mask', 'input_image', 'mask_image'] as const;

/** Receives each image reference with the field it sits in (e.g. `init_images[0]`) and returns its replacement. */
export type ImageRefMapper = (value: string, field: string) => string | Promise<string>;

async function mapUnit(unit: Record<string, unknown>, field: string, fn: ImageRefMapper) {
  const out: Record<string, unknown> = { ...unit };
  for (const name of UNIT_IMAGE_FIELDS) {
    const value = unit[name];
    if (typeof value === 'string' && value !== '') out[name] = await fn(value, `${field}.${name}`);
    else if (isJsonObject(value)) out[name] = await mapUnit(value, `${field}.${name}`, fn);
  }
  return out;
}

/**
 * Returns a copy of `params` with every image reference replaced by `fn`'s answer: `init_images[]`, `mask`,
 * `alwayson_scripts.<script>.args[]` (image strings, and the image fields of unit objects), and `image` for `extra`.
 * Fields that are absent or not strings are left for SD to judge.
 */
export async function mapImageRefs(kind: TaskKind, params: SdParams, fn: ImageRefMapper): Promise<SdParams> {
  const out: SdParams = { ...params };
  if (kind === 'extra') {
    if (typeof params.image === 'string') out.image = await fn(params.image, 'image');
    return out;
  }
  if (Array.isArray(params.init_images)) {
    out.init_images = await Promise.all(
      params.init_images.map((v, i) => (typeof v === 'string' ? fn(v, `init_images[${i}]`) : v)),
    );
  }
  if (typeof params.mask === 'string' && params.mask !== '') out.mask = await fn(params.mask, 'mask');
  if (isJsonObject(params.alwayson_scripts)) {
    const scripts: Record<string, unknown> = {};
    for (const [name, script] of Object.entries(params.alwayson_scripts)) {
      if (!isJsonObject(script) || !Array.isArray(script.args)) {
        scripts[name] = script;
        continue;
      }
      const args = await Promise.all(
        script.args.map((arg, i) => {
          const field = `alwayson_scripts.${name}.args[${i}]`;
          if (typeof arg === 'string') return isScriptImageArg(arg) ? fn(arg, field) : arg;
          return isJsonObject(arg) ? mapUnit(arg, field, fn) : arg;
        }),
      );
      scripts[name] = { ...script, args };
    }
    out.alwayson_scripts = scripts;
  }
  return out;
}

/** The fields `mapImageRefs` rewrites; a response's echoed parameters get these back from the original request. */
export function imageFieldNames(kind: TaskKind): string[] {
  return kind === 'extra' ? ['image'] : ['init_images', 'mask', 'alwayson_scripts'];
}
