// What the meta-store adapters share in listTasks: the opaque page cursor, the page size, and the stored form of an
// instant. The cursor names the last row of a page by its sort key (createdAt, taskId), so the next page starts
// strictly after it however many rows arrive meanwhile.

export const DEFAULT_PAGE_LIMIT = 100;
export const MAX_PAGE_LIMIT = 1000;

/** A cursor that was not produced by listTasks. The API answers it with 400, not 500. */
export class InvalidCursorError extends Error {
  constructor() {
    super('invalid cursor');
    this.name = 'InvalidCursorError';
  }
}

export interface CursorPosition {
  createdAt: string;
  taskId: string;
}

export function encodeCursor(position: CursorPosition): string {
  return Buffer.from(JSON.stringify([position.createdAt, position.taskId]), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string): CursorPosition {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidCursorError();
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length !== 2 ||
    typeof parsed[0] !== 'string' ||
    typeof parsed[1] !== 'string' ||
    Number.isNaN(Date.parse(parsed[0]))
  ) {
    throw new InvalidCursorError();
  }
  return { createdAt: parsed[0], taskId: parsed[1] };
}

/** The page size to use: the default when unset, otherwise clamped to 1..MAX_PAGE_LIMIT. */
export function pageLimit(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return DEFAULT_PAGE_LIMIT;
  return Math.min(MAX_PAGE_LIMIT, Math.max(1, Math.floor(limit)));
}

/** Normalizes an instant to the stored form (ISO, UTC, milliseconds), so string comparison is time order. */
export function isoInstant(value: string): string {
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new RangeError(`not a valid instant: ${JSON.stringify(value)}`);
  return new Date(ms).toISOString();
}
