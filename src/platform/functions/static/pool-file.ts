import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '../../../config/index.js';

// The static GPU pool's file (SDFLOW_STATIC_POOL_FILE): which SD WebUI instances serve which checkpoint.
//
//   { "checkpoints": { "<checkpoint name>": ["http://gpu1:7860", "http://gpu2:7860"] },
//     "healthCheckS": 10, "healthTimeoutS": 5 }
//
// Each URL is one A1111 WebUI started with --api. A URL may serve several checkpoints (it then switches between
// them); it still runs one request at a time.

const webUiUrl = z
  .string()
  .trim()
  .refine((value) => {
    try {
      const url = new URL(value);
      return (url.protocol === 'http:' || url.protocol === 'https:') && url.search === '' && url.hash === '';
    } catch {
      return false;
    }
  }, 'must be the http(s) base URL of a WebUI, such as http://gpu1:7860')
  .transform((value) => value.replace(/\/+$/, ''));

export const poolFileSchema = z.strictObject({
  checkpoints: z
    .record(
      z.string().trim().min(1, 'a checkpoint name must not be empty'),
      z
        .array(webUiUrl, { error: 'must be an array of WebUI URLs' })
        .min(1, 'must list at least one WebUI URL')
        .superRefine((urls, ctx) => {
          const seen = new Set<string>();
          for (const [i, url] of urls.entries()) {
            if (seen.has(url)) ctx.addIssue({ code: 'custom', path: [i], message: `lists ${url} twice` });
            seen.add(url);
          }
        }),
      { error: 'must be an object of "<checkpoint name>": ["<WebUI URL>", …]' },
    )
    .refine((checkpoints) => Object.keys(checkpoints).length > 0, 'must map at least one checkpoint'),
  /** Seconds between health checks of each WebUI. */
  healthCheckS: z.number({ error: 'must be a number of seconds' }).positive().max(3600).default(10),
  /** Seconds a health check waits for an answer. */
  healthTimeoutS: z.number({ error: 'must be a number of seconds' }).positive().max(600).default(5),
});

export type PoolFile = z.output<typeof poolFileSchema>;

/** A field path as a reader finds it in the file: checkpoints["a.safetensors"][1]. */
function fieldPath(path: PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(String(part))) out += out ? `.${String(part)}` : String(part);
    else out += `[${JSON.stringify(String(part))}]`;
  }
  return out || '(the file)';
}

/** Reads and checks the pool file; every problem names the file and the field. */
export function readPoolFile(file: string): PoolFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`static pool file ${file}: cannot read it (${(err as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`static pool file ${file}: not valid JSON (${(err as Error).message})`);
  }
  const parsed = poolFileSchema.safeParse(raw);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${fieldPath(i.path)}: ${i.message}`).join('; ');
    throw new ConfigError(`static pool file ${file}: ${detail}`);
  }
  return parsed.data;
}
