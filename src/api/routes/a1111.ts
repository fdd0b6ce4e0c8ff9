import type Router from '@koa/router';
import type { Context } from 'koa';
import type { z } from 'zod';
import { queryFlag } from '../../a1111/query.js';
import { objectKeyForInterrupt } from '../../platform/object-store/keys.js';
import { ObjectNotFoundError } from '../../platform/object-store/port.js';
import type { TaskRecord } from '../../records.js';
import { EMPTY_SD_STATE, isOpen, type SdParams, type TaskKind } from '../../types.js';
import { answerTask, send } from '../answers.js';
import { principalOf } from '../auth.js';
import { requestCheckpoint } from '../checkpoints.js';
import { a1111Answer, callersOptionsView, mergeCallersOptions, registryLists } from '../drop-in.js';
import { clientTaskId, idempotencyKey, optionsVersionHeader, slotOwnerOf } from '../request-headers.js';
import type { GenerationSchemas } from '../schemas.js';
import { progressView, submitTask, type TaskDeps } from '../tasks.js';

// A1111 drop-in: existing A1111 clients point at sdflow unchanged. The generation routes become queued, routed tasks
// that answer in A1111's own shapes; progress and interrupt act on the caller's latest task; options are the
// caller's own, and choose the checkpoint of generations that name none; the model lists come from the registry.
// `Prefer: respond-async` returns the taskId instead of waiting.

/** A1111's answer `null`. */
const sendNull = (ctx: Context) => send(ctx, { status: 200, body: null });

/** A live preview as A1111's progress sends it: plain base64, or null (none yet, or already superseded). */
async function previewBase64(deps: TaskDeps, key: string | null): Promise<string | null> {
  if (!key) return null;
  try {
    return (await deps.store.get(key)).toString('base64');
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return null;
    throw err;
  }
}

/** The caller's most recent task, which A1111's progress and interrupt act on. */
async function latestTask(deps: TaskDeps, user: string): Promise<TaskRecord | undefined> {
  return (await deps.meta.listTasks({ user, limit: 1 })).items[0];
}

export function a1111Routes(router: Router, deps: TaskDeps, schemas: GenerationSchemas) {
  const submit = (kind: TaskKind, schema: z.ZodType<SdParams>) => async (ctx: Context) => {
    const body = schema.parse(ctx.request.body ?? {});
    const principal = principalOf(ctx);
    const scheduling = slotOwnerOf(ctx, principal);
    const optionsVersion = optionsVersionHeader(ctx);
    const model = await requestCheckpoint(deps, { body, user: principal.user, optionsVersion });
    const task = await submitTask(deps, {
      kind,
      principal,
      model,
      body,
      taskId: clientTaskId(ctx),
      idempotencyKey: idempotencyKey(ctx),
      optionsVersion,
      scheduling,
    });
    await answerTask(ctx, deps, task, {
      waitMs: deps.config.api.a1111SyncTimeoutS * 1000,
      final: (done) => a1111Answer(deps, done),
      open: (open, accepted) => {
        if (accepted) ctx.set('Preference-Applied', 'respond-async');
        return { status: 202, body: { taskId: open.taskId, status: open.status } };
      },
    });
  };

  router.post('/sdapi/v1/txt2img', submit('txt2img', schemas.a1111.txt2img));
  router.post('/sdapi/v1/img2img', submit('img2img', schemas.a1111.img2img));
  router.post('/sdapi/v1/extra-single-image', submit('extra', schemas.extraImages));

  router.get('/sdapi/v1/options', async (ctx) => {
    ctx.body = await callersOptionsView(deps, principalOf(ctx).user);
  });

  router.post('/sdapi/v1/options', async (ctx) => {
    await mergeCallersOptions(deps, principalOf(ctx).user, ctx.request.body);
    sendNull(ctx);
  });

  const list = (answer: (meta: TaskDeps['meta']) => Promise<unknown>) => async (ctx: Context) => {
    ctx.body = await answer(deps.meta);
  };
  router.get('/sdapi/v1/sd-models', list(registryLists['sd-models']));
  router.get('/sdapi/v1/sd-vae', list(registryLists['sd-vae']));
  router.get('/sdapi/v1/loras', list(registryLists.loras));
  router.get('/sdapi/v1/hypernetworks', list(registryLists.hypernetworks));
  router.get('/sdapi/v1/embeddings', list(registryLists.embeddings));
  router.get('/controlnet/model_list', list(registryLists['controlnet-models']));
  // The lists come from the registry, which is always current: there is nothing to refresh.
  for (const refresh of ['checkpoints', 'vae', 'loras', 'embeddings']) {
    router.post(`/sdapi/v1/refresh-${refresh}`, sendNull);
  }

  router.get('/sdapi/v1/progress', async (ctx) => {
    const task = await latestTask(deps, principalOf(ctx).user);
    if (!task || !isOpen(task.status)) {
      // A1111 reports an idle server as progress 0 with no job.
      ctx.body = { progress: 0, eta_relative: 0, state: EMPTY_SD_STATE, current_image: null, textinfo: null };
      return;
    }
    const p = await progressView(deps, task);
    ctx.body = {
      progress: p.progress,
      eta_relative: p.etaRelative,
      state: p.state,
      current_image: queryFlag(ctx.query.skip_current_image) ? null : await previewBase64(deps, p.currentImage),
      textinfo:
        p.status !== 'waiting' ? null : p.queuePosition ? `Waiting... (#${p.queuePosition} in queue)` : 'Waiting...',
    };
  });

  // Ends the caller's running job early, as A1111 does: the waiting call returns the images made so far. It is
  // not a cancel, and the task ends as succeeded.
  router.post('/sdapi/v1/interrupt', async (ctx) => {
    const user = principalOf(ctx).user;
    const task = await latestTask(deps, user);
    if (task && isOpen(task.status)) {
      await deps.store.put(objectKeyForInterrupt(task.user, task.taskId), Buffer.from(new Date().toISOString()), {
        contentType: 'text/plain',
      });
    }
    ctx.body = {};
  });
}
