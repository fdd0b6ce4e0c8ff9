import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Context, Next } from 'koa';

// GET /openapi.json, and GET /docs: interactive API documentation (Swagger UI) on it. Every file of the page comes
// from the swagger-ui-dist package in node_modules, and its Content-Security-Policy lets it reach this host only: no
// CDN, no online validator, no fonts from elsewhere. Both are public (no key): neither holds a secret, and the page
// must read the spec before anyone can enter a key in it.

/** The package's files the page loads, by the name it asks for under /docs/. */
const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
};

// Relative URLs, so the page works under any path prefix a proxy adds. /docs/ redirects to /docs, where they resolve.
const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>sdflow API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
<div id="docs"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
`;

// validatorUrl null: Swagger UI would otherwise send the spec to an online validator.
const INIT = `window.ui = SwaggerUIBundle({ url: 'openapi.json', dom_id: '#docs', validatorUrl: null, deepLinking: true });
`;

const CSP = [
  "default-src 'self'",
  "img-src 'self' data:",
  // Swagger UI styles its elements inline.
  "style-src 'self' 'unsafe-inline'",
  "frame-ancestors 'none'",
].join('; ');

const packageDir = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

export function docsRoutes(openApi: () => unknown) {
  const loaded = new Map<string, Promise<Buffer>>();
  const asset = (name: string) => {
    if (!loaded.has(name)) loaded.set(name, readFile(join(packageDir, name)));
    return loaded.get(name)!;
  };

  return async (ctx: Context, next: Next) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    if (ctx.path === '/openapi.json') {
      ctx.body = openApi();
      return;
    }
    if (ctx.path !== '/docs' && !ctx.path.startsWith('/docs/')) return next();
    ctx.set('Content-Security-Policy', CSP);
    if (ctx.path === '/docs') {
      ctx.type = 'text/html; charset=utf-8';
      ctx.body = PAGE;
      return;
    }
    const name = ctx.path.slice('/docs/'.length);
    if (name === '') {
      ctx.redirect('../docs');
      return;
    }
    if (name === 'init.js') {
      ctx.type = 'text/javascript; charset=utf-8';
      ctx.body = INIT;
      return;
    }
    const type = ASSETS[name];
    if (!type) return next();
    ctx.set('Cache-Control', 'public, max-age=86400');
    ctx.type = type;
    ctx.body = await asset(name);
  };
}
