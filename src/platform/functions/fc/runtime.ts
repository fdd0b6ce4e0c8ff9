import { setTimeout as sleep } from 'node:timers/promises';
import FcSdk, * as $fc from '@alicloud/fc20230330';
import { $OpenApiUtil } from '@alicloud/openapi-core';
import type { FcConfig } from '../../../config/index.js';
import { errorMessage } from '../../../http-util.js';
import { AGENT_PATHS, sdPassthroughPath } from '../../../protocol/agent-http.js';
import { type AgentEvent, decodeEvents, invokeEvents, startingEvent } from '../../../protocol/events.js';
import { INSTANCE_ENV } from '../../../protocol/instance-env.js';
import type { InvokeRequest } from '../../../protocol/invoke.js';
import { backoffMs, type RetryPolicy } from '../../retry.js';
import {
  FunctionNotFoundError,
  type FunctionRuntime,
  type FunctionSpec,
  FunctionUnavailableError,
  type InvokeOptions,
  type PassthroughRequest,
  type PassthroughResponse,
  type RuntimeFunction,
} from '../port.js';
import { describeFailure, FcError, withRetries } from './retry.js';
import { canonicalPath, signTriggerRequest, type TriggerCredentials } from './signing.js';
import {
  assertFunctionName,
  checkFcSettings,
  type DesiredFunction,
  desiredFunction,
  differingFields,
  minInstancesOf,
  provisionInput,
  runtimeFunctionOf,
  TRIGGER_METHODS,
  TRIGGER_NAME,
  updateInput,
} from './spec.js';

export { FcError } from './retry.js';
export { FcSpecError } from './spec.js';

// The functions port on Alibaba Function Compute 3.0, through the official @alicloud/fc20230330 SDK.
//
// Settings (SDFLOW_FUNCTIONS=fc; see src/config/fc.ts): SDFLOW_FC_REGION and SDFLOW_FC_ACCOUNT_ID (the endpoint is
// <account>.<region>.fc.aliyuncs.com, or <region>-internal with SDFLOW_FC_INTERNAL=1), or SDFLOW_FC_ENDPOINT; the
// image (SDFLOW_FC_IMAGE), the agent's port and command, GPU type and memory, cpu, memory, disk, timeout, role, VPC,
// NAS and OSS mounts, SDFLOW_FC_ENV, the trigger's auth, and ALIBABA_CLOUD_* credentials. It needs the OSS object
// store: instances read inputs and write images there. A missing setting fails construction, naming it.
//
// Functions. ensureFunction creates a custom-container GPU function (spec.ts) with instanceConcurrency 1 and an
// initializer (FC POSTs the agent's /initialize before an instance's first request, so the checkpoint is loaded
// before any request reaches it), then its HTTP trigger. Creation is race-safe: replicas may create at once, and
// FunctionAlreadyExists / TriggerAlreadyExists are success, after which the function is read back and updated when
// it differs from the wanted spec (the batch update's resources over the settings). Names come only from
// functionNameFor (naming.ts) and are checked against FC's rules (at most 64 characters) before any call.
// Batch-update resources FC applies: image, cpu, memorySize, gpuMemorySize, instanceType (the GPU type), timeout, env,
// extraArgs (SDFLOW_SD_EXTRA_ARGS), vpcConfig, nasConfig, ossMountConfig, and minInstances: the function's
// provisioned instances (PutProvisionConfig on LATEST, in idle mode so that an idle provisioned GPU instance bills at
// the idle rate; 0 releases them). keepAliveS is not mapped: FC reclaims idle on-demand instances on its own schedule
// and has no setting for it. maxInstances bounds the workers' pre-warm (src/prewarm.ts); FC scales by itself.
//
// Pre-warm. prewarm sets the provisioned target to the instances a burst wants; the workers set it back to the
// function's minInstances when the burst is over.
//
// Instances. The agent runs with SDFLOW_DATA_DIR=SDFLOW_FC_AGENT_DATA_DIR (/mnt/sdflow) and reads the checkpoints at
// <dir>/objects/models, which a mount provides: SDFLOW_FC_OSS_MOUNT_CONFIG mounting the bucket's /models there (or a
// NAS holding them). It reads inputs and writes images through OSS, with the role's credentials that FC injects.
//
// Repair. A function recorded by the platform but missing in FC (or missing its trigger) answers invoke and
// passthrough with FunctionNotFoundError, on which the platform calls ensureFunction again, which recreates it. A
// function FC has without a record is adopted by the next ensureFunction: "already exists", then updated if needed.
//
// Invocation goes through the trigger (its URL comes from the trigger, cached per function), signed when the
// trigger's authType is `function` (signing.ts). It is the agent's one-request protocol: POST /invoke, NDJSON
// progress on the response, then the result; aborting the signal closes the connection, which the agent takes as a
// cancel. While FC starts an instance (no answer yet) the stream carries a `starting` progress event each second.
// Passthrough requests go to the trigger's /sd/<path>.
//
// Restart. FC cannot restart instances. restartInstances updates the function's environment (SDFLOW_RESTART_AT):
// FC serves later requests with instances of the new configuration and retires the old ones once they are idle.
//
// Retries. Management calls are retried on throttling (429, ResourceThrottled), 5xx and timeouts or broken
// connections, with exponential backoff and jitter, up to SDFLOW_FC_MAX_ATTEMPTS, each with SDFLOW_FC_REQUEST_TIMEOUT_S
// (retry.ts). Authorization failures (InvalidAccessKeyId, SignatureNotMatch, 403) and other 4xx are not retried.
// Every failure is an FcError naming the operation, the function, FC's code and the request id. An invoke is
// retried only before the trigger answered (a connection failure, or 429/502/503/504 from FC's gateway); once the
// stream started, a failure ends it and the workflow's activity retry decides.

// The SDK is CommonJS with its client as `exports.default`: Node's ESM loader hands over the whole exports object,
// a bundler's interop (vitest's) the client itself.
const FcClient = ((FcSdk as unknown as { default?: unknown }).default ?? FcSdk) as typeof FcSdk.default;
type FcClient = InstanceType<typeof FcClient>;

/** How often a `starting` event is emitted while FC has not answered an invoke yet. */
const STARTING_EVERY_MS = 1000;
/** FC's page size limit for ListFunctions and ListTriggers. */
const PAGE_SIZE = 100;
/** Statuses of FC's gateway, before the function answered, that a new attempt may not meet. */
const GATEWAY_RETRY_STATUSES = new Set([429, 502, 503, 504]);
/**
 * FC's error codes for an instance that could not start (its process exited, its start file is missing, its HTTP
 * server never answered): the checkpoint's failure, which its circuit breaker counts, not a refusal of the request.
 */
const START_FAILURE_CODES = new Set(['CAExited', 'CAFileNotFound', 'FunctionNotStarted']);

/** The SDK's models as plain JSON, so they compare field by field with what sdflow wants. */
const plain = (value: unknown): Record<string, unknown> =>
  value === undefined || value === null ? {} : (JSON.parse(JSON.stringify(value)) as Record<string, unknown>);

const isFcCode = (err: unknown, ...codes: string[]) => err instanceof FcError && codes.includes(err.code);
const isNotFound = (err: unknown) => err instanceof FcError && err.status === 404;

/** The SDK's endpoint (host[:port]) and protocol: from SDFLOW_FC_ENDPOINT, else the account's regional endpoint. */
function endpointOf(fc: FcConfig): { endpoint: string; protocol: string } {
  if (fc.endpoint) {
    const url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(fc.endpoint) ? fc.endpoint : `https://${fc.endpoint}`);
    return { endpoint: url.host, protocol: url.protocol.replace(/:$/, '') };
  }
  const region = fc.internal ? `${fc.region}-internal` : fc.region;
  return { endpoint: `${fc.accountId}.${region}.fc.aliyuncs.com`, protocol: 'https' };
}

/** The trigger's URL with a path (and query) of the function appended, its path encoded as it is signed. */
function triggerTarget(base: string, pathAndQuery: string): URL {
  const url = new URL(base);
  const queryAt = pathAndQuery.indexOf('?');
  const path = queryAt < 0 ? pathAndQuery : pathAndQuery.slice(0, queryAt);
  url.pathname = canonicalPath(`${url.pathname.replace(/\/+$/, '')}${path}`);
  url.search = queryAt < 0 ? '' : pathAndQuery.slice(queryAt);
  return url;
}

/** FC's own error answer (`{Code, Message, RequestId}`), as opposed to one from the agent or SD behind the trigger. */
function fcErrorOf(body: Buffer): { code: string; message: string } | undefined {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { Code?: unknown; Message?: unknown };
    if (typeof parsed.Code === 'string' && typeof parsed.Message === 'string') {
      return { code: parsed.Code, message: parsed.Message };
    }
  } catch {
    // Not JSON: not FC's.
  }
  return undefined;
}

/** A short description of a trigger's non-200 answer: FC's code and message when it is FC's, else the text. */
async function answerOf(res: Response): Promise<{ code: string; detail: string; requestId?: string }> {
  const body = Buffer.from(await res.arrayBuffer().catch(() => new ArrayBuffer(0)));
  const fc = fcErrorOf(body);
  return {
    code: fc?.code ?? `HTTP ${res.status}`,
    detail: (fc?.message ?? body.toString('utf8')).slice(0, 300) || res.statusText,
    requestId: res.headers.get('x-fc-request-id') ?? undefined,
  };
}

export class FcFunctionRuntime implements FunctionRuntime {
  private readonly client: FcClient;
  private readonly retry: RetryPolicy;
  private readonly credentials: TriggerCredentials;
  private readonly listPrefix: string;
  /** Trigger URLs by function name. */
  private readonly triggerUrls = new Map<string, string>();
  private readonly passthroughTimeoutMs: number;

  constructor(private readonly fc: FcConfig) {
    checkFcSettings(fc);
    const { credentials } = fc;
    this.credentials = {
      accessKeyId: credentials.accessKeyId as string,
      accessKeySecret: credentials.accessKeySecret as string,
      ...(credentials.securityToken ? { securityToken: credentials.securityToken } : {}),
    };
    const { endpoint, protocol } = endpointOf(fc);
    const timeoutMs = Math.round(fc.requestTimeoutS * 1000);
    this.client = new FcClient(
      new $OpenApiUtil.Config({
        ...this.credentials,
        endpoint,
        protocol,
        ...(fc.region ? { regionId: fc.region } : {}),
        connectTimeout: timeoutMs,
        readTimeout: timeoutMs,
      }),
    );
    this.retry = { maxAttempts: fc.maxAttempts, baseDelayMs: 200, maxDelayMs: 5000 };
    this.listPrefix = `${fc.functionPrefix}sd_`;
    // The longest FC may take to answer one request: an instance's initializer, then the request itself.
    this.passthroughTimeoutMs = (fc.initializerTimeoutS + fc.timeoutS) * 1000;
  }

  private call<T>(operation: string, functionName: string | undefined, request: () => Promise<T>): Promise<T> {
    return withRetries(this.retry, { operation, functionName }, request);
  }

  // --- functions ---

  async ensureFunction(spec: FunctionSpec): Promise<void> {
    assertFunctionName(spec.functionName);
    await this.putFunction(desiredFunction(this.fc, spec));
    await this.putTrigger(spec.functionName);
    const minInstances = minInstancesOf(spec);
    if (minInstances !== undefined) await this.putProvision(spec.functionName, minInstances);
  }

  async prewarm(functionName: string, instances: number): Promise<void> {
    assertFunctionName(functionName);
    await this.putProvision(functionName, instances);
  }

  /** Sets the function's provisioned instances (on LATEST, the version its trigger serves). */
  private async putProvision(name: string, instances: number): Promise<void> {
    try {
      await this.call('PutProvisionConfig', name, () =>
        this.client.putProvisionConfig(
          name,
          new $fc.PutProvisionConfigRequest({
            qualifier: 'LATEST',
            body: new $fc.PutProvisionConfigInput(provisionInput(instances)),
          }),
        ),
      );
    } catch (err) {
      if (isFcCode(err, 'FunctionNotFound')) throw new FunctionNotFoundError(name);
      throw err;
    }
  }

  /** Creates the function; when it exists (another replica, or an earlier life), updates it if it differs. */
  private async putFunction(desired: DesiredFunction): Promise<void> {
    const name = desired.functionName;
    // A function found existing and then missing was deleted meanwhile: creating it again is the answer.
    for (let round = 1; ; round++) {
      try {
        await this.call('CreateFunction', name, () =>
          this.client.createFunction(new $fc.CreateFunctionRequest({ body: new $fc.CreateFunctionInput(desired) })),
        );
        return;
      } catch (err) {
        if (!isFcCode(err, 'FunctionAlreadyExists') || round >= 3) throw err;
      }
      const actual = await this.getFunction(name);
      if (!actual) continue;
      if (differingFields(desired, actual).length === 0) return;
      await this.call('UpdateFunction', name, () =>
        this.client.updateFunction(
          name,
          new $fc.UpdateFunctionRequest({ body: new $fc.UpdateFunctionInput(updateInput(desired, actual)) }),
        ),
      );
      return;
    }
  }

  /** The function as FC holds it, or undefined when FC has none by that name. */
  private async getFunction(name: string): Promise<Record<string, unknown> | undefined> {
    try {
      const res = await this.call('GetFunction', name, () =>
        this.client.getFunction(name, new $fc.GetFunctionRequest({})),
      );
      return plain(res.body);
    } catch (err) {
      if (isFcCode(err, 'FunctionNotFound')) return undefined;
      throw err;
    }
  }

  private triggerConfig(): { authType: string; methods: string[]; disableURLInternet: boolean } {
    const { fc } = this;
    // Inside the VPC (SDFLOW_FC_INTERNAL) sdflow uses the intranet URL, so the public one is switched off.
    return { authType: fc.triggerAuth, methods: TRIGGER_METHODS, disableURLInternet: fc.internal };
  }

  /** Creates the function's HTTP trigger; when it exists, updates its config if it differs. Caches its URL. */
  private async putTrigger(name: string): Promise<void> {
    const wanted = this.triggerConfig();
    for (let round = 1; ; round++) {
      try {
        const res = await this.call('CreateTrigger', name, () =>
          this.client.createTrigger(
            name,
            new $fc.CreateTriggerRequest({
              body: new $fc.CreateTriggerInput({
                triggerName: TRIGGER_NAME,
                triggerType: 'http',
                qualifier: 'LATEST',
                description: 'sdflow invocations',
                triggerConfig: JSON.stringify(wanted),
              }),
            }),
          ),
        );
        this.remember(name, plain(res.body));
        return;
      } catch (err) {
        if (!isFcCode(err, 'TriggerAlreadyExists') || round >= 3) throw err;
      }
      let trigger: Record<string, unknown>;
      try {
        trigger = plain((await this.call('GetTrigger', name, () => this.client.getTrigger(name, TRIGGER_NAME))).body);
      } catch (err) {
        if (isFcCode(err, 'TriggerNotFound')) continue;
        throw err;
      }
      const have = JSON.parse(String(trigger.triggerConfig ?? '{}')) as Record<string, unknown>;
      const same =
        have.authType === wanted.authType &&
        (have.disableURLInternet ?? false) === wanted.disableURLInternet &&
        Array.isArray(have.methods) &&
        [...have.methods].sort().join() === [...wanted.methods].sort().join();
      if (!same) {
        const res = await this.call('UpdateTrigger', name, () =>
          this.client.updateTrigger(
            name,
            TRIGGER_NAME,
            new $fc.UpdateTriggerRequest({
              body: new $fc.UpdateTriggerInput({ triggerConfig: JSON.stringify(wanted) }),
            }),
          ),
        );
        trigger = plain(res.body);
      }
      this.remember(name, trigger);
      return;
    }
  }

  private remember(name: string, trigger: Record<string, unknown>): string {
    const urls = (trigger.httpTrigger ?? {}) as { urlInternet?: string; urlIntranet?: string };
    const internal = this.fc.internal;
    const url = internal ? urls.urlIntranet : urls.urlInternet;
    if (!url) {
      throw new FunctionUnavailableError(
        `the HTTP trigger of ${name} has no ${internal ? 'intranet' : 'internet'} URL (${JSON.stringify(urls)})`,
      );
    }
    this.triggerUrls.set(name, url);
    return url;
  }

  /** The function's trigger URL; FunctionNotFoundError when FC has not the function or not its trigger. */
  private async triggerUrl(name: string): Promise<string> {
    const cached = this.triggerUrls.get(name);
    if (cached) return cached;
    try {
      const res = await this.call('GetTrigger', name, () => this.client.getTrigger(name, TRIGGER_NAME));
      return this.remember(name, plain(res.body));
    } catch (err) {
      if (isNotFound(err)) throw new FunctionNotFoundError(name);
      throw err;
    }
  }

  /** Headers that authorize a request to the trigger: a signature for `function` auth, none for `anonymous`. */
  private authHeaders(method: string, url: URL): Record<string, string> {
    return this.fc.triggerAuth === 'function' ? signTriggerRequest(method, url, this.credentials) : {};
  }

  // --- invocation ---

  async *invoke(functionName: string, request: InvokeRequest, options: InvokeOptions): AsyncIterable<AgentEvent> {
    assertFunctionName(functionName);
    // A consumer that stops early (or fails) closes the connection too: the agent takes it as a cancel.
    const stop = new AbortController();
    const signal = AbortSignal.any([options.signal, stop.signal]);
    let finished = false;
    try {
      const opening = this.openInvoke(functionName, JSON.stringify(request), signal);
      // Rejections are taken below; this keeps one that lands while a `starting` event is out from being unhandled.
      opening.catch(() => {});
      let res: Response | undefined;
      while (res === undefined) {
        let timer: NodeJS.Timeout | undefined;
        const tick = new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), STARTING_EVERY_MS);
        });
        try {
          res = await Promise.race([opening, tick]);
        } finally {
          clearTimeout(timer);
        }
        if (res === undefined) yield startingEvent();
      }
      try {
        yield* invokeEvents(decodeEvents(res.body as ReadableStream<Uint8Array>));
      } catch (err) {
        if (options.signal.aborted) throw err;
        // The function had answered: its instance died or lost its connection mid-job.
        throw new FunctionUnavailableError(`invoke stream of ${functionName} broke: ${errorMessage(err)}`, 'crash');
      }
      finished = true;
    } finally {
      if (!finished) stop.abort();
    }
  }

  /** POSTs the invoke to the trigger until it answers 200, retrying what failed before the function answered. */
  private async openInvoke(name: string, body: string, signal: AbortSignal): Promise<Response> {
    const { maxAttempts } = this.retry;
    for (let attempt = 1; ; attempt++) {
      const url = triggerTarget(await this.triggerUrl(name), AGENT_PATHS.invoke);
      let failure: string;
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { ...this.authHeaders('POST', url), 'content-type': 'application/json' },
          body,
          signal,
        });
        if (res.status === 200 && res.body) return res;
        const answer = await answerOf(res);
        if (res.status === 404) {
          // The function (or its trigger) is gone; a recreated one has another URL.
          this.triggerUrls.delete(name);
          throw new FunctionNotFoundError(name);
        }
        if (START_FAILURE_CODES.has(answer.code)) {
          throw new FunctionUnavailableError(
            `an instance of ${name} failed to start: ${answer.code} (HTTP ${res.status}): ${answer.detail}`,
            'start',
          );
        }
        if (!GATEWAY_RETRY_STATUSES.has(res.status)) {
          throw new FcError({
            operation: 'Invoke',
            functionName: name,
            status: res.status,
            code: answer.code,
            requestId: answer.requestId,
            detail: answer.detail,
            attempts: attempt,
            retryable: false,
          });
        }
        const requestId = answer.requestId ? `request id ${answer.requestId}` : 'no request id';
        failure = `${answer.code} (HTTP ${res.status}, ${requestId}): ${answer.detail}`;
      } catch (err) {
        if (
          signal.aborted ||
          err instanceof FunctionNotFoundError ||
          err instanceof FcError ||
          err instanceof FunctionUnavailableError
        ) {
          throw err;
        }
        const network = describeFailure((err as { cause?: unknown }).cause ?? err);
        failure = `${network.code}: ${network.detail}`;
      }
      if (attempt >= maxAttempts) {
        throw new FunctionUnavailableError(
          `invoke of ${name} through its trigger failed after ${attempt} attempt${attempt === 1 ? '' : 's'}: ${failure}`,
        );
      }
      await sleep(backoffMs(this.retry, attempt), undefined, { signal });
    }
  }

  async passthrough(functionName: string, request: PassthroughRequest): Promise<PassthroughResponse> {
    assertFunctionName(functionName);
    const path = request.path.startsWith('/') ? request.path : `/${request.path}`;
    const url = triggerTarget(await this.triggerUrl(functionName), sdPassthroughPath(path));
    const timeout = AbortSignal.timeout(this.passthroughTimeoutMs);
    const signal = request.signal ? AbortSignal.any([timeout, request.signal]) : timeout;
    let res: Response;
    try {
      res = await fetch(url, {
        method: request.method,
        headers: { ...request.headers, ...this.authHeaders(request.method, url) },
        body: request.body && request.body.length > 0 ? new Uint8Array(request.body) : undefined,
        signal,
      });
    } catch (err) {
      if (request.signal?.aborted) throw err;
      const reason = timeout.aborted ? `no answer within ${this.passthroughTimeoutMs} ms` : errorMessage(err);
      throw new FunctionUnavailableError(`passthrough to ${functionName} failed: ${reason}`);
    }
    const body = Buffer.from(await res.arrayBuffer());
    // FC's own answers (the function is missing, throttled, failing to start) are not SD's.
    const fc = fcErrorOf(body);
    if (fc && res.status === 404) {
      this.triggerUrls.delete(functionName);
      throw new FunctionNotFoundError(functionName);
    }
    if (fc && (res.status === 429 || res.status >= 500)) {
      throw new FunctionUnavailableError(`FC answered ${res.status} for ${functionName}: ${fc.code}: ${fc.message}`);
    }
    if (fc && (res.status === 401 || res.status === 403)) {
      throw new FcError({
        operation: 'Passthrough',
        functionName,
        status: res.status,
        code: fc.code,
        requestId: res.headers.get('x-fc-request-id') ?? undefined,
        detail: fc.message,
        attempts: 1,
        retryable: false,
      });
    }
    const headers: Record<string, string> = {};
    res.headers.forEach((value, key) => {
      headers[key] = value;
    });
    return { status: res.status, headers, body };
  }

  // --- listing, deleting, restarting ---

  /** The deployment's functions (names `<prefix>sd_<40 hex>`), every page of them. */
  async listFunctions(): Promise<RuntimeFunction[]> {
    const found: Record<string, unknown>[] = [];
    let nextToken: string | undefined;
    do {
      const after = nextToken;
      const page = await this.call('ListFunctions', undefined, () =>
        this.client.listFunctions(
          new $fc.ListFunctionsRequest({
            prefix: this.listPrefix,
            limit: PAGE_SIZE,
            ...(after ? { nextToken: after } : {}),
          }),
        ),
      );
      const body = plain(page.body) as { functions?: Record<string, unknown>[]; nextToken?: string };
      for (const fn of body.functions ?? []) if (this.isOurs(String(fn.functionName))) found.push(fn);
      nextToken = body.nextToken || undefined;
    } while (nextToken);
    const described: RuntimeFunction[] = [];
    for (const fn of found) {
      // A listing may leave out a function's environment, which names its checkpoint: read the function then.
      const full = fn.environmentVariables ? fn : await this.getFunction(String(fn.functionName));
      if (full) described.push(runtimeFunctionOf(full));
    }
    return described;
  }

  private isOurs(name: string): boolean {
    return name.startsWith(this.listPrefix) && /^[0-9a-f]{40}$/.test(name.slice(this.listPrefix.length));
  }

  /** Deletes the function's triggers, then the function. A function or trigger already gone is fine. */
  async deleteFunction(functionName: string): Promise<void> {
    assertFunctionName(functionName);
    this.triggerUrls.delete(functionName);
    let triggers: string[];
    try {
      triggers = await this.listTriggerNames(functionName);
    } catch (err) {
      if (isFcCode(err, 'FunctionNotFound')) return;
      throw err;
    }
    for (const trigger of triggers) {
      try {
        await this.call('DeleteTrigger', functionName, () => this.client.deleteTrigger(functionName, trigger));
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    try {
      await this.call('DeleteFunction', functionName, () => this.client.deleteFunction(functionName));
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  private async listTriggerNames(functionName: string): Promise<string[]> {
    const names: string[] = [];
    let nextToken: string | undefined;
    do {
      const after = nextToken;
      const page = await this.call('ListTriggers', functionName, () =>
        this.client.listTriggers(
          functionName,
          new $fc.ListTriggersRequest({ limit: PAGE_SIZE, ...(after ? { nextToken: after } : {}) }),
        ),
      );
      const body = plain(page.body) as { triggers?: { triggerName?: string }[]; nextToken?: string };
      for (const trigger of body.triggers ?? []) if (trigger.triggerName) names.push(trigger.triggerName);
      nextToken = body.nextToken || undefined;
    } while (nextToken);
    return names;
  }

  /**
   * FC has no restart: the function's environment gets a new SDFLOW_RESTART_AT, and FC serves later requests with
   * instances of the new configuration. Without a name, every function of the deployment.
   */
  async restartInstances(functionName?: string): Promise<void> {
    if (functionName !== undefined) assertFunctionName(functionName);
    const names =
      functionName === undefined ? (await this.listFunctions()).map((fn) => fn.functionName) : [functionName];
    const restartedAt = new Date().toISOString();
    for (const name of names) {
      const actual = await this.getFunction(name);
      if (!actual) {
        if (functionName !== undefined) throw new FunctionNotFoundError(name);
        continue;
      }
      const env = { ...(actual.environmentVariables as Record<string, string>), [INSTANCE_ENV.restartAt]: restartedAt };
      await this.call('UpdateFunction', name, () =>
        this.client.updateFunction(
          name,
          new $fc.UpdateFunctionRequest({ body: new $fc.UpdateFunctionInput({ environmentVariables: env }) }),
        ),
      );
    }
  }
}
