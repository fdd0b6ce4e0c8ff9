/** A JSON object (not an array, not null): what a parsed body or a settings value must be to be read by key. */
export const isJsonObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
