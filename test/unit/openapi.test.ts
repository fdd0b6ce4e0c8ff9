import SwaggerParser from '@apidevtools/swagger-parser';
import type Router from '@koa/router';
import type { Client } from '@temporalio/client';
import type { Middleware } from 'koa';
import { describe, expect, it } from 'vitest';
import { createApp, MIDDLEWARE_PATHS } from '../../src/api/app.js';
import { openApiDocument } from '../../src/api/openapi.js';
import { generationSchemas } from '../../src/api/schemas.js';
import { loadConfig } from '../../src/config/index.js';
import type { Logger } from '../../src/logging.js';
import type { FunctionRuntime } from '../../src/platform/functions/port.js';
import type { MetaStore } from '../../src/platform/meta-store/port.js';
import type { ObjectStore } from '../../src/platform/object-store/port.js';

// /openapi.json is a valid OpenAPI document, and it describes every route the API serves: the router's own list of
// routes, and the paths middleware answers (public files, the docs, the passthrough), and nothing else.

const config = loadConfig({});
const doc = openApiDocument(generationSchemas(config.limits)) as unknown as {
  paths: Record<string, Record<string, unknown>>;
};

/** The app's routes as (OpenAPI path, method) pairs, read from the router it mounts. Building the app calls nothing. */
function routerRoutes(): Array<{ path: string; method: string }> {
  const app = createApp({
    config,
    logger: { debug() {}, info() {}, warn() {}, error() {} } as unknown as Logger,
    meta: {} as MetaStore,
    store: {} as ObjectStore,
    temporal: {} as Client,
    functions: {} as FunctionRuntime,
    keys: null,
    urlSecret: Buffer.alloc(32),
  });
  const dispatch = app.middleware.find((m) => 'router' in m) as Middleware & { router: Router };
  return dispatch.router.stack.flatMap((layer) =>
    layer.methods
      .filter((m) => m !== 'HEAD')
      .map((method) => ({
        path: String(layer.path).replace(/:([A-Za-z0-9_]+)/g, '{$1}'),
        method: method.toLowerCase(),
      })),
  );
}

describe('/openapi.json', () => {
  it('is a valid OpenAPI 3.1 document (checked offline)', async () => {
    await expect(SwaggerParser.validate(structuredClone(doc) as never)).resolves.toBeTruthy();
  });

  it('is checked for real: a broken document is refused', async () => {
    const broken = structuredClone(doc) as { paths: Record<string, unknown> };
    broken.paths['/broken'] = { get: { responses: { '200': { content: 'not an object' } } } };
    await expect(SwaggerParser.validate(broken as never)).rejects.toThrow();
  });

  it('describes every route of the router, with its method', () => {
    const routes = routerRoutes();
    expect(routes.length).toBeGreaterThan(30);
    const missing = routes.filter(({ path, method }) => !doc.paths[path]?.[method]).map((r) => `${r.method} ${r.path}`);
    expect(missing).toEqual([]);
  });

  it('describes the paths middleware answers, and no path that nothing serves', () => {
    const served = new Set([...routerRoutes().map((r) => r.path), ...MIDDLEWARE_PATHS]);
    for (const path of MIDDLEWARE_PATHS) expect(doc.paths, path).toHaveProperty([path]);
    expect(Object.keys(doc.paths).filter((path) => !served.has(path))).toEqual([]);
  });

  it('includes the routes of retention, metrics and the docs', () => {
    expect(doc.paths['/tasks/{taskId}']).toHaveProperty('delete');
    expect(doc.paths['/metrics']).toHaveProperty('get');
    expect(doc.paths['/docs']).toHaveProperty('get');
  });
});
