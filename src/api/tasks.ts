import { createHash, randomBytes } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { Config } from '../config/index.js';
import type { Logger } from '../logging.js';
import type { MetaStore } from '../platform/meta-store/port.js';
import type { ObjectStore } from '../platform/object-store/port.js';
import type { ModelRecord, TaskRecord, TaskWebhook, WebhookEventType } from '../records.js';
import { deleteTaskData } from '../retention.js';
import { announceTaskEnd } from '../task-endings.js';
import { runningProgressView, taskResultView } from '../task-views.js';
import { generationInputFor, startGeneration } from '../temporal.js';
import {
  EMPTY_SD_STATE,
  isFinal,
  isOpen,
  type ProgressSnapshot,
  type SdParams,
  type TaskKind,
  type TaskProgress,
  type TaskScheduling,
} from '../types.js';
import type { WebhookNotifier } from '../webhooks/notify.js';
import { resolveTarget, type TargetPolicy, TargetRefusedError, TargetUnresolvedError } from '../webhooks/targets.js';
import { progressQuery } from '../workflows/definitions.js';
import type { Principal } from './auth.js';
import type { CheckpointHealth } from './checkpoint-health.js';
import { resolveCheckpoint } from './checkpoints.js';
import { claimCheckImages } from './claim-check.js';
import { badRequest, conflict, HttpError, notFound } from './errors.js';
import type { TaskEta } from './eta.js';
import { enforceQueueLimit } from './limits.js';
import { assertLorasUsable, assertVaeUsable } from './model-refs.js';
import { storeLargeBody } from './passthrough.js';
import type { QueuePositionOf } from './queue-positions.js';
import type { Limits } from './schemas.js';
import { waitForTaskEnd, waitForWorkflow } from './workflow-wait.js';

// What the routes do with tasks: submit, wait, read, cancel. Routes translate HTTP to these calls and back.

export interface TaskDeps {
  config: Config;
  meta: MetaStore;
  store: ObjectStore;
  temporal: Client;
  logger: Logger;
  limits: Limits;
  queuePositionOf: QueuePositionOf;
  eta: TaskEta;
  /** Checkpoint health (circuit breakers): a quarantined checkpoint takes no new tasks. */
  health: CheckpointHealth;
  notifyWebhook: WebhookNotifier;
  webhookTargets: TargetPolicy;
}

/**
 * Where a task's params record the version of the user's options applied to it. Options are merged into the params
 * at submit, so a retry renders with the same settings even if the user stores new ones meanwhile.
 */
export const OPTIONS_VERSION_FIELD = 'sdflow_options_version';

/**
 * Platform fields that select the function, record what was applied or say where webhooks go; the rest goes to SD as
 * the A1111 body.
 */
const PLATFORM_FIELDS = [
  'stable_diffusion_model',
  'sd_vae',
  OPTIONS_VERSION_FIELD,
  'webhook',
  'webhook_events_filter',
] as const;

/** The kinds whose A1111 bodies carry WebUI settings, so a user's options apply to them. */
const TAKES_OPTIONS: readonly TaskKind[] = ['txt2img', 'img2img'];

/** Sortable, unguessable: time first so listings read in order, then 64 random bits. */
export function newTaskId(): string {
  return `${Date.now().toString(36)}${randomBytes(8).toString('hex')}`;
}

export interface Submission {
  kind: TaskKind;
  principal: Principal;
  /** The checkpoint, resolved once by the route (`checkpoints.ts`). */
  model: ModelRecord;
  body: SdParams;
  taskId?: string;
  idempotencyKey?: string;
  retryOf?: string;
  /** The version of the caller's options to apply (the `version` header); the latest when absent. */
  optionsVersion?: number;
  webhook?: TaskWebhook;
  /** Its lane, deadline and its user's share and cap (request-headers.ts); the default lane when absent. */
  scheduling?: TaskScheduling;
}

/** A body's webhook (`webhook`, `webhook_events_filter`), if it has one; the filter defaults to `completed`. */
export function webhookOf(body: { webhook?: unknown; webhook_events_filter?: unknown }): TaskWebhook | undefined {
  if (typeof body.webhook !== 'string') return undefined;
  const events = (body.webhook_events_filter as WebhookEventType[] | undefined) ?? ['completed'];
  return { url: body.webhook, events: [...new Set(events)] };
}

/** A webhook target the deployment may send to (SDFLOW_WEBHOOK_ALLOW); else a 400 naming the field. */
async function assertWebhookTarget(deps: TaskDeps, webhook: TaskWebhook): Promise<void> {
  try {
    await resolveTarget(webhook.url, deps.webhookTargets);
  } catch (err) {
    if (err instanceof TargetRefusedError || err instanceof TargetUnresolvedError) {
      throw badRequest(`webhook: ${err.message}`);
    }
    throw err;
  }
}

/** A Task-Deadline the estimate already misses is a 409 with the estimate, and no task is created. */
async function assertDeadlineFeasible(deps: TaskDeps, s: Submission, taskId: string, scheduling: TaskScheduling) {
  const now = Date.now();
  const estimate = await deps.eta.estimate(
    { taskId, user: s.principal.user, model: s.model.name, params: s.body, createdAt: new Date(now).toISOString() },
    scheduling.owner,
  );
  if (!estimate || scheduling.deadlineAt === undefined) return;
  const deadlineS = Math.round((scheduling.deadlineAt - now) / 100) / 10;
  if (estimate.estimatedFinishS > deadlineS) {
    throw conflict(
      `Task-Deadline header: the task is estimated to finish in ${estimate.estimatedFinishS} s, after its deadline of ${deadlineS} s`,
      { ...estimate },
    );
  }
}

function requestHash(kind: TaskKind, body: SdParams): string {
  return createHash('sha256').update(kind).update(JSON.stringify(body)).digest('hex');
}

/**
 * The user's options (the latest, or `version`) as override_settings; undefined when the user has none. Options
 * never choose the checkpoint: the function does.
 */
async function userOverrides(meta: MetaStore, user: string, version?: number) {
  const options = await meta.getUserOptions(user, version);
  if (!options) {
    if (version !== undefined) throw notFound(`version header: you have no options version ${version}`);
    return undefined;
  }
  const { sd_model_checkpoint: _checkpoint, ...settings } = options.data;
  return { version: options.version, settings };
}

/** Where a task's VAE setting came from, for the message that refuses it. */
function vaeField(body: SdParams, params: SdParams): string {
  if (body.sd_vae !== undefined) return 'sd_vae';
  const requested = body.override_settings as Record<string, unknown> | undefined;
  if (requested?.sd_vae !== undefined) return 'override_settings.sd_vae';
  return `override_settings.sd_vae (from your options, version ${params[OPTIONS_VERSION_FIELD]})`;
}

/** Validated body in, accepted task out: options, claim check, conditional insert, workflow start. */
export async function submitTask(deps: TaskDeps, s: Submission): Promise<TaskRecord> {
  await assertLorasUsable(deps.meta, s.body);

  if (s.idempotencyKey) {
    const earlier = await deps.meta.findTaskByIdempotencyKey(s.principal.user, s.idempotencyKey);
    if (earlier) {
      if (earlier.requestHash === requestHash(s.kind, s.body)) return earlier;
      throw conflict('Idempotency-Key was used before with a different request', { taskId: earlier.taskId });
    }
  }
  const { keyMaxQueued, queueRetryAfterS } = deps.config.api;
  await enforceQueueLimit(deps.meta, s.principal, keyMaxQueued, queueRetryAfterS);
  await deps.health.assertAccepting(s.model.name);

  const taskId = s.taskId ?? newTaskId();
  if (s.taskId && (await deps.meta.getTask(taskId))) throw conflict(`taskId ${taskId} already exists`);
  if (s.scheduling?.deadlineAt !== undefined) await assertDeadlineFeasible(deps, s, taskId, s.scheduling);
  if (s.webhook) await assertWebhookTarget(deps, s.webhook);

  const params: SdParams = { ...s.body };
  for (const f of PLATFORM_FIELDS) delete params[f];
  if (s.retryOf) {
    // A retry's params already hold the options applied to the original, so it renders with the same settings.
    if (s.body[OPTIONS_VERSION_FIELD] !== undefined) params[OPTIONS_VERSION_FIELD] = s.body[OPTIONS_VERSION_FIELD];
  } else if (TAKES_OPTIONS.includes(s.kind)) {
    const options = await userOverrides(deps.meta, s.principal.user, s.optionsVersion);
    if (options) {
      // The request's own override_settings win over the stored options.
      params.override_settings = { ...options.settings, ...(params.override_settings as object | undefined) };
      params[OPTIONS_VERSION_FIELD] = options.version;
    }
  }
  if (typeof s.body.sd_vae === 'string') {
    params.override_settings = { ...(params.override_settings as object | undefined), sd_vae: s.body.sd_vae };
  }
  // Checked after the options are merged: a VAE may come from the request or from the user's stored options.
  const vae = (params.override_settings as Record<string, unknown> | undefined)?.sd_vae;
  if (vae !== undefined) await assertVaeUsable(deps.meta, vae, vaeField(s.body, params));
  // A passthrough body goes to SD as it is (extension routes take many shapes): only a large one is set aside.
  const checked =
    s.kind === 'passthrough'
      ? await storeLargeBody(params, { store: deps.store, user: s.principal.user, taskId })
      : await claimCheckImages(params, {
          kind: s.kind,
          taskId,
          principal: s.principal,
          store: deps.store,
          limits: deps.limits,
        });

  const task = await deps.meta.insertTask({
    taskId,
    user: s.principal.user,
    kind: s.kind,
    model: s.model.name,
    params: checked,
    ...(s.retryOf ? { retryOf: s.retryOf } : {}),
    ...(s.webhook ? { webhook: s.webhook } : {}),
    ...(s.scheduling ? { scheduling: s.scheduling } : {}),
    ...(s.idempotencyKey ? { idempotencyKey: s.idempotencyKey, requestHash: requestHash(s.kind, s.body) } : {}),
  });
  if (!task) {
    if (s.idempotencyKey) {
      const winner = await deps.meta.findTaskByIdempotencyKey(s.principal.user, s.idempotencyKey);
      if (winner) return winner;
    }
    throw conflict(`taskId ${taskId} already exists`);
  }
  try {
    await startGeneration(
      deps.temporal,
      deps.config,
      generationInputFor(deps.config, task, s.principal.role === 'admin'),
    );
  } catch (err) {
    deps.logger.error({ err, taskId }, 'could not start the workflow');
    // The row stays open: the reconciler starts the workflow once Temporal is back, so the task is not lost.
    throw new HttpError(503, `task ${taskId} was accepted but its workflow could not be started yet; it will be`, {
      taskId,
      status: 'waiting',
    });
  }
  return task;
}

/**
 * A new task with a failed or cancelled task's request: the same owner, kind, checkpoint, inputs, applied options
 * and webhook (unless the retry names its own), with `retryOf` naming the original. An admin retrying a user's task
 * submits it as that user, so the images go under the user's keys and count against the user's limits.
 */
export async function retryTask(
  deps: TaskDeps,
  original: TaskRecord,
  caller: Principal,
  ids: { taskId?: string; idempotencyKey?: string; webhook?: TaskWebhook; scheduling?: TaskScheduling },
): Promise<TaskRecord> {
  if (original.status !== 'failed' && original.status !== 'cancelled') {
    throw conflict(`task ${original.taskId} is ${original.status}: only a failed or cancelled task can be retried`, {
      taskId: original.taskId,
      status: original.status,
    });
  }
  const owner: Principal = caller.user === original.user ? caller : { user: original.user, role: 'user' };
  const { webhook = original.webhook, scheduling, ...taskIds } = ids;
  // An admin's retry of a user's task keeps the lane asked for, but never the admin key's share or cap.
  const retryScheduling =
    scheduling && caller.user !== original.user
      ? { ...scheduling, owner: { lane: scheduling.owner.lane, user: original.user } }
      : scheduling;
  return submitTask(deps, {
    kind: original.kind,
    principal: owner,
    model: await resolveCheckpoint(deps.meta, original.model, 'model'),
    body: { ...original.params, stable_diffusion_model: original.model },
    retryOf: original.taskId,
    ...(webhook ? { webhook } : {}),
    ...(retryScheduling ? { scheduling: retryScheduling } : {}),
    ...taskIds,
  });
}

/** A task the caller may see; another user's task is reported as missing, never as forbidden. */
export async function taskFor(deps: TaskDeps, taskId: string, principal: Principal): Promise<TaskRecord> {
  const task = await deps.meta.getTask(taskId);
  if (!task || (principal.role !== 'admin' && task.user !== principal.user)) throw notFound(`unknown task ${taskId}`);
  return task;
}

/**
 * Waits until the task is final or `timeoutMs` passes (or `signal` aborts), and returns the row as it then is.
 * Waiting follows the workflow's result; the row is what is returned, as it is the record.
 */
export async function waitForTask(deps: TaskDeps, taskId: string, timeoutMs: number, signal?: AbortSignal) {
  // However the wait ends, the row says where the task stands.
  await waitForTaskEnd(deps.temporal, taskId, timeoutMs, signal);
  return (await deps.meta.getTask(taskId))!;
}

export function resultView(deps: TaskDeps, task: TaskRecord) {
  return taskResultView(task, deps.store, deps.config.stores.urlTtlS);
}

/** A task as GET /tasks lists it: what it is and where it stands, without its params or signed links. */
export function taskSummary(task: TaskRecord) {
  return {
    taskId: task.taskId,
    user: task.user,
    kind: task.kind,
    model: task.model,
    status: task.status,
    images: task.images,
    createdAt: task.createdAt,
    updatedAt: task.updatedAt,
    ...(task.startedAt ? { startedAt: task.startedAt } : {}),
    ...(task.finishedAt ? { finishedAt: task.finishedAt } : {}),
    ...(task.message ? { message: task.message } : {}),
    ...(task.errorKind ? { errorKind: task.errorKind } : {}),
    ...(task.retryOf ? { retryOf: task.retryOf } : {}),
    ...(task.cost ? { cost: task.cost } : {}),
  };
}

/** What GET /tasks/{id}/progress answers: the workflow's progress, plus a signed link to the live preview. */
export interface ProgressView extends TaskProgress {
  currentImageUrl?: string;
  /** While it waits: seconds until it starts and until it ends, as estimated now. */
  estimatedStartS?: number;
  estimatedFinishS?: number;
}

/**
 * Where an open task stands: the heartbeat of its runTask activity, which carries the invoke's progress (a task the
 * first version started answers its workflow's query instead). Undefined when Temporal does not answer in time.
 */
async function liveProgress(deps: TaskDeps, taskId: string): Promise<ProgressSnapshot | undefined> {
  const handle = deps.temporal.workflow.getHandle(taskId);
  const deadline = () => Date.now() + deps.config.api.queryTimeoutMs;
  try {
    const description = await deps.temporal.connection.withDeadline(deadline(), () => handle.describe());
    const run = description.raw.pendingActivities?.find((a) => a.activityType?.name === 'runTask');
    if (run) {
      const details = run.heartbeatDetails?.payloads?.[0];
      return details ? defaultPayloadConverter.fromPayload<ProgressSnapshot>(details) : undefined;
    }
    return await deps.temporal.connection.withDeadline(deadline(), () => handle.query(progressQuery));
  } catch (err) {
    deps.logger.debug({ err, taskId }, 'no live progress; answering from the row');
    return undefined;
  }
}

/**
 * Progress of an open task from its live state (falling back to the row); a finished task from the row alone, as a
 * closed workflow is never asked. A waiting task gets its queue position; a running one with a live preview, a
 * signed link to it.
 */
export async function progressView(deps: TaskDeps, task: TaskRecord): Promise<ProgressView> {
  const closed = !isOpen(task.status);
  const fromRow: ProgressSnapshot = {
    progress: closed ? 1 : 0,
    etaRelative: 0,
    state: EMPTY_SD_STATE,
    phase: closed ? 'finished' : task.status === 'running' ? 'starting' : 'queued',
    currentImage: null,
  };
  if (closed) return { taskId: task.taskId, status: task.status, ...fromRow };
  const snapshot = (await liveProgress(deps, task.taskId)) ?? fromRow;
  // The live phase is ahead of the row, which the task marks running without waiting for the write.
  const status = snapshot.phase === 'queued' ? task.status : 'running';
  if (status !== 'waiting') return runningProgressView(task.taskId, snapshot, deps.store, deps.config.stores.urlTtlS);
  const [queuePosition, estimate] = await Promise.all([deps.queuePositionOf(task.taskId), deps.eta.estimate(task)]);
  return {
    taskId: task.taskId,
    status,
    ...snapshot,
    ...(queuePosition === undefined ? {} : { queuePosition }),
    ...estimate,
  };
}

/** Cancels a waiting or running task, then waits briefly so the answer can already say `cancelled`. */
export async function cancelTask(deps: TaskDeps, task: TaskRecord): Promise<TaskRecord> {
  if (!isOpen(task.status)) {
    throw conflict(`task ${task.taskId} is already ${task.status}`, { taskId: task.taskId, status: task.status });
  }
  try {
    await deps.temporal.workflow.getHandle(task.taskId).cancel();
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw err;
    // Accepted but never started (Temporal was down at submit): nothing runs, so the row is final at once.
    const stored = await deps.meta.finalizeTask(task.taskId, {
      status: 'cancelled',
      images: [],
      message: 'cancelled by request',
    });
    if (stored) await announceTaskEnd(deps, stored);
  }
  return waitForTask(deps, task.taskId, deps.config.api.cancelWaitS * 1000);
}

/**
 * Removes a final task's objects and keeps its record as `deleted`. A task whose final record is written but whose
 * workflow is still closing (a sync answer comes a moment before) is waited for briefly; an open task is a 409.
 */
export async function deleteTask(deps: TaskDeps, task: TaskRecord): Promise<TaskRecord> {
  let result = await deleteTaskData(deps, task);
  if (result.outcome === 'open' && isFinal(task.status)) {
    await waitForWorkflow(deps.temporal, task.taskId, deps.config.api.cancelWaitS * 1000);
    result = await deleteTaskData(deps, task);
  }
  if (result.outcome === 'open') {
    throw conflict(`task ${task.taskId} is still ${task.status}: cancel it first, or wait for it to end`, {
      taskId: task.taskId,
      status: task.status,
    });
  }
  return result.task;
}
