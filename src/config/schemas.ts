import { z } from 'zod';

// The kinds of value settings hold, as written in the environment (text) or in the SDFLOW_CONFIG file.

export const int = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);
export const num = (def: number, min = 0) => z.coerce.number().min(min).default(def);
export const bool = (def: boolean) =>
  z
    .union([z.boolean(), z.string()])
    .default(def)
    .transform((v) => (typeof v === 'boolean' ? v : ['1', 'true', 'yes', 'on'].includes(v.toLowerCase())));

/** Text whose blank means unset. */
export const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

/** A setting holding JSON: parsed, then checked against `schema`. Unset or blank is undefined. */
export const jsonSetting = <T extends z.ZodType>(schema: T) =>
  optionalString
    .transform((v, ctx) => {
      if (v === undefined) return undefined;
      try {
        return JSON.parse(v) as unknown;
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: `is not valid JSON (${(err as Error).message})` });
        return z.NEVER;
      }
    })
    .pipe(schema.optional());

/** Sizes are written in MB and used in bytes. */
export const bytesOfMb = (mb: number) => Math.floor(mb * 1024 * 1024);

/** The absolute path of a directory, as an FC mount point or a container's data dir must be. */
export const absoluteDir = z.string().regex(/^\/[^\0]*$/, 'must be an absolute path');
export const nonEmpty = z.string().min(1, 'must not be empty');
/** A command as an argv, as FC and a started WebUI take it. */
export const argv = z.array(nonEmpty, { error: 'must be an array of strings' }).min(1, 'must not be empty');
