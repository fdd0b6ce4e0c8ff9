import type Router from '@koa/router';
import type { Context } from 'koa';
import type { z } from 'zod';
import type { SdParams, TaskKind } from '../../types.js';
import { answerTask, platformAnswer } from '../answers.js';
import { principalOf } from '../auth.js';
import { defaultCheckpoint, resolveCheckpoint } from '../checkpoints.js';
import { clientTaskId, idempotencyKey, optionsVersionHeader, slotOwnerOf } from '../request-headers.js';
import type { GenerationSchemas } from '../schemas.js';
import { submitTask, type TaskDeps, webhookOf } from '../tasks.js';

// POST /txt2img, /img2img, /extra_images: sync by default, async with `Request-Type: async`. The checkpoint is the
// one `stable_diffusion_model` names (extra_images, which needs none to upscale, runs on the default's function).

export function generationRoutes(router: Router, deps: TaskDeps, schemas: GenerationSchemas) {
  const submit = (kind: TaskKind, schema: z.ZodType<SdParams>) => async (ctx: Context) => {
    const body = schema.parse(ctx.request.body ?? {});
    const principal = principalOf(ctx);
    const scheduling = slotOwnerOf(ctx, principal);
    const named = body.stable_diffusion_model;
    const model =
      typeof named === 'string'
        ? await resolveCheckpoint(deps.meta, named, 'stable_diffusion_model')
        : await defaultCheckpoint(deps);
    const task = await submitTask(deps, {
      kind,
      principal,
      model,
      body,
      taskId: clientTaskId(ctx),
      idempotencyKey: idempotencyKey(ctx),
      optionsVersion: optionsVersionHeader(ctx),
      webhook: webhookOf(body),
      scheduling,
    });
    await answerTask(ctx, deps, task, {
      waitMs: deps.config.api.syncTimeoutS * 1000,
      final: (done) => platformAnswer(deps, done),
      owner: scheduling.owner,
    });
  };

  router.post('/txt2img', submit('txt2img', schemas.txt2img));
  router.post('/img2img', submit('img2img', schemas.img2img));
  router.post('/extra_images', submit('extra', schemas.extraImages));
}
