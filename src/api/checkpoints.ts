import type { Config } from '../config/index.js';
import type { MetaStore } from '../platform/meta-store/port.js';
import type { ModelRecord } from '../records.js';
import type { SdParams } from '../types.js';
import { HttpError, notFound } from './errors.js';
import { modelStem } from './model-refs.js';

// Which registered checkpoint a request renders with, in one place. Every route resolves it once, and the task is
// submitted with the record it found: by name, by one of A1111's aliases, from the caller's options, or the default.

export interface CheckpointDeps {
  config: Pick<Config, 'models'>;
  meta: MetaStore;
}

/** A1111 titles carry a ` [hash]` suffix; the registry's names do not. */
export function stripTitleHash(name: string): string {
  return name.replace(/\s*\[[0-9a-fA-F]{8,64}\]$/, '');
}

/** A registered file's sha256: its etag, unless it was registered some other way. */
export const sha256Of = (model: ModelRecord) => (/^[0-9a-f]{64}$/.test(model.etag) ? model.etag : null);

/** A1111's title of a registered checkpoint: `name [short hash]`, the short hash being 10 hex of its sha256. */
export function checkpointTitle(model: ModelRecord): string {
  const sha256 = sha256Of(model);
  return sha256 ? `${model.name} [${sha256.slice(0, 10)}]` : model.name;
}

/**
 * Whether `ref` names the checkpoint the way A1111 lets a client name one: its name without the extension, its
 * short hash (the first 10 hex of its sha256, which is the etag), its whole sha256, or either name followed by a
 * ` [hash]` (a hash that no longer matches, after the weights changed, still names it).
 */
export function isCheckpointAlias(model: ModelRecord, ref: string): boolean {
  const wanted = ref.trim();
  const bare = stripTitleHash(wanted);
  if (bare === model.name || bare === modelStem(model.name)) return true;
  const hash = wanted.toLowerCase();
  const sha256 = sha256Of(model);
  return sha256 !== null && /^[0-9a-f]{10}$|^[0-9a-f]{64}$/.test(hash) && sha256.startsWith(hash);
}

/** A registered checkpoint by one of A1111's aliases; a loaded one first where two share an alias. */
async function findCheckpointByAlias(meta: MetaStore, ref: string): Promise<ModelRecord | undefined> {
  const matches = (await meta.listModels({ type: 'stableDiffusion' })).filter(
    (m) => m.status !== 'deleted' && isCheckpointAlias(m, ref),
  );
  return matches.find((m) => m.status === 'loaded') ?? matches[0];
}

/** The checkpoint a request names (by name, A1111 title or alias), if it is registered and servable. */
export async function resolveCheckpoint(meta: MetaStore, requested: string, field: string): Promise<ModelRecord> {
  const model =
    (await meta.getModel(requested)) ??
    (await meta.getModel(stripTitleHash(requested))) ??
    (await findCheckpointByAlias(meta, requested));
  if (model?.type !== 'stableDiffusion' || model.status === 'deleted') {
    throw notFound(`${field}: unknown checkpoint ${requested}`);
  }
  if (model.status !== 'loaded') {
    throw new HttpError(409, `${field}: checkpoint ${model.name} is ${model.status}, not loaded`);
  }
  return model;
}

/** The checkpoint used when a request names none: the configured default, else the oldest loaded checkpoint. */
export async function defaultCheckpoint(deps: CheckpointDeps): Promise<ModelRecord> {
  if (deps.config.models.defaultModel) {
    return resolveCheckpoint(deps.meta, deps.config.models.defaultModel, 'SDFLOW_DEFAULT_MODEL');
  }
  const loaded = await deps.meta.listModels({ type: 'stableDiffusion', status: 'loaded' });
  const first = loaded.sort((a, b) => a.registeredTime.localeCompare(b.registeredTime))[0];
  if (!first) throw new HttpError(503, 'no checkpoint is loaded yet');
  return first;
}

/**
 * The checkpoint of a request that names none: the `sd_model_checkpoint` of the caller's options (the version the
 * request applies, else the latest), else the deployment's default.
 */
export async function callersCheckpoint(
  deps: CheckpointDeps,
  user: string,
  optionsVersion?: number,
): Promise<ModelRecord> {
  const options = await deps.meta.getUserOptions(user, optionsVersion);
  const chosen = options?.data.sd_model_checkpoint;
  if (typeof chosen === 'string' && chosen.trim()) {
    return resolveCheckpoint(
      deps.meta,
      chosen.trim(),
      `sd_model_checkpoint (from your options, version ${options!.version})`,
    );
  }
  return defaultCheckpoint(deps);
}

const named = (value: unknown): string | undefined =>
  typeof value === 'string' && value.trim() ? value.trim() : undefined;

/** `override_settings.sd_model_checkpoint`: how an A1111 body names its checkpoint. */
export function overrideCheckpoint(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const settings = (body as SdParams).override_settings;
  return typeof settings === 'object' && settings !== null
    ? named((settings as Record<string, unknown>).sd_model_checkpoint)
    : undefined;
}

/**
 * The checkpoint of a drop-in or passthrough request, first found of: `stable_diffusion_model` (sdflow's own field),
 * `override_settings.sd_model_checkpoint`, the `model` query parameter (passthrough reads), the caller's options,
 * the default.
 */
export async function requestCheckpoint(
  deps: CheckpointDeps,
  r: { body?: unknown; query?: string; user: string; optionsVersion?: number },
): Promise<ModelRecord> {
  const body = typeof r.body === 'object' && r.body !== null ? (r.body as SdParams) : {};
  const fromBody = named(body.stable_diffusion_model);
  if (fromBody) return resolveCheckpoint(deps.meta, fromBody, 'stable_diffusion_model');
  const fromSettings = overrideCheckpoint(body);
  if (fromSettings) return resolveCheckpoint(deps.meta, fromSettings, 'override_settings.sd_model_checkpoint');
  const fromQuery = named(r.query);
  if (fromQuery) return resolveCheckpoint(deps.meta, fromQuery, 'model');
  return callersCheckpoint(deps, r.user, r.optionsVersion);
}
