// A1111's error answers: its own exception handler's `{error, detail, body, errors}`, and FastAPI's `{detail}`, whose
// detail is a string or, for a request that failed validation, a list of `{loc, msg}`.

interface A1111ErrorBody {
  error: string;
  detail: string;
  body: string;
  errors: string;
}

/** A1111's error body for a failure of type `error` (e.g. `TaskFailed`). */
export const a1111Error = (error: string, detail: string): A1111ErrorBody => ({ error, detail, body: '', errors: '' });

/** The human-readable part of an A1111 or FastAPI error body: `detail` (text or a validation list), `errors`, `error`. */
export function a1111ErrorDetail(text: string): string {
  try {
    const body = JSON.parse(text) as { detail?: unknown; error?: unknown; errors?: unknown };
    if (typeof body.detail === 'string' && body.detail) return body.detail;
    if (Array.isArray(body.detail)) {
      return body.detail
        .map((d: { loc?: unknown[]; msg?: string }) =>
          Array.isArray(d.loc) ? `${d.loc.filter((p) => p !== 'body').join('.')}: ${d.msg}` : String(d.msg ?? d),
        )
        .join('; ');
    }
    if (typeof body.errors === 'string' && body.errors) return body.errors;
    if (typeof body.error === 'string' && body.error) return body.error;
  } catch {
    // Not JSON: the raw text is the best detail there is.
  }
  return text.slice(0, 500) || 'no detail';
}
