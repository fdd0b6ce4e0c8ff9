import { a1111OptionDefaults, settableOptions, unknownOptionKeys, unknownOptionsDetail } from '../a1111/options.js';
import type { MetaStore } from '../platform/meta-store/port.js';
import { a1111Error } from '../protocol/a1111-error.js';
import type { ModelRecord, TaskRecord } from '../records.js';
import type { Answer } from './answers.js';
import { callersCheckpoint, checkpointTitle, resolveCheckpoint, sha256Of } from './checkpoints.js';
import { HttpError } from './errors.js';
import { assertVaeUsable, modelStem } from './model-refs.js';
import { MAX_OPTIONS_BYTES } from './platform-schemas.js';
import type { TaskDeps } from './tasks.js';

// What the A1111 drop-in answers in A1111's shapes: a finished task, and, from sdflow's own records rather than from
// an instance, the caller's options (`/sdapi/v1/options` is the same store as `/options`, one version per change)
// and the model lists, which come from the registry. No instance is involved, so every API replica answers the same.

/** A1111's answer to a request it refuses: FastAPI's `{detail}`, plus the `message` every sdflow error carries. */
export const a1111Refusal = (status: number, detail: string) => new HttpError(status, detail, { detail });

/**
 * `GET /sdapi/v1/options`: A1111's whole option set, the caller's values over the defaults. `sd_model_checkpoint` is
 * the title of the checkpoint their drop-in generations use; one that no longer resolves is shown as stored.
 */
export async function callersOptionsView(deps: TaskDeps, user: string): Promise<Record<string, unknown>> {
  const options = await deps.meta.getUserOptions(user);
  const view: Record<string, unknown> = { ...a1111OptionDefaults(), ...options?.data };
  const checkpoint = await callersCheckpoint(deps, user).catch((err) => {
    if (err instanceof HttpError) return undefined;
    throw err;
  });
  if (checkpoint) {
    view.sd_model_checkpoint = checkpointTitle(checkpoint);
    view.sd_checkpoint_hash = checkpoint.etag;
  }
  return view;
}

/** Settings with a change merged in, as A1111 merges: key by key, a null putting a key back to its default. */
export function mergeSettings(
  current: Record<string, unknown> | undefined,
  changes: Record<string, unknown>,
): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...current };
  for (const [key, value] of Object.entries(changes)) {
    if (value === null) delete merged[key];
    else merged[key] = value;
  }
  return merged;
}

/**
 * `POST /sdapi/v1/options`: merges the changes into a new version of the caller's options, as A1111 merges into its
 * settings. A null puts a key back to its default. A checkpoint is stored by its registry name, once resolved from
 * any of A1111's aliases; it and a VAE must be registered and loaded. Nothing changed, no new version.
 */
export async function mergeCallersOptions(deps: TaskDeps, user: string, body: unknown): Promise<void> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw a1111Refusal(422, 'body: must be a JSON object of settings');
  }
  // As A1111 refuses them: nothing is applied when one key is unknown.
  const unknown = unknownOptionKeys(body as Record<string, unknown>);
  if (unknown.length > 0) throw a1111Refusal(422, unknownOptionsDetail(unknown));
  const changes = settableOptions(body as Record<string, unknown>);
  const latest = await deps.meta.getUserOptions(user);
  const merged = mergeSettings(latest?.data, changes);
  const checkpoint = changes.sd_model_checkpoint;
  if (checkpoint !== undefined && checkpoint !== null) {
    if (typeof checkpoint !== 'string') throw a1111Refusal(422, 'sd_model_checkpoint: must be a string');
    merged.sd_model_checkpoint = (await resolveCheckpoint(deps.meta, checkpoint, 'sd_model_checkpoint')).name;
  }
  if (changes.sd_vae !== undefined && changes.sd_vae !== null) {
    await assertVaeUsable(deps.meta, changes.sd_vae, 'sd_vae');
  }
  if (Buffer.byteLength(JSON.stringify(merged)) > MAX_OPTIONS_BYTES) {
    throw a1111Refusal(413, `your options would be over ${MAX_OPTIONS_BYTES / 1024} KB of JSON`);
  }
  if (JSON.stringify(merged) === JSON.stringify(latest?.data ?? {})) return;
  await deps.meta.putUserOptions(user, merged);
}

const loaded = (meta: MetaStore, type: ModelRecord['type']) => meta.listModels({ type, status: 'loaded' });

/** The registry's loaded models in the shapes of A1111's list routes, with the object key where A1111 has a path. */
export const registryLists = {
  'sd-models': async (meta: MetaStore) =>
    (await loaded(meta, 'stableDiffusion')).map((m) => ({
      title: checkpointTitle(m),
      model_name: modelStem(m.name),
      hash: sha256Of(m)?.slice(0, 10) ?? null,
      sha256: sha256Of(m),
      filename: m.ossPath,
      config: null,
    })),
  'sd-vae': async (meta: MetaStore) =>
    (await loaded(meta, 'sdVae')).map((m) => ({ model_name: m.name, filename: m.ossPath })),
  loras: async (meta: MetaStore) =>
    (await loaded(meta, 'lora')).map((m) => ({
      name: modelStem(m.name),
      alias: modelStem(m.name),
      path: m.ossPath,
      metadata: {},
    })),
  hypernetworks: async () => [],
  embeddings: async () => ({ loaded: {}, skipped: {} }),
  // ControlNet titles carry a legacy hash of the file that the registry does not compute; the extension also finds
  // a model by its name alone, so the names go without one rather than with a hash that would not match.
  'controlnet-models': async (meta: MetaStore) => ({
    model_list: (await loaded(meta, 'controlNet')).map((m) => modelStem(m.name)),
  }),
};

/** The answer A1111 would give for a finished task: its images as base64, in A1111's shapes. */
export async function a1111Answer(deps: TaskDeps, task: TaskRecord): Promise<Answer> {
  if (task.status === 'failed') {
    return {
      status: task.errorKind === 'bad_input' ? 422 : 500,
      body: a1111Error('TaskFailed', task.message ?? 'failed'),
    };
  }
  if (task.status === 'cancelled') {
    return { status: 409, body: a1111Error('TaskCancelled', task.message ?? 'cancelled') };
  }
  const images = await Promise.all(task.images.map(async (key) => (await deps.store.get(key)).toString('base64')));
  if (task.kind === 'extra') {
    const info = JSON.parse(task.info ?? '{}') as { html_info?: string };
    return { status: 200, body: { html_info: info.html_info ?? '', image: images[0] ?? '' } };
  }
  return { status: 200, body: { images, parameters: task.parameters ?? {}, info: task.info ?? '{}' } };
}
