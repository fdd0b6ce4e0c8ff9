import type { MetaStore } from '../platform/meta-store/port.js';
import type { ModelRecord } from '../records.js';
import type { SdParams } from '../types.js';
import { badRequest, HttpError, notFound } from './errors.js';

// Models a request names besides its checkpoint: LoRAs in prompts (A1111's `<lora:NAME>` or `<lora:NAME:weight…>`)
// and the VAE of `sd_vae` / `override_settings.sd_vae`. A request may name only models that are registered and
// loaded, so a typo is a 4xx naming it at submit, instead of a silently plain image or a task that takes a GPU slot
// only to fail.

const LORA_TAG = /<lora:([^:>]+)(?::[^>]*)?>/gi;
const PROMPT_FIELDS = ['prompt', 'negative_prompt'] as const;

/** The LoRA names a prompt refers to, in order of first mention, each once. */
export function loraNames(prompt: string): string[] {
  const names = new Set<string>();
  for (const match of prompt.matchAll(LORA_TAG)) {
    const name = match[1].trim();
    if (name) names.add(name);
  }
  return [...names];
}

/** A model's name without its extension, as A1111 lists LoRAs and accepts checkpoints and VAEs. */
export const modelStem = (name: string) => name.replace(/\.[^./]+$/, '');

/** The registered model a name refers to: its file name, or that name without its extension. */
export function findByName(models: readonly ModelRecord[], ref: string): ModelRecord | undefined {
  return models.find((m) => m.name === ref) ?? models.find((m) => modelStem(m.name) === ref);
}

/** A1111's `sd_vae` values that name no file: the checkpoint's own VAE, or none. */
const VAE_WITHOUT_FILE = new Set(['Automatic', 'None', '']);

/** Refuses a VAE setting that names a VAE that is unknown, deleted or not loaded. */
export async function assertVaeUsable(meta: MetaStore, vae: unknown, field: string): Promise<void> {
  if (typeof vae !== 'string') throw badRequest(`${field}: must be a string`);
  if (VAE_WITHOUT_FILE.has(vae)) return;
  const vaes = (await meta.listModels({ type: 'sdVae' })).filter((m) => m.status !== 'deleted');
  const found = findByName(vaes, vae);
  if (!found) throw notFound(`${field}: unknown VAE "${vae}"`);
  if (found.status !== 'loaded') throw new HttpError(409, `${field}: VAE "${vae}" is ${found.status}, not loaded`);
}

/** Refuses a request whose prompt or negative prompt names a LoRA that is unknown, deleted or not loaded. */
export async function assertLorasUsable(meta: MetaStore, body: SdParams): Promise<void> {
  const wanted = PROMPT_FIELDS.flatMap((field) => {
    const text = body[field];
    return typeof text === 'string' ? loraNames(text).map((name) => ({ field, name })) : [];
  });
  if (wanted.length === 0) return;
  const loras = (await meta.listModels({ type: 'lora' })).filter((m) => m.status !== 'deleted');
  for (const { field, name } of wanted) {
    const lora = findByName(loras, name);
    if (!lora) throw notFound(`${field}: unknown LoRA "${name}"`);
    if (lora.status !== 'loaded') throw new HttpError(409, `${field}: LoRA "${name}" is ${lora.status}, not loaded`);
  }
}
