import type { MetaStore } from '../platform/meta-store/port.js';
import { objectKeyForModel } from '../platform/object-store/keys.js';
import type { ObjectStore } from '../platform/object-store/port.js';

// `sdflow dev` registers two demo checkpoints served by the simulator, so a new user can generate at once. The
// files are tiny placeholders, but valid safetensors files holding no tensors, so they pass the registration's
// checks if registered again. The simulator hashes them for A1111-style titles; the name in the metadata keeps the
// two hashes apart.

export const DEMO_CHECKPOINTS = ['sdflow-demo-v1.safetensors', 'sdflow-demo-v2.safetensors'] as const;

/** A safetensors file with no tensors: the header's length (u64, little-endian), then the JSON header. */
export function emptySafetensors(metadata: Record<string, string>): Buffer {
  const json = Buffer.from(JSON.stringify({ __metadata__: metadata }));
  // The format pads the header with spaces to a multiple of 8 bytes.
  const header = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, ' ')]);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  return Buffer.concat([length, header]);
}

export function registerDemoCheckpoints(store: ObjectStore, meta: MetaStore): Promise<string[]> {
  return registerSimCheckpoints(store, meta, DEMO_CHECKPOINTS);
}

/** Registers placeholder checkpoints as loaded (the benchmark needs more than the two demo ones). */
export async function registerSimCheckpoints(
  store: ObjectStore,
  meta: MetaStore,
  names: readonly string[],
): Promise<string[]> {
  for (const name of names) {
    const key = objectKeyForModel('stableDiffusion', name);
    const existing = await meta.getModel(name);
    if (existing && existing.status !== 'deleted') continue;
    const info =
      (await store.head(key)) ??
      (await store.put(key, emptySafetensors({ name, description: 'sdflow simulator demo checkpoint' }), {
        contentType: 'application/octet-stream',
      }));
    const now = new Date().toISOString();
    await meta.putModel({
      type: 'stableDiffusion',
      name,
      ossPath: key,
      etag: info.etag,
      status: 'loaded',
      registeredTime: now,
      lastModificationTime: now,
    });
  }
  return [...names];
}
