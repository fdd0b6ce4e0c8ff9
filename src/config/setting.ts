import type { z } from 'zod';

// A setting is declared once, where it is mapped: its variable, schema (validation and default) and meaning sit on
// the field of the group it fills. A group may also read settings declared by other groups, so one variable can
// feed every consumer that needs it without being declared twice.

/** A configuration that cannot work; its message names the variable to fix. */
export class ConfigError extends Error {}

export interface Setting<Value = unknown> {
  /** The environment variable (or key of the SDFLOW_CONFIG file) it is read from. */
  readonly env: string;
  /** Validation and default, applied to the text as written; errors name `env`. */
  readonly schema: z.ZodType;
  /** What it means, for the config matrix in docs/deploy.md. */
  readonly meaning: string;
  /** Its value in the config, from the parsed one (a unit conversion, a trailing slash dropped). */
  readonly map: (parsed: unknown) => Value;
}

// NoInfer: inside a group's record, the record's type would otherwise make every setting's Value unknown.
export function setting<S extends z.ZodType, Value = z.output<S>>(declaration: {
  env: string;
  schema: S;
  meaning: string;
  map?: (parsed: z.output<S>) => Value;
}): Setting<NoInfer<Value>> {
  const { env, schema, meaning, map = (parsed: z.output<S>) => parsed as Value } = declaration;
  return { env, schema, meaning, map: map as (parsed: unknown) => Value };
}

/** A setting's value in the config, for settings of any group. */
export type Read = <Value>(setting: Setting<Value>) => Value;

type Settings = Record<string, Setting>;

/** A group's settings by field, as their values. */
export type Values<S extends Settings> = { [K in keyof S]: S[K] extends Setting<infer Value> ? Value : never };

/** The settings one consumer reads, and the typed object it receives. */
export interface Group<S extends Settings = Settings, Value = unknown> {
  readonly settings: S;
  readonly load: (read: Read) => Value;
}

/** The type of a group's object in the config. */
export type GroupValue<G extends Group> = ReturnType<G['load']>;

/**
 * A group whose object holds each setting's value under the setting's field; `finish` adds what depends on several
 * settings (a URL built from a host and port, a default taken from another setting) and checks them together.
 */
export function group<S extends Settings>(settings: S): Group<S, Values<S>>;
export function group<S extends Settings, Value>(
  settings: S,
  finish: (values: Values<S>, read: Read) => Value,
): Group<S, Value>;
export function group<S extends Settings>(
  settings: S,
  finish: (values: Values<S>, read: Read) => unknown = (values) => values,
): Group<S, unknown> {
  return {
    settings,
    load: (read) =>
      finish(
        Object.fromEntries(Object.entries(settings).map(([field, declared]) => [field, read(declared)])) as Values<S>,
        read,
      ),
  };
}
