// Error answers in the shapes A1111 gives: FastAPI's validation errors (422 `{detail: [{loc, msg, type}]}`), its
// plain HTTP errors (`{detail}`), and A1111's own handler for everything else (`{error, detail, body, errors}`).

export interface ValidationIssue {
  loc: Array<string | number>;
  msg: string;
  type: string;
  ctx?: Record<string, unknown>;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
    message?: string,
  ) {
    super(message ?? `HTTP ${status}`);
  }
}

/** FastAPI's request validation error. */
export function validationError(issues: ValidationIssue[]): HttpError {
  return new HttpError(422, { detail: issues }, issues.map((i) => `${i.loc.join('.')}: ${i.msg}`).join('; '));
}

/** An HTTPException as A1111's exception handler renders it, with a human-readable detail. */
export function apiError(status: number, detail: string): HttpError {
  return new HttpError(status, { error: 'HTTPException', detail, body: '', errors: `${status}: ${detail}` }, detail);
}

/** A plain FastAPI/Starlette error: `{detail}` (404 Not Found, 405 Method Not Allowed, 413). */
export function plainError(status: number, detail: string): HttpError {
  return new HttpError(status, { detail }, detail);
}

/** Any other thrown error, as A1111's handler renders it: 500 with the error's class and message. */
export function internalErrorBody(err: unknown): { error: string; detail: string; body: string; errors: string } {
  const e = err instanceof Error ? err : new Error(String(err));
  return { error: e.name || 'Error', detail: '', body: '', errors: e.message };
}
