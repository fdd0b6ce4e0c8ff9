import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { extname, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type Router from '@koa/router';
import type { Context, Next } from 'koa';
import type { Config } from '../../config/index.js';
import { principalOf } from '../auth.js';
import { HttpError, notFound } from '../errors.js';

// The web console: its files (built by Vite into dist/console) are public, like any page, at /console/; everything
// the page shows it reads from the API with the caller's key. /console/config.json, behind the key, tells the page
// who the caller is and where the Temporal Web UI is.

/** Where `npm run build` puts the console, next to the compiled API. */
export const CONSOLE_DIR = fileURLToPath(new URL('../../console', import.meta.url));

export const CONSOLE_CONFIG_PATH = '/console/config.json';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
};

// The page loads nothing from elsewhere, and the browser holds it to that: scripts, styles and API calls come from
// this origin only. Images are the signed links the API hands out, which point at the object store (this API
// locally, the bucket in production).
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "img-src 'self' http: https:",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Serves GET /console and /console/* from `root`; Vite's hashed assets are cached for good, the rest revalidated. */
export function consoleFiles(root: string) {
  const base = resolve(root);
  return async (ctx: Context, next: Next) => {
    const { path } = ctx;
    if ((path !== '/console' && !path.startsWith('/console/')) || path === CONSOLE_CONFIG_PATH) return next();
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') throw new HttpError(405, 'the console is read-only');
    // The page's relative links need the trailing slash.
    if (path === '/console') return ctx.redirect('/console/');
    let relative: string;
    try {
      relative = decodeURIComponent(path.slice('/console/'.length)) || 'index.html';
    } catch {
      throw notFound(`no console file at ${path}`);
    }
    const file = resolve(base, relative);
    if (!file.startsWith(base + sep)) throw notFound(`no console file at ${path}`);
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) {
      if (relative === 'index.html') throw notFound('the console is not built: run npm run build');
      throw notFound(`no console file at ${path}`);
    }
    ctx.type = CONTENT_TYPES[extname(file)] ?? 'application/octet-stream';
    ctx.length = info.size;
    ctx.set(
      'Cache-Control',
      relative.startsWith('assets/') ? 'public, max-age=31536000, immutable' : 'no-cache, must-revalidate',
    );
    ctx.set('Content-Security-Policy', CONTENT_SECURITY_POLICY);
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.body = createReadStream(file);
  };
}

/** What the page needs to know of this deployment and of its caller. */
export function consoleConfigRoute(router: Router, config: Config, authOn: boolean) {
  router.get(CONSOLE_CONFIG_PATH, (ctx) => {
    const { user, role } = principalOf(ctx);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = {
      user,
      role,
      auth: authOn ? 'keys' : 'off',
      temporalUiUrl: config.temporal.uiUrl,
      temporalNamespace: config.temporal.namespace,
    };
  });
}
