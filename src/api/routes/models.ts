import type Router from '@koa/router';
import type { Context } from 'koa';
import { clientGone } from '../answers.js';
import { requireAdmin } from '../auth.js';
import type { CheckpointHealth } from '../checkpoint-health.js';
import { badRequest, notFound } from '../errors.js';
import { registerModelBody, updateModelBody } from '../model-schemas.js';
import {
  deleteModel,
  type ModelDeps,
  modelView,
  type Registration,
  registerFromKey,
  registerUpload,
  registrationView,
  updateModel,
  waitForRegistration,
} from '../models.js';

// Model management (admin): POST /models, PUT /models/{name}, DELETE /models/{name}, DELETE
// /models/{name}/quarantine. Reading is in catalog.ts.
// A registration is asynchronous: 202 with the workflowId at once; `?wait=true` or `Request-Type: sync` waits for it.

const isMultipart = (ctx: Context) => Boolean(ctx.is('multipart/*'));

const wantsWait = (ctx: Context) =>
  ['true', '1'].includes(String(ctx.query.wait ?? '').toLowerCase()) ||
  ctx.get('Request-Type').toLowerCase() === 'sync';

export function modelRoutes(router: Router, deps: ModelDeps, health: CheckpointHealth) {
  const answer = async (ctx: Context, registration: Registration) => {
    ctx.set('Location', `/models/${encodeURIComponent(registration.model.name)}`);
    const { workflowId } = registration;
    if (!workflowId) {
      ctx.body = modelView(registration.model);
      return;
    }
    if (!wantsWait(ctx)) {
      ctx.status = 202;
      ctx.body = registrationView(registration);
      return;
    }
    // A client that goes away stops the wait, never the registration.
    const done = await waitForRegistration(
      deps,
      { ...registration, workflowId },
      deps.config.api.syncTimeoutS * 1000,
      clientGone(ctx),
    );
    ctx.status = done.status;
    ctx.body = done.body;
  };

  router.post('/models', async (ctx) => {
    const principal = requireAdmin(ctx);
    const registration = isMultipart(ctx)
      ? await registerUpload(deps, principal, ctx.req)
      : await registerFromKey(deps, principal, registerModelBody.parse(ctx.request.body ?? {}));
    await answer(ctx, registration);
  });

  router.put('/models/:name', async (ctx) => {
    const principal = requireAdmin(ctx);
    const name = ctx.params.name ?? '';
    const request = isMultipart(ctx) ? { req: ctx.req } : { body: updateModelBody.parse(ctx.request.body ?? {}) };
    await answer(ctx, await updateModel(deps, principal, name, request));
  });

  router.delete('/models/:name', async (ctx) => {
    requireAdmin(ctx);
    ctx.body = modelView(await deleteModel(deps, ctx.params.name ?? ''));
  });

  // Lifts a checkpoint's quarantine: its circuit breaker closes and its tasks run again.
  router.delete('/models/:name/quarantine', async (ctx) => {
    requireAdmin(ctx);
    const model = await deps.meta.getModel(ctx.params.name ?? '');
    if (!model || model.status === 'deleted') throw notFound(`unknown model ${ctx.params.name}`);
    if (model.type !== 'stableDiffusion') throw badRequest(`name: ${model.name} is a ${model.type}, not a checkpoint`);
    await health.lift(model.name);
    ctx.body = { ...modelView(model), health: 'ok', healthReason: null, healthSince: null };
  });
}
