import { randomBytes } from 'node:crypto';
import sharp from 'sharp';
import { assertSafeKey, mayReference, ObjectKeyError, objectKeyForInput } from '../platform/object-store/keys.js';
import type { ObjectStore } from '../platform/object-store/port.js';
import { classifyImageRef, mapImageRefs } from '../protocol/image-refs.js';
import type { SdParams, TaskKind } from '../types.js';
import type { Principal } from './auth.js';
import { badRequest, forbidden, HttpError } from './errors.js';
import type { Limits } from './schemas.js';

// The claim check: base64 inputs go to the object store under inputs/<user>/<taskId>/, and
// the task carries their keys, so no image ever enters Temporal's history. Object keys are confined to the caller's
// own files (an admin may name any).

export interface ClaimCheck {
  kind: TaskKind;
  taskId: string;
  principal: Principal;
  store: ObjectStore;
  limits: Limits;
}

const FORMAT_EXTENSIONS: Record<string, string> = { png: 'png', jpeg: 'jpg', webp: 'webp', gif: 'gif' };

/** Returns the params with every image field holding a checked object key. */
export async function claimCheckImages(params: SdParams, c: ClaimCheck): Promise<SdParams> {
  // A nonce per request keeps a losing duplicate submit from overwriting the inputs of the task that won its id.
  const nonce = randomBytes(4).toString('hex');
  let count = 0;
  return mapImageRefs(c.kind, params, async (value, field) => {
    const ref = classifyImageRef(value);
    if (ref.kind === 'invalid') throw badRequest(`${field}: ${ref.reason}`);
    if (ref.kind === 'key') return checkReference(ref.key, field, c);
    count++;
    if (count > c.limits.maxInputImages * 4) throw badRequest(`${field}: too many images in one request`);
    return storeInput(ref.base64, field, nonce, count, c);
  });
}

async function checkReference(key: string, field: string, c: ClaimCheck): Promise<string> {
  try {
    assertSafeKey(key);
  } catch (err) {
    if (err instanceof ObjectKeyError) throw badRequest(`${field}: ${err.message}`);
    throw err;
  }
  if (!mayReference(key, c.principal.user, c.principal.role === 'admin')) {
    throw forbidden(
      `${field}: you may reference only your own images/${c.principal.user}/ and inputs/${c.principal.user}/ keys`,
    );
  }
  if (!(await c.store.head(key))) throw badRequest(`${field}: no object at key ${key}`);
  return key;
}

async function storeInput(base64: string, field: string, nonce: string, n: number, c: ClaimCheck): Promise<string> {
  const bytes = Buffer.from(base64, 'base64');
  if (bytes.length > c.limits.maxInputImageBytes) {
    throw new HttpError(413, `${field}: image is ${bytes.length} bytes; the limit is ${c.limits.maxInputImageBytes}`);
  }
  let format: string | undefined;
  try {
    const meta = await sharp(bytes, { limitInputPixels: c.limits.maxInputPixels }).metadata();
    if (!meta.width || !meta.height) throw new Error('no dimensions');
    format = meta.format;
  } catch (err) {
    const why = /pixel limit/i.test(String(err))
      ? `has more than ${c.limits.maxInputPixels} pixels`
      : 'does not decode as an image';
    throw badRequest(`${field}: ${why}`);
  }
  const ext = FORMAT_EXTENSIONS[format ?? ''] ?? 'img';
  const key = objectKeyForInput(c.principal.user, c.taskId, `${nonce}-${n}.${ext}`);
  await c.store.put(key, bytes, { contentType: format ? `image/${format}` : 'application/octet-stream' });
  return key;
}
