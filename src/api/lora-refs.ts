import type { MetaStore, ModelRecord } from '../platform/meta-store/port.js';
import type { SdParams } from '../types.js';
import { HttpError, notFound } from './errors.js';

// LoRAs named in prompts with A1111's extra-network syntax, `<lora:NAME>` or `<lora:NAME:weight…>`. A request may
// name only LoRAs that are registered and loaded, so a typo is a 4xx naming it instead of a silently plain image.

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

const stem = (name: string) => name.replace(/\.[^./]+$/, '');

/** The registered LoRA a prompt name refers to: its file name, or that name without its extension. */
export function findLora(loras: readonly ModelRecord[], ref: string): ModelRecord | undefined {
  return loras.find((m) => m.name === ref) ?? loras.find((m) => stem(m.name) === ref);
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
    const lora = findLora(loras, name);
    if (!lora) throw notFound(`${field}: unknown LoRA "${name}"`);
    if (lora.status !== 'loaded') throw new HttpError(409, `${field}: LoRA "${name}" is ${lora.status}, not loaded`);
  }
}
