import { authHeaders } from './key';

// Every call the page makes goes to the API that served it (a path on this origin), with the stored key.

/** An answer that was not 2xx, with the API's `message`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Fired on a 401, so the page asks for a key again. */
export const UNAUTHORIZED_EVENT = 'sdflow:unauthorized';

export async function errorOf(res: Response): Promise<ApiError> {
  const text = await res.text();
  let message = text || res.statusText;
  try {
    message = (JSON.parse(text) as { message?: string }).message ?? message;
  } catch {
    // Not JSON: the text is the message.
  }
  if (res.status === 401) window.dispatchEvent(new Event(UNAUTHORIZED_EVENT));
  return new ApiError(res.status, message);
}

/** fetch() on this origin with the key; the caller reads the body (a stream, say). */
export function apiFetch(path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(path, { ...init, headers: { ...authHeaders(), ...(init.headers as Record<string, string>) } });
}

/** One JSON call: the parsed answer, or an ApiError. */
export async function api<T>(
  path: string,
  init: { method?: string; body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<T> {
  const res = await apiFetch(path, {
    method: init.method ?? 'GET',
    signal: init.signal,
    headers: {
      Accept: 'application/json',
      ...(init.body === undefined ? {} : { 'Content-Type': 'application/json' }),
      ...init.headers,
    },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  if (!res.ok) throw await errorOf(res);
  return (await res.json()) as T;
}

export const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));
