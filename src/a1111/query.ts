/** A boolean query parameter as FastAPI (A1111's framework) reads one. */
export const queryFlag = (value: unknown) =>
  typeof value === 'string' && ['true', '1', 'yes', 'on'].includes(value.toLowerCase());
