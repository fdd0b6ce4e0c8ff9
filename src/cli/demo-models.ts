import type { MetaStore } from '../platform/meta-store/port.js';
import { objectKeyForModel } from '../platform/object-store/keys.js';
import type { ObjectStore } from '../platform/object-store/port.js';

// `sdflow dev` registers two demo checkpoints served by the simulator, so a new user can generate at once. The
// files are tiny placeholders: the simulator only needs them to exist (it hashes them for A1111-style titles).

export const DEMO_CHECKPOINTS = ['sdflow-demo-v1.safetensors', 'sdflow-demo-v2.safetensors'] as const;

export async function registerDemoCheckpoints(store: ObjectStore, meta: MetaStore): Promise<string[]> {
  for (const name of DEMO_CHECKPOINTS) {
    const key = objectKeyForModel('stableDiffusion', name);
    const existing = await meta.getModel(name);
    if (existing && existing.status !== 'deleted') continue;
    const info =
      (await store.head(key)) ??
      (await store.put(key, Buffer.from(`sdflow simulator demo checkpoint ${name}\n`), {
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
  return [...DEMO_CHECKPOINTS];
}
