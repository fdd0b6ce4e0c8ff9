import type { Context, Next } from 'koa';
import { z } from 'zod';
import type { Logger } from '../logging.js';

/** An error that maps to an HTTP answer. Everything the API refuses goes through this one class. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export const badRequest = (message: string, extra?: Record<string, unknown>) => new HttpError(400, message, extra);
export const notFound = (message: string) => new HttpError(404, message);
export const conflict = (message: string, extra?: Record<string, unknown>) => new HttpError(409, message, extra);
export const forbidden = (message: string) => new HttpError(403, message);

/** `init_images[0]`, `alwayson_scripts.controlnet.args[1].image`: the way a client would write the field. */
export function fieldPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (acc, part) => (typeof part === 'number' ? `${acc}[${part}]` : acc ? `${acc}.${String(part)}` : String(part)),
    '',
  );
}

/** One readable sentence per problem, each starting with the field it is about (`body` for the body itself). */
export function describeZodError(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const field = fieldPath(issue.path);
      if (field) return `${field}: ${issue.message}`;
      return issue.code === 'invalid_type' ? 'body: must be a JSON object' : `body: ${issue.message}`;
    })
    .join('; ');
}

/** Maps every error to a JSON answer in one place. A client error never answers 500. */
export function errorMapper(logger: Logger) {
  return async (ctx: Context, next: Next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body == null) {
        ctx.status = 404;
        ctx.body = { message: `no route for ${ctx.method} ${ctx.path}` };
      } else if (ctx.status >= 400 && ctx.body == null) {
        // Answers set by middleware without a body (405 from allowedMethods, for one) still explain themselves.
        const status = ctx.status;
        ctx.body = { message: status === 405 ? `${ctx.method} is not allowed on ${ctx.path}` : `${ctx.message}` };
        ctx.status = status;
      }
    } catch (err) {
      const { status, body, headers } = toAnswer(err);
      if (status >= 500) logger.error({ err, method: ctx.method, path: ctx.path }, 'request failed');
      ctx.status = status;
      ctx.set(headers);
      ctx.body = body;
    }
  };
}

function toAnswer(err: unknown): { status: number; body: Record<string, unknown>; headers: Record<string, string> } {
  if (err instanceof HttpError)
    return { status: err.status, body: { ...err.extra, message: err.message }, headers: err.headers };
  if (err instanceof z.ZodError) return { status: 400, body: { message: describeZodError(err) }, headers: {} };
  const e = err as { status?: number; statusCode?: number; type?: string; expose?: boolean; message?: string };
  const status = e.status ?? e.statusCode;
  if (status === 413 || e.type === 'entity.too.large') {
    return {
      status: 413,
      body: { message: 'request body is larger than the configured limit (SDFLOW_MAX_BODY_MB)' },
      headers: {},
    };
  }
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const message = e.type === 'entity.parse.failed' ? 'body: malformed JSON' : (e.message ?? 'bad request');
    return { status, body: { message }, headers: {} };
  }
  return { status: 500, body: { message: 'internal error' }, headers: {} };
}
