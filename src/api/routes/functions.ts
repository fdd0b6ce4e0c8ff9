import type Router from '@koa/router';
import { unknownOptionKeys } from '../../a1111/options.js';
import { errorMessage } from '../../http-util.js';
import { functionNameFor, isFunctionName } from '../../platform/functions/naming.js';
import { FunctionUnavailableError, type RuntimeFunction } from '../../platform/functions/port.js';
import type { FunctionRecord } from '../../records.js';
import type { ApiDeps } from '../app.js';
import { requireAdmin } from '../auth.js';
import { stripTitleHash } from '../checkpoints.js';
import { mergeSettings } from '../drop-in.js';
import { badRequest, HttpError, notFound } from '../errors.js';
import { assertVaeUsable } from '../model-refs.js';
import { batchUpdateBody, deleteFunctionsBody, functionOptionsBody, type ResourceUpdate } from '../platform-schemas.js';

// The function admin routes: batch update of resources, delete, restart. Each item of a batch is
// applied on its own; the answer lists the ones that failed. HTTP status: 200 when all applied; 404 when every
// failure was an unknown name (a client error); 500 when the runtime failed on any. Besides them, one function's
// WebUI settings, which every instance of it starts with.

type Deps = Pick<ApiDeps, 'config' | 'meta' | 'functions' | 'logger'>;

interface Failure {
  /** The name as the client gave it (or the function name, when all were selected). */
  name: string;
  functionName?: string;
  message: string;
  unknown: boolean;
}

/** 200 when nothing failed, 404 when only unknown names did, else 500. */
export function batchStatus(failures: readonly { unknown: boolean }[]): number {
  if (failures.length === 0) return 200;
  return failures.every((f) => f.unknown) ? 404 : 500;
}

/** The record's resources with the update merged in: env key by key, every other field replaced. */
export function mergeResources(current: Record<string, unknown>, update: ResourceUpdate): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...current };
  for (const [field, value] of Object.entries(update)) {
    if (value === undefined) continue;
    merged[field] =
      field === 'env' ? { ...(current.env as Record<string, string> | undefined), ...(value as object) } : value;
  }
  return merged;
}

/**
 * Why merged resources cannot stand: a minInstances above the function's maxInstances (its own, else the runtime's
 * default when the runtime has one). Undefined when they can.
 */
export function minInstancesProblem(resources: Record<string, unknown>, defaultMax: number | undefined) {
  const min = resources.minInstances;
  const max = typeof resources.maxInstances === 'number' ? resources.maxInstances : defaultMax;
  if (typeof min !== 'number' || max === undefined || min <= max) return undefined;
  return `minInstances: ${min} is more than the function's maxInstances (${max})`;
}

/** The function a name denotes: a function name as it is, a checkpoint name (or A1111 title) through naming. */
const functionNameOf = (name: string, prefix: string) =>
  isFunctionName(name) ? name : functionNameFor(stripTitleHash(name), prefix);

export function functionRoutes(router: Router, deps: Deps) {
  const { meta, functions } = deps;
  const prefix = deps.config.functions.prefix;
  // The local runtime's instances per function when a function sets none; FC and the static pool have no such default.
  const defaultMaxInstances = deps.config.functions.backend === 'local' ? deps.config.runtime.maxInstances : undefined;

  /** The runtime's functions by name, or undefined when the runtime cannot say (each item then finds out itself). */
  async function runtimeFunctions(): Promise<Map<string, RuntimeFunction> | undefined> {
    try {
      return new Map((await functions.listFunctions()).map((f) => [f.functionName, f]));
    } catch (err) {
      deps.logger.warn({ err: errorMessage(err) }, 'could not list the runtime functions');
      return undefined;
    }
  }

  interface Target {
    name: string;
    functionName: string;
    model: string;
    record: FunctionRecord | null;
    /** The resources the update merges into: the record's, else (adopting) the runtime's. */
    current: Record<string, unknown>;
  }

  /** Resolves the selection to functions; names that denote none become failures. */
  async function select(models: string[] | undefined, names: string[] | undefined) {
    const targets = new Map<string, Target>();
    const failures: Failure[] = [];
    if (models === undefined && names === undefined) {
      for (const record of await meta.listFunctions()) {
        targets.set(record.functionName, { name: record.functionName, ...record, record, current: record.resources });
      }
      return { targets: [...targets.values()], failures };
    }
    for (const name of models ?? []) {
      const model = (await meta.getModel(name)) ?? (await meta.getModel(stripTitleHash(name)));
      if (model?.type !== 'stableDiffusion' || model.status === 'deleted') {
        failures.push({ name, message: `${name}: unknown checkpoint`, unknown: true });
        continue;
      }
      const functionName = functionNameFor(model.name, prefix);
      // A checkpoint that has no function yet gets one now, configured before its first request.
      const record = await meta.getFunction(functionName);
      targets.set(functionName, { name, functionName, model: model.name, record, current: record?.resources ?? {} });
    }
    let runtime: Map<string, RuntimeFunction> | undefined;
    for (const name of names ?? []) {
      const functionName = functionNameOf(name, prefix);
      const record = await meta.getFunction(functionName);
      if (record) {
        targets.set(functionName, { name, functionName, model: record.model, record, current: record.resources });
        continue;
      }
      // A function the runtime has without a record is adopted: the update writes its record.
      runtime ??= await runtimeFunctions();
      const known = runtime?.get(functionName);
      if (known) {
        targets.set(functionName, { name, functionName, model: known.model, record: null, current: known.resources });
      } else failures.push({ name, functionName, message: `${name}: unknown function`, unknown: true });
    }
    return { targets: [...targets.values()], failures };
  }

  /** Applies resources to a function: the runtime first, so that when it refuses, the record still describes what runs. */
  async function applyResources(target: Target, resources: Record<string, unknown>): Promise<void> {
    await functions.ensureFunction({ functionName: target.functionName, model: target.model, resources });
    const now = new Date().toISOString();
    await meta.putFunction({
      functionName: target.functionName,
      model: target.model,
      resources,
      createdAt: target.record?.createdAt ?? now,
      updatedAt: now,
    });
  }

  /** The one function a route's `:name` denotes: a function name, or a checkpoint name (whose function may be new). */
  async function selectOne(name: string): Promise<Target> {
    const { targets, failures } = isFunctionName(name)
      ? await select(undefined, [name])
      : await select([name], undefined);
    if (failures.length > 0 || !targets[0]) throw notFound(failures[0]?.message ?? `${name}: unknown function`);
    return targets[0];
  }

  const settingsOf = (target: Target) => (target.current.sdOptions ?? {}) as Record<string, unknown>;

  // One function as the record and the runtime each see it: the resources asked for, and what runs (the limits in
  // effect, the instances). Read-only; a name the runtime cannot answer for still shows its record.
  router.get('/functions/:name', async (ctx) => {
    requireAdmin(ctx);
    const name = ctx.params.name ?? '';
    const functionName = functionNameOf(name, prefix);
    const record = await meta.getFunction(functionName);
    const runtime = await runtimeFunctions();
    const running = runtime?.get(functionName);
    if (!record && !running) throw notFound(`${name}: unknown function`);
    ctx.body = {
      functionName,
      model: record?.model ?? running?.model,
      resources: record?.resources ?? running?.resources ?? {},
      // The port's view of an instance, the same from every runtime (the local one also knows pids and ports).
      runtime: running
        ? {
            resources: running.resources,
            limits: running.limits ?? null,
            instances: (running.instances ?? []).map(({ id, busy, startedAt }) => ({ id, busy, startedAt })),
          }
        : null,
      ...(runtime ? {} : { runtimeError: 'the function runtime did not answer' }),
    };
  });

  router.get('/functions/:name/options', async (ctx) => {
    const target = await selectOne(ctx.params.name ?? '');
    ctx.body = { functionName: target.functionName, model: target.model, options: settingsOf(target) };
  });

  // A1111's options body, for every instance of one function: new instances start with it, and the running ones are
  // replaced (idle ones now, busy ones after their request), as for a change of env.
  router.post('/functions/:name/options', async (ctx) => {
    requireAdmin(ctx);
    const changes = functionOptionsBody.parse(ctx.request.body ?? {});
    const unknown = unknownOptionKeys(changes);
    if (unknown.length > 0) throw badRequest(`${unknown.join(', ')}: not a setting of A1111`);
    if (changes.sd_vae !== undefined && changes.sd_vae !== null) await assertVaeUsable(meta, changes.sd_vae, 'sd_vae');
    const target = await selectOne(ctx.params.name ?? '');
    const { sdOptions: _previous, ...rest } = target.current;
    const settings = mergeSettings(settingsOf(target), changes);
    try {
      await applyResources(target, Object.keys(settings).length > 0 ? { ...rest, sdOptions: settings } : rest);
    } catch (err) {
      if (err instanceof FunctionUnavailableError) throw new HttpError(503, err.message);
      throw err;
    }
    ctx.body = { status: 'success', functionName: target.functionName, model: target.model, options: settings };
  });

  router.post('/batch_update_sd_resource', async (ctx) => {
    requireAdmin(ctx);
    const { models, functions: names, ...update } = batchUpdateBody.parse(ctx.request.body ?? {});
    const { targets, failures } = await select(models, names);
    for (const target of targets) {
      const problem = minInstancesProblem(mergeResources(target.current, update), defaultMaxInstances);
      if (problem) throw badRequest(`${problem}, for ${target.name}`);
    }
    for (const target of targets) {
      try {
        await applyResources(target, mergeResources(target.current, update));
      } catch (err) {
        deps.logger.warn({ err: errorMessage(err), functionName: target.functionName }, 'batch update failed');
        failures.push({
          name: target.name,
          functionName: target.functionName,
          message: `${target.name}: the runtime could not apply it: ${errorMessage(err)}`,
          unknown: false,
        });
      }
    }
    ctx.status = batchStatus(failures);
    ctx.body =
      failures.length === 0
        ? { status: 'success', failFuncList: [] }
        : {
            status: 'fail',
            failFuncList: failures.map((f) => f.name),
            errMsg: failures.map((f) => f.message).join('\n'),
          };
  });

  router.post('/del/sd/functions', async (ctx) => {
    requireAdmin(ctx);
    const { functions: names } = deleteFunctionsBody.parse(ctx.request.body ?? {});
    const runtime = await runtimeFunctions();
    const fails: { functionName: string; message: string }[] = [];
    const failures: Failure[] = [];
    const fail = (failure: Failure) => {
      failures.push(failure);
      fails.push({ functionName: failure.functionName ?? failure.name, message: failure.message });
    };
    for (const name of new Set(names)) {
      const functionName = functionNameOf(name, prefix);
      const record = await meta.getFunction(functionName);
      if (!record && runtime && !runtime.has(functionName)) {
        fail({ name, functionName, message: `${name}: unknown function`, unknown: true });
        continue;
      }
      try {
        // The runtime first (it stops the instances), then the record: a failure leaves both, never one alone.
        await functions.deleteFunction(functionName);
        await meta.deleteFunction(functionName);
      } catch (err) {
        deps.logger.warn({ err: errorMessage(err), functionName }, 'function delete failed');
        fail({ name, functionName, message: `${name}: ${errorMessage(err)}`, unknown: false });
      }
    }
    ctx.status = batchStatus(failures);
    ctx.body = { status: failures.length === 0 ? 'success' : 'fail', fails };
  });

  router.post('/restart', async (ctx) => {
    requireAdmin(ctx);
    try {
      await functions.restartInstances();
    } catch (err) {
      if (err instanceof FunctionUnavailableError) throw new HttpError(503, err.message);
      throw err;
    }
    ctx.body = { status: 'success' };
  });
}
