import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { Client } from '@temporalio/client';
import Koa from 'koa';
import type { Config } from '../config/index.js';
import type { Logger } from '../logging.js';
import type { FunctionRuntime } from '../platform/functions/port.js';
import type { MetaStore } from '../platform/meta-store/port.js';
import type { ObjectStore } from '../platform/object-store/port.js';
import { webhookNotifier } from '../webhooks/notify.js';
import { TargetPolicy } from '../webhooks/targets.js';
import { authenticate, type KeyRing, requireAdmin } from './auth.js';
import { checkpointHealth } from './checkpoint-health.js';
import { corsFor } from './cors.js';
import { docsRoutes } from './docs.js';
import { errorMapper } from './errors.js';
import { taskEta } from './eta.js';
import { healthRoute } from './health.js';
import { rateLimit } from './limits.js';
import { apiMetrics } from './metrics.js';
import { openApiDocument } from './openapi.js';
import { queuePositions, semaphoreStateReader } from './queue-positions.js';
import { a1111Routes } from './routes/a1111.js';
import { catalogRoutes } from './routes/catalog.js';
import { CONSOLE_DIR, consoleConfigRoute, consoleFiles } from './routes/console.js';
import { filesRoute } from './routes/files.js';
import { functionRoutes } from './routes/functions.js';
import { generationRoutes } from './routes/generation.js';
import { modelRoutes } from './routes/models.js';
import { optionsRoutes } from './routes/options.js';
import { passthroughRoute } from './routes/passthrough.js';
import { taskEventRoutes } from './routes/task-events.js';
import { taskRoutes } from './routes/tasks.js';
import { usageRoutes } from './routes/usage.js';
import { generationSchemas } from './schemas.js';
import type { TaskDeps } from './tasks.js';

export interface ApiDeps {
  config: Config;
  logger: Logger;
  meta: MetaStore;
  store: ObjectStore;
  temporal: Client;
  functions: FunctionRuntime;
  keys: KeyRing | null;
  urlSecret: Buffer;
}

/**
 * Paths answered by middleware rather than the router, as /openapi.json templates them: the public ones before the
 * key check, and the passthrough's default prefixes after every route.
 */
export const MIDDLEWARE_PATHS = [
  '/healthz',
  '/files/{key}',
  '/openapi.json',
  '/docs',
  '/docs/{file}',
  '/console',
  '/console/{file}',
  '/sdapi/v1/{path}',
  '/controlnet/{path}',
];

/** The koa app: a few middlewares in a fixed order, then the routes. Errors are mapped in one place. */
export function createApp(apiDeps: ApiDeps): Koa {
  const { config, logger } = apiDeps;
  const metrics = apiMetrics({
    meta: apiDeps.meta,
    temporal: apiDeps.temporal,
    semaphoreId: config.semaphore.id,
    maxAgeMs: config.api.metricsMaxAgeMs,
    queryTimeoutMs: config.api.queryTimeoutMs,
    passthroughPrefixes: config.api.passthroughPrefixes,
  });
  // Every final record the API reads feeds the task metrics.
  const deps: ApiDeps = { ...apiDeps, meta: metrics.observing(apiDeps.meta) };
  const schemas = generationSchemas(config.limits);
  const semaphoreState = semaphoreStateReader(deps.temporal, config.semaphore.id, {
    maxAgeMs: config.api.queuePositionMaxAgeMs,
    queryTimeoutMs: config.api.queryTimeoutMs,
  });
  const health = checkpointHealth(deps.temporal, config.semaphore.id, semaphoreState);
  const taskDeps: TaskDeps = {
    ...deps,
    health,
    limits: config.limits,
    queuePositionOf: queuePositions(semaphoreState),
    eta: taskEta({
      meta: deps.meta,
      semaphoreState,
      keepAliveS: config.runtime.keepAliveS,
      maxAgeMs: config.api.etaTimingsMaxAgeMs,
    }),
    notifyWebhook: webhookNotifier(deps.temporal, config),
    webhookTargets: new TargetPolicy(config.webhooks.allow),
  };
  // Routes in order of precedence (docs/ARCHITECTURE.md, "The HTTP contract"): platform routes, then the A1111
  // drop-in routes, then the passthrough to an agent; anything else is the error mapper's JSON 404.
  const router = new Router();
  generationRoutes(router, taskDeps, schemas);
  taskRoutes(router, taskDeps);
  taskEventRoutes(router, taskDeps);
  catalogRoutes(router, deps.meta, health);
  modelRoutes(router, deps, health);
  functionRoutes(router, deps);
  optionsRoutes(router, deps.meta);
  usageRoutes(router, deps.meta);
  consoleConfigRoute(router, config, deps.keys !== null);
  router.get('/metrics', async (ctx) => {
    requireAdmin(ctx);
    const scraped = await metrics.scrape();
    ctx.type = scraped.contentType;
    ctx.body = scraped.body;
  });
  a1111Routes(router, taskDeps, schemas);

  const app = new Koa();
  app.proxy = false;
  app.use(metrics.httpMiddleware());
  if (config.api.corsOrigins.length > 0) app.use(corsFor(config.api.corsOrigins));
  app.use(errorMapper(logger));
  app.use(async (ctx, next) => {
    const started = performance.now();
    await next();
    logger.debug({
      method: ctx.method,
      path: ctx.path,
      status: ctx.status,
      ms: Math.round(performance.now() - started),
    });
  });
  app.use(healthRoute(deps));
  app.use(filesRoute(deps.store, deps.urlSecret));
  app.use(consoleFiles(CONSOLE_DIR));
  app.use(docsRoutes(() => openApiDocument(schemas)));
  app.use(authenticate(deps.keys));
  app.use(rateLimit(deps.meta, config.api.keyRatePerMin));
  app.use(
    bodyParser({
      enableTypes: ['json'],
      jsonLimit: config.api.maxBodyBytes,
      // Many clients omit the content type; any non-multipart body is read as JSON.
      detectJSON: (ctx) => !ctx.is('multipart/*'),
    }),
  );
  app.use(router.routes());
  app.use(router.allowedMethods());
  // Last: what no route claimed under the passthrough prefixes goes to an agent; anything else is a JSON 404.
  app.use(passthroughRoute({ ...taskDeps, ...deps }, (path, method) => router.match(path, method).route));
  return app;
}
