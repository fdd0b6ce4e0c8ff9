import cors from '@koa/cors';

// SDFLOW_CORS_ORIGINS: browser pages on these origins may call the API, as with A1111's --cors-allow-origins. Keys
// travel as Bearer headers, so no credentials (cookies) are allowed; a preflight is answered before the key check,
// as a browser sends none with it. Another origin gets no CORS headers, so its browser refuses the answer.

/** What a page may read of an answer beyond the basic headers. */
const EXPOSED = ['taskId', 'Retry-After', 'Location', 'Preference-Applied', 'WWW-Authenticate'];

export function corsFor(origins: string[]) {
  const allowed = new Set(origins);
  return cors({
    origin: (ctx) => (allowed.has(ctx.get('Origin')) ? ctx.get('Origin') : ''),
    allowMethods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    exposeHeaders: EXPOSED,
    maxAge: 600,
  });
}
