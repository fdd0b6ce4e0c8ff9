import type Router from '@koa/router';
import type { RouterContext } from '@koa/router';
import { z } from 'zod';
import type { MetaStore } from '../../platform/meta-store/port.js';
import { MODEL_TYPES } from '../../records.js';
import type { CheckpointHealth } from '../checkpoint-health.js';
import { notFound } from '../errors.js';
import { modelWithHealth } from '../models.js';

// Reading the model registry and the function list. Changing them (admin) is in the management routes.

const modelFilter = z.object({
  type: z.enum(MODEL_TYPES as [string, ...string[]], { error: `must be one of ${MODEL_TYPES.join(', ')}` }).optional(),
  status: z
    .enum(['registering', 'loading', 'loaded', 'failed', 'unloaded', 'deleted'], { error: 'is not a model status' })
    .optional(),
});

export function catalogRoutes(router: Router, meta: MetaStore, health: CheckpointHealth) {
  router.get('/models', async (ctx) => {
    const filter = modelFilter.parse(ctx.query) as Parameters<MetaStore['listModels']>[0];
    const models = await meta.listModels(filter);
    // Deleted models are history: shown only when asked for by status.
    const shown = models.filter((m) => filter?.status === 'deleted' || m.status !== 'deleted');
    ctx.body = await Promise.all(shown.map((m) => modelWithHealth(m, health)));
  });

  router.get('/models/:name', async (ctx) => {
    const model = await meta.getModel(ctx.params.name ?? '');
    if (!model || model.status === 'deleted') throw notFound(`unknown model ${ctx.params.name}`);
    ctx.body = await modelWithHealth(model, health);
  });

  const listFunctions = async (ctx: RouterContext) => {
    const functions = await meta.listFunctions();
    ctx.body = {
      status: 'success',
      functions: functions.map((f) => ({ functionName: f.functionName, model: f.model })),
    };
  };
  router.get('/list/sdapi/functions', listFunctions);
  // The same list under a misspelt path that existing clients call, kept so they work unchanged.
  router.get('/list/sdapi/fucntions', listFunctions);
}
