import type { IncomingMessage } from 'node:http';
import {
  type Client,
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowNotFoundError,
} from '@temporalio/client';
import type { Config } from '../config/index.js';
import { failureType } from '../failures.js';
import type { Logger } from '../logging.js';
import type { MetaStore } from '../platform/meta-store/port.js';
import { ObjectKeyError, objectKeyForModel } from '../platform/object-store/keys.js';
import type { ObjectInfo, ObjectStore } from '../platform/object-store/port.js';
import type { ModelRecord, ModelType } from '../records.js';
import { registrationWorkflowId } from '../temporal.js';
import { NON_RETRYABLE, SEARCH_ATTRIBUTES } from '../types.js';
import type { ModelRegistrationInput, modelRegistrationWorkflow } from '../workflows/registration.js';
import type { Principal } from './auth.js';
import type { CheckpointHealth } from './checkpoint-health.js';
import { badRequest, conflict, HttpError, notFound } from './errors.js';
import { registerModelForm, type UpdateModelBody, updateModelForm } from './model-schemas.js';
import { receiveForm } from './upload.js';
import { waitForWorkflow } from './workflow-wait.js';

// What the model routes do: register, update and delete models. A model's file lives at its canonical key
// `models/<type>/<name>`, the local model directory every instance sees. The API claims the name (a conditional
// insert of a `registering` row), puts the file in place when it is uploaded, and starts the registration workflow,
// which checks the file and brings the model to `loaded` or `failed`. A refused request leaves nothing behind.

export interface ModelDeps {
  config: Config;
  meta: MetaStore;
  store: ObjectStore;
  temporal: Client;
  logger: Logger;
}

/** The outcome of a register or update: `workflowId` is set when a registration was started. */
export interface Registration {
  model: ModelRecord;
  workflowId?: string;
}

const UPLOAD_LIMIT_SETTING = 'SDFLOW_MAX_MODEL_UPLOAD_MB';
const BUSY: ReadonlySet<string> = new Set(['registering', 'loading']);

/** A model as the API shows it. */
export function modelView(m: ModelRecord) {
  return {
    type: m.type,
    name: m.name,
    ossPath: m.ossPath,
    etag: m.etag,
    status: m.status,
    registeredTime: m.registeredTime,
    lastModificationTime: m.lastModificationTime,
    ...(m.message ? { message: m.message } : {}),
  };
}

/** A model as the API shows it, with a checkpoint's health (its circuit breaker) when the semaphore answered. */
export async function modelWithHealth(m: ModelRecord, health: CheckpointHealth) {
  const view = modelView(m);
  if (m.type !== 'stableDiffusion') return view;
  return { ...view, ...(await health.of(m.name)) };
}

export function registrationView(r: Registration) {
  return { ...modelView(r.model), ...(r.workflowId ? { workflowId: r.workflowId } : {}) };
}

/** The object at `key`; a bad key or a missing object is a 400 naming `field`. */
async function existingObject(store: ObjectStore, key: string, field: string): Promise<ObjectInfo> {
  let info: ObjectInfo | null;
  try {
    info = await store.head(key);
  } catch (err) {
    if (err instanceof ObjectKeyError) throw badRequest(`${field}: ${err.message}`);
    throw err;
  }
  if (!info) throw badRequest(`${field}: no object at ${key}`);
  return info;
}

/** A model that exists and is not deleted. */
async function liveModel(meta: MetaStore, name: string): Promise<ModelRecord> {
  const model = await meta.getModel(name);
  if (!model || model.status === 'deleted') throw notFound(`unknown model ${name}`);
  return model;
}

function refuseWhileRegistering(model: ModelRecord): void {
  if (BUSY.has(model.status)) {
    throw conflict(`model ${model.name} is ${model.status}; wait until its registration has ended`, {
      status: model.status,
    });
  }
}

interface Claim {
  row: ModelRecord;
  /** The deleted model of the same name the claim replaced; restored if the registration does not go ahead. */
  previous: ModelRecord | null;
}

/** Claims a name with a conditional insert of a `registering` row: 409 when a live model already has it. */
async function claimName(meta: MetaStore, type: ModelType, name: string, etag: string): Promise<Claim> {
  const previous = await meta.getModel(name);
  const now = new Date().toISOString();
  const row: ModelRecord = {
    type,
    name,
    ossPath: objectKeyForModel(type, name),
    etag,
    status: 'registering',
    registeredTime: now,
    lastModificationTime: now,
  };
  if (!(await meta.insertModel(row))) throw conflict(`name: a model named ${name} already exists`);
  return { row, previous: previous?.status === 'deleted' ? previous : null };
}

async function releaseClaim(meta: MetaStore, claim: Claim): Promise<void> {
  if (claim.previous) await meta.putModel(claim.previous);
  else await meta.removeModel(claim.row.name, claim.row.registeredTime);
}

interface RegistrationPlan {
  source: string;
  replacing: boolean;
  previousKey?: string;
}

async function startRegistration(
  deps: ModelDeps,
  model: ModelRecord,
  principal: Principal,
  plan: RegistrationPlan,
): Promise<string> {
  const { config } = deps;
  const workflowId = registrationWorkflowId(config.deployment, model.name);
  const input: ModelRegistrationInput = {
    name: model.name,
    type: model.type,
    source: plan.source,
    replacing: plan.replacing,
    ...(plan.previousKey ? { previousKey: plan.previousKey } : {}),
    warmTimeoutS: config.runtime.instanceStartTimeoutS + config.runtime.instanceQueueTimeoutS,
  };
  const start = () =>
    deps.temporal.workflow.start<typeof modelRegistrationWorkflow>('modelRegistrationWorkflow', {
      workflowId,
      taskQueue: config.temporal.taskQueue,
      args: [input],
      // A closed registration (loaded, failed or abandoned) never blocks the next one of the same model.
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      workflowExecutionTimeout: `${config.tasks.executionTimeoutS}s`,
      typedSearchAttributes: [
        { key: SEARCH_ATTRIBUTES.model, value: model.name },
        { key: SEARCH_ATTRIBUTES.status, value: 'registering' },
        { key: SEARCH_ATTRIBUTES.user, value: principal.user },
      ],
      memo: { type: model.type, source: plan.source },
    });
  try {
    try {
      await start();
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      // The claim saw the earlier registration's row settled, so its workflow is only finishing its last steps
      // (the old file's removal, its final status): a client that just saw `loaded` may update at once.
      await waitForWorkflow(deps.temporal, workflowId, config.models.registrationSettleWaitS * 1000);
      await start();
    }
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      throw conflict(`an earlier registration of ${model.name} is still winding down; try again shortly`, {
        workflowId,
      });
    }
    deps.logger.error({ err, model: model.name }, 'could not start the registration workflow');
    throw new HttpError(503, `the registration of ${model.name} could not be started; try again`);
  }
  return workflowId;
}

/** POST /models with JSON: registers a file already in the object store (copied to its canonical key). */
export async function registerFromKey(
  deps: ModelDeps,
  principal: Principal,
  body: { type: ModelType; name: string; ossPath: string },
): Promise<Registration> {
  const source = await existingObject(deps.store, body.ossPath, 'ossPath');
  const claim = await claimName(deps.meta, body.type, body.name, source.etag);
  try {
    const workflowId = await startRegistration(deps, claim.row, principal, {
      source: body.ossPath,
      replacing: claim.previous !== null,
    });
    return { model: claim.row, workflowId };
  } catch (err) {
    await releaseClaim(deps.meta, claim);
    throw err;
  }
}

const missingFile = () => badRequest('file: is required: the model file, as the form field "file"');

/** POST /models as multipart: `type` and `name`, then `file`, streamed to the canonical key. */
export async function registerUpload(
  deps: ModelDeps,
  principal: Principal,
  req: IncomingMessage,
): Promise<Registration> {
  const held: { claim?: Claim } = {};
  let stored: ObjectInfo | undefined;
  try {
    const form = await receiveForm(req, {
      store: deps.store,
      maxBytes: deps.config.models.maxUploadBytes,
      limitName: UPLOAD_LIMIT_SETTING,
      fieldsFirst: ['type', 'name'],
      placeFile: async (fields) => {
        const { type, name } = registerModelForm.parse(fields);
        held.claim = await claimName(deps.meta, type, name, '');
        return held.claim.row.ossPath;
      },
    });
    if (!form.stored) {
      registerModelForm.parse(form.fields);
      throw missingFile();
    }
    stored = form.stored;
    const claim = held.claim!;
    const model = { ...claim.row, etag: stored.etag };
    const workflowId = await startRegistration(deps, model, principal, {
      source: model.ossPath,
      replacing: claim.previous !== null,
    });
    return { model, workflowId };
  } catch (err) {
    if (held.claim) {
      await releaseClaim(deps.meta, held.claim);
      // A new name's file goes too; a name registered before keeps its file for the deleted model's running tasks.
      if (stored && !held.claim.previous) await deps.store.delete(stored.key);
    }
    throw err;
  }
}

/**
 * PUT /models/{name}: a new file (JSON `ossPath`, or an upload), a new `type`, or neither (the file is checked
 * again). Re-registers when the file's etag, its key or the model's type changed, or the model is not loaded;
 * otherwise the model is returned unchanged.
 */
export async function updateModel(
  deps: ModelDeps,
  principal: Principal,
  name: string,
  request: { body: UpdateModelBody } | { req: IncomingMessage },
): Promise<Registration> {
  const { meta, store } = deps;
  const current = await liveModel(meta, name);
  refuseWhileRegistering(current);

  let type: ModelType = current.type;
  let source: string;
  let etag: string;
  let uploaded: ObjectInfo | undefined;
  if ('req' in request) {
    const form = await receiveForm(request.req, {
      store,
      maxBytes: deps.config.models.maxUploadBytes,
      limitName: UPLOAD_LIMIT_SETTING,
      fieldsFirst: [],
      placeFile: async (fields) => {
        type = updateModelForm.parse(fields).type ?? current.type;
        return objectKeyForModel(type, name);
      },
    });
    if (!form.stored) {
      updateModelForm.parse(form.fields);
      throw missingFile();
    }
    uploaded = form.stored;
    source = uploaded.key;
    etag = uploaded.etag;
  } else {
    type = request.body.type ?? current.type;
    source = request.body.ossPath ?? current.ossPath;
    etag = (await existingObject(store, source, request.body.ossPath ? 'ossPath' : "the model's file")).etag;
  }

  const key = objectKeyForModel(type, name);
  if (etag === current.etag && key === current.ossPath && current.status === 'loaded') return { model: current };

  // An upload may have taken minutes: look again before taking the model over.
  const before = await meta.getModel(name);
  try {
    if (!before || before.status === 'deleted') throw notFound(`unknown model ${name}`);
    refuseWhileRegistering(before);
  } catch (err) {
    // A new file under a new key that no registration will own is removed.
    if (uploaded && uploaded.key !== before?.ossPath) await store.delete(uploaded.key);
    throw err;
  }
  const model: ModelRecord = {
    ...before,
    type,
    ossPath: key,
    etag,
    status: 'registering',
    message: undefined,
    lastModificationTime: new Date().toISOString(),
  };
  await meta.putModel(model);
  // The old file goes once the model is loaded under its new type; a key the API did not place is never removed.
  const previousKey =
    before.ossPath !== key && before.ossPath === objectKeyForModel(before.type, name) ? before.ossPath : undefined;
  try {
    const workflowId = await startRegistration(deps, model, principal, { source, replacing: true, previousKey });
    return { model, workflowId };
  } catch (err) {
    // The file may already be replaced, so the old row cannot simply come back: the model says what happened.
    await meta.putModel({ ...model, status: 'failed', message: (err as Error).message });
    throw err;
  }
}

/**
 * DELETE /models/{name}: a soft delete. The row says `deleted`, so new requests get 404; the file stays, so running
 * tasks finish. A registration still running is cancelled.
 */
export async function deleteModel(deps: ModelDeps, name: string): Promise<ModelRecord> {
  const model = await liveModel(deps.meta, name);
  const deleted: ModelRecord = {
    ...model,
    status: 'deleted',
    message: undefined,
    lastModificationTime: new Date().toISOString(),
  };
  await deps.meta.putModel(deleted);
  if (BUSY.has(model.status)) {
    try {
      await deps.temporal.workflow.getHandle(registrationWorkflowId(deps.config.deployment, name)).cancel();
    } catch (err) {
      // Already closed: it will leave the deleted row alone either way.
      if (!(err instanceof WorkflowNotFoundError)) deps.logger.warn({ err, model: name }, 'registration not cancelled');
    }
  }
  return deleted;
}

/**
 * Waits for a registration to end (at most `timeoutMs`, or until `signal` aborts) and answers as a sync request:
 * 200 loaded, 422 a broken file, 500 another failure, 202 still registering.
 */
export async function waitForRegistration(
  deps: ModelDeps,
  registration: Registration & { workflowId: string },
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<{ status: number; body: object }> {
  const wait = await waitForWorkflow(deps.temporal, registration.workflowId, timeoutMs, signal);
  const failure =
    wait.closed && wait.failure instanceof WorkflowFailedError ? failureType(wait.failure.cause) : undefined;
  const name = registration.model.name;
  const model = await deps.meta.getModel(name);
  if (!model || model.status === 'deleted') return { status: 404, body: { message: `model ${name} was deleted` } };
  const body = registrationView({ model, workflowId: registration.workflowId });
  if (model.status === 'loaded') return { status: 200, body };
  if (model.status === 'failed') return { status: failure === NON_RETRYABLE.badInput ? 422 : 500, body };
  return { status: 202, body };
}
