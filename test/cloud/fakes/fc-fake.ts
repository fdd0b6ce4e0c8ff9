import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BucketSource, FakeInstances, type Instance } from './fc-fake-instances.js';
import { type FakeCredentials, SignatureError, verifyAcs3 } from './fc-fake-signature.js';

export type { BucketSource } from './fc-fake-instances.js';
export type { FakeCredentials } from './fc-fake-signature.js';

// An honest local stand-in for Alibaba Function Compute 3.0: a real HTTP server speaking the subset of the FC 3.0
// OpenAPI (version 2023-03-30) that the FC runtime uses, written from FC's API documentation, and serving the HTTP
// triggers of the functions it holds by running real agents.
//
// - OpenAPI: CreateFunction, GetFunction, UpdateFunction, DeleteFunction, ListFunctions (prefix, limit, nextToken),
//   CreateTrigger, GetTrigger, UpdateTrigger, DeleteTrigger, ListTriggers, at FC's paths (/2023-03-30/functions,
//   /2023-03-30/functions/{name}, /2023-03-30/functions/{name}/triggers[/{trigger}]). x-acs-action and
//   x-acs-version must name the operation and the version.
// - Every OpenAPI request must carry a valid V3 signature (ACS3-HMAC-SHA256, checked by fc-fake-signature.ts, its own
//   implementation of the documented algorithm), with host and every x-acs-* header signed, x-acs-content-sha256 the
//   SHA-256 of the body, x-acs-date within 15 minutes and a fresh x-acs-signature-nonce. Failures answer 403 (400 for
//   a wrong content hash) with FC's error body.
// - Errors are FC-shaped: `{"Code": …, "Message": …, "RequestId": …}`, the request id also in x-fc-request-id.
//   FunctionNotFound / TriggerNotFound 404, FunctionAlreadyExists / TriggerAlreadyExists 409, InvalidArgument 400.
// - Bodies are validated as the documentation states: the function name's rule (1-64, letters, digits, _ and -, not
//   starting with a digit or -); runtime and handler required; a custom container needs customContainerConfig with an
//   image and a port; cpu a multiple of 0.05 in 0.05-16, memorySize a multiple of 64 in 128-32768, and memory (GB)
//   between 1 and 4 times the vCPUs; diskSize 512 or 10240; timeout 1-86400; instanceConcurrency 1-200; gpuConfig with
//   one of fc.gpu.tesla.1 / ampere.1 / ada.1 and a GPU memory that is a multiple of 1024 within the card; at most 4 KB
//   of environment variables; NAS needs a VPC; OSS mounts need a role; one HTTP trigger per function, with authType
//   anonymous or function and methods among GET, POST, PUT, DELETE, HEAD, PATCH, OPTIONS; a function's triggers must
//   be deleted before the function (the documented rule; the error code, FunctionNotEmpty, is the fake's). Fields
//   unknown to the API answer 400; fields the fake does not implement (other runtimes, layers, logs, …) answer 501,
//   so a change in what the adapter sends shows up instead of being half-served.
// - Stored functions carry what FC adds: functionId, functionArn, times, state, resolvedImageUri and defaults.
// - Listings are paged with a small page size (maxPageSize) and an opaque nextToken.
// - Triggers: each function's HTTP trigger URL points at the fake itself, http://127.0.0.1:<port>/triggers/<id> for
//   the internet URL and http://localhost:<port>/triggers/<id> for the intranet one, with an id drawn anew for every
//   created trigger (a recreated function has another URL, as on FC). A trigger request is checked as FC's gateway
//   does (methods; for authType `function` the V3 signature as FC's trigger documentation has it: x-acs-date signed,
//   empty payload hash), then forwarded to an instance of the function (fc-fake-instances.ts: a real agent process
//   per instance, started on demand, at most maxInstancesPerFunction, each serving instanceConcurrency requests at
//   once, the initializer run first), streaming the answer back. A client that goes away closes the upstream
//   connection: the agent takes it as a cancel. The function's timeout cuts a request that runs longer.
// - Provisioned instances: PutProvisionConfig, GetProvisionConfig, DeleteProvisionConfig at
//   /2023-03-30/functions/{name}/provision-config, for the LATEST qualifier (the fake has no aliases). The body takes
//   defaultTarget and the deprecated target, integers in 0-10000, at least one of them (equal when both: which one
//   wins is not documented), and the booleans alwaysAllocateCPU / alwaysAllocateGPU (default true; false is idle
//   mode); scheduledActions and targetTrackingPolicies answer 501. The config is recorded and answered as FC's
//   ProvisionConfig; the fake starts no instance for it (`current` stays 0). A missing config is
//   ProvisionConfigNotFound 404.
// - Records every OpenAPI request and every trigger invocation, and injects faults: `fault(next, times)` makes the
//   next OpenAPI requests answer an error or hang; `invocationFault(next, times)` makes the next trigger requests
//   answer an error before reaching an instance.

export interface FcFakeOptions {
  accountId: string;
  region: string;
  credentials: FakeCredentials;
  /** What FC injects as ALIBABA_CLOUD_* into instances of functions with a role. */
  roleCredentials?: FakeCredentials;
  /** Buckets OSS mounts can name. */
  buckets?: Record<string, BucketSource>;
  /** Environment baked into the "image". */
  imageEnv?: Record<string, string>;
  /** At most this many items per list page, whatever limit asks for. */
  maxPageSize?: number;
  maxInstancesPerFunction?: number;
  instanceStartTimeoutMs?: number;
}

export interface RecordedRequest {
  /** The OpenAPI action: CreateFunction, ListFunctions, … */
  action: string;
  method: string;
  path: string;
  query: Record<string, string>;
  /** Lower-case names. */
  headers: Record<string, string>;
  /** The parsed JSON body, if any. */
  body: unknown;
  outcome: number | 'hang';
  /** FC's error code, for an error answer. */
  code?: string;
}

export interface RecordedInvocation {
  functionName: string;
  method: string;
  /** Path and query behind the trigger: /invoke, /sd/sdapi/v1/…. */
  path: string;
  headers: Record<string, string>;
  /** Whether a signature was checked and held (authType function), or the trigger is anonymous. */
  auth: 'signed' | 'anonymous' | 'rejected';
  status: number;
  instanceId?: string;
  /** The client closed the connection before the answer ended. */
  cancelled: boolean;
  code?: string;
}

export type ManagementFault = { status: number; code: string; message?: string } | 'hang';
export type InvocationFault = { status: number; code: string; message?: string };

interface StoredTrigger {
  trigger: Record<string, unknown>;
  urlId: string;
}

interface StoredFunction {
  config: Record<string, unknown>;
  /** PutProvisionConfig's settings for LATEST, when set. */
  provision?: { defaultTarget: number; alwaysAllocateCPU: boolean; alwaysAllocateGPU: boolean };
  revision: number;
  triggers: Map<string, StoredTrigger>;
}

class FcApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const API_VERSION = '2023-03-30';
const GPU_CARDS: Record<string, number> = { 'fc.gpu.tesla.1': 16384, 'fc.gpu.ampere.1': 24576, 'fc.gpu.ada.1': 49152 };
const FUNCTION_NAME = /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/;
const TRIGGER_NAME = /^[A-Za-z_][A-Za-z0-9_-]{0,127}$/;
const HTTP_METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'PATCH', 'OPTIONS'];
const MAX_ENV_BYTES = 4096;
const MAX_BODY = 1024 * 1024;

/** CreateFunctionInput's fields: those the fake serves, and those it knows but does not implement. */
const FUNCTION_FIELDS = new Set([
  'functionName',
  'runtime',
  'handler',
  'description',
  'customContainerConfig',
  'gpuConfig',
  'cpu',
  'memorySize',
  'diskSize',
  'timeout',
  'instanceConcurrency',
  'environmentVariables',
  'instanceLifecycleConfig',
  'internetAccess',
  'role',
  'vpcConfig',
  'nasConfig',
  'ossMountConfig',
]);
const UNIMPLEMENTED_FUNCTION_FIELDS = new Set([
  'code',
  'customDNS',
  'customRuntimeConfig',
  'disableInjectCredentials',
  'disableOndemand',
  'enableLongLiving',
  'idleTimeout',
  'instanceIsolationMode',
  'juiceFsConfig',
  'layers',
  'logConfig',
  'polarFsConfig',
  'resourceGroupId',
  'sessionAffinity',
  'sessionAffinityConfig',
  'tags',
  'tracingConfig',
]);

const invalid = (message: string) => new FcApiError(400, 'InvalidArgument', message);
const provisionNotFound = (name: string) =>
  new FcApiError(404, 'ProvisionConfigNotFound', `function '${name}' has no provisioned config for LATEST`);
const notImplemented = (what: string) =>
  new FcApiError(501, 'NotImplemented', `the FC fake does not implement ${what}`);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isInt = (v: unknown, min: number, max: number) =>
  Number.isInteger(v) && (v as number) >= min && (v as number) <= max;
const isText = (v: unknown) => typeof v === 'string' && v.length > 0;
const isStrings = (v: unknown) => Array.isArray(v) && v.every(isText);
const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
const encodeToken = (name: string) => Buffer.from(name, 'utf8').toString('base64url');

/** Only the listed fields, each checked by `check` (which throws). */
function fieldsOf(value: unknown, where: string, allowed: Record<string, (v: unknown) => boolean>, required: string[]) {
  if (!isObject(value)) throw invalid(`${where} must be an object`);
  for (const key of Object.keys(value)) {
    if (!(key in allowed)) throw invalid(`${where}.${key} is not a known field`);
    if (!allowed[key](value[key])) throw invalid(`${where}.${key} is invalid: ${JSON.stringify(value[key])}`);
  }
  for (const key of required) if (value[key] === undefined) throw invalid(`${where}.${key} is required`);
}

/** The qualifier of a provisioned-config request: LATEST, the one the fake serves (it has no aliases). */
function latestOnly(query: URLSearchParams): string {
  for (const key of query.keys()) if (key !== 'qualifier') throw invalid(`unknown parameter ${key}`);
  const qualifier = query.get('qualifier') ?? 'LATEST';
  if (qualifier !== 'LATEST') throw notImplemented(`the qualifier ${qualifier} (the fake has no aliases)`);
  return qualifier;
}

const absolute = (v: unknown) => typeof v === 'string' && v.startsWith('/');

/** Validates CreateFunctionInput / UpdateFunctionInput fields as FC documents them; `merged` is the result. */
function validateFunction(body: Record<string, unknown>, merged: Record<string, unknown>, create: boolean): void {
  for (const key of Object.keys(body)) {
    if (UNIMPLEMENTED_FUNCTION_FIELDS.has(key)) throw notImplemented(`the function field ${key}`);
    if (!FUNCTION_FIELDS.has(key) || (!create && key === 'functionName')) throw invalid(`${key} is not a known field`);
  }
  if (create) {
    for (const key of ['functionName', 'runtime', 'handler'])
      if (!isText(body[key])) throw invalid(`${key} is required`);
    if (!FUNCTION_NAME.test(String(body.functionName))) {
      throw invalid(
        'functionName must be 1 to 64 letters, digits, _ or -, and must not start with a digit or -: ' +
          String(body.functionName),
      );
    }
  }
  if (merged.runtime !== 'custom-container') throw notImplemented(`runtime ${String(merged.runtime)}`);
  if (body.handler !== undefined && !isText(body.handler)) throw invalid('handler must be a non-empty string');
  if (body.description !== undefined && (typeof body.description !== 'string' || body.description.length > 256)) {
    throw invalid('description must be a string of at most 256 characters');
  }
  if (merged.customContainerConfig === undefined)
    throw invalid('customContainerConfig is required for custom-container');
  if (body.customContainerConfig !== undefined) {
    fieldsOf(
      body.customContainerConfig,
      'customContainerConfig',
      {
        image: isText,
        port: (v) => isInt(v, 1, 65535),
        command: isStrings,
        entrypoint: isStrings,
        resolvedImageUri: () => false,
      },
      ['image', 'port'],
    );
  }
  if (body.gpuConfig !== undefined) {
    fieldsOf(
      body.gpuConfig,
      'gpuConfig',
      { gpuType: (v) => typeof v === 'string' && v in GPU_CARDS, gpuMemorySize: (v) => isInt(v, 1024, 1 << 20) },
      ['gpuType', 'gpuMemorySize'],
    );
    const gpu = body.gpuConfig as { gpuType: string; gpuMemorySize: number };
    if (gpu.gpuMemorySize % 1024 !== 0 || gpu.gpuMemorySize > GPU_CARDS[gpu.gpuType]) {
      throw invalid(`gpuConfig.gpuMemorySize ${gpu.gpuMemorySize} must be a multiple of 1024 within the card's memory`);
    }
  }
  if (body.cpu !== undefined) {
    const cpu = body.cpu;
    if (typeof cpu !== 'number' || cpu < 0.05 || cpu > 16 || Math.abs(cpu * 20 - Math.round(cpu * 20)) > 1e-9) {
      throw invalid(`cpu must be a multiple of 0.05 from 0.05 to 16: ${String(cpu)}`);
    }
  }
  if (
    body.memorySize !== undefined &&
    (!isInt(body.memorySize, 128, 32768) || (body.memorySize as number) % 64 !== 0)
  ) {
    throw invalid(`memorySize must be a multiple of 64 from 128 to 32768: ${String(body.memorySize)}`);
  }
  if (typeof merged.cpu === 'number' && typeof merged.memorySize === 'number') {
    const ratio = merged.memorySize / 1024 / merged.cpu;
    if (ratio < 1 || ratio > 4)
      throw invalid(`memorySize (GB) must be 1 to 4 times cpu: ${merged.memorySize} MB, ${merged.cpu} vCPU`);
  }
  if (body.diskSize !== undefined && body.diskSize !== 512 && body.diskSize !== 10240) {
    throw invalid('diskSize must be 512 or 10240');
  }
  if (body.timeout !== undefined && !isInt(body.timeout, 1, 86400)) throw invalid('timeout must be 1 to 86400');
  if (body.instanceConcurrency !== undefined && !isInt(body.instanceConcurrency, 1, 200)) {
    throw invalid('instanceConcurrency must be 1 to 200');
  }
  if (body.internetAccess !== undefined && typeof body.internetAccess !== 'boolean') {
    throw invalid('internetAccess must be a boolean');
  }
  if (body.environmentVariables !== undefined) {
    const env = body.environmentVariables;
    if (!isObject(env) || !Object.values(env).every((v) => typeof v === 'string')) {
      throw invalid('environmentVariables must map names to strings');
    }
    const bad = Object.keys(env).find((name) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name));
    if (bad !== undefined) throw invalid(`environmentVariables: ${bad} is not a valid name`);
    if (Buffer.byteLength(JSON.stringify(env)) > MAX_ENV_BYTES) {
      throw invalid(`environmentVariables must total at most ${MAX_ENV_BYTES} bytes`);
    }
  }
  if (body.instanceLifecycleConfig !== undefined) {
    const hook = (v: unknown) => {
      fieldsOf(
        v,
        'instanceLifecycleConfig hook',
        { handler: isText, timeout: (t) => isInt(t, 1, 600), command: isStrings },
        ['handler'],
      );
      return true;
    };
    fieldsOf(body.instanceLifecycleConfig, 'instanceLifecycleConfig', { initializer: hook, preStop: hook }, []);
  }
  if (body.role !== undefined && !(typeof body.role === 'string' && /^acs:ram::\d+:role\/\S+$/i.test(body.role))) {
    throw invalid(`role must be a RAM role ARN: ${String(body.role)}`);
  }
  if (body.vpcConfig !== undefined) {
    fieldsOf(
      body.vpcConfig,
      'vpcConfig',
      { vpcId: isText, vSwitchIds: (v) => isStrings(v) && (v as string[]).length > 0, securityGroupId: isText },
      ['vpcId', 'vSwitchIds', 'securityGroupId'],
    );
  }
  if (body.nasConfig !== undefined) {
    const point = (v: unknown) => {
      fieldsOf(
        v,
        'nasConfig.mountPoints[]',
        { serverAddr: isText, mountDir: absolute, enableTLS: (b) => typeof b === 'boolean' },
        ['serverAddr', 'mountDir'],
      );
      return true;
    };
    fieldsOf(
      body.nasConfig,
      'nasConfig',
      {
        userId: (v) => Number.isInteger(v),
        groupId: (v) => Number.isInteger(v),
        mountPoints: (v) => Array.isArray(v) && v.length > 0 && v.every(point),
      },
      ['mountPoints'],
    );
  }
  if (merged.nasConfig !== undefined && merged.vpcConfig === undefined) throw invalid('nasConfig requires vpcConfig');
  if (body.ossMountConfig !== undefined) {
    const point = (v: unknown) => {
      fieldsOf(
        v,
        'ossMountConfig.mountPoints[]',
        {
          bucketName: isText,
          bucketPath: absolute,
          endpoint: isText,
          mountDir: absolute,
          readOnly: (b) => typeof b === 'boolean',
        },
        ['bucketName', 'bucketPath', 'endpoint', 'mountDir'],
      );
      return true;
    };
    fieldsOf(
      body.ossMountConfig,
      'ossMountConfig',
      { mountPoints: (v) => Array.isArray(v) && v.length > 0 && v.every(point) },
      ['mountPoints'],
    );
  }
  if (merged.ossMountConfig !== undefined && merged.role === undefined) throw invalid('ossMountConfig requires a role');
}

interface TriggerSettings {
  authType: 'anonymous' | 'function';
  methods: string[];
  disableURLInternet?: boolean;
}

function parseTriggerConfig(value: unknown): TriggerSettings {
  if (typeof value !== 'string') throw invalid('triggerConfig must be a JSON string');
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw invalid('triggerConfig is not valid JSON');
  }
  if (!isObject(parsed)) throw invalid('triggerConfig must hold an object');
  for (const key of Object.keys(parsed)) {
    if (key === 'corsConfig' || key === 'authConfig') throw notImplemented(`the HTTP trigger's ${key}`);
    if (!['authType', 'methods', 'disableURLInternet'].includes(key))
      throw invalid(`triggerConfig.${key} is not known`);
  }
  if (parsed.authType === 'jwt') throw notImplemented('JWT authentication');
  if (parsed.authType !== 'anonymous' && parsed.authType !== 'function') {
    throw invalid('triggerConfig.authType must be anonymous, function or jwt');
  }
  const methods = parsed.methods;
  if (!Array.isArray(methods) || methods.length === 0 || !methods.every((m) => HTTP_METHODS.includes(m as string))) {
    throw invalid(`triggerConfig.methods must be a non-empty list of ${HTTP_METHODS.join(', ')}`);
  }
  if (parsed.disableURLInternet !== undefined && typeof parsed.disableURLInternet !== 'boolean') {
    throw invalid('triggerConfig.disableURLInternet must be a boolean');
  }
  return parsed as unknown as TriggerSettings;
}

interface Route {
  action: string;
  functionName?: string;
  triggerName?: string;
}

function routeOf(method: string, path: string): Route | undefined {
  const parts = path.split('/').slice(1);
  if (parts[0] !== API_VERSION || parts[1] !== 'functions') return undefined;
  let name: string | undefined;
  let trigger: string | undefined;
  try {
    name = parts[2] === undefined ? undefined : decodeURIComponent(parts[2]);
    trigger = parts[4] === undefined ? undefined : decodeURIComponent(parts[4]);
  } catch {
    return undefined;
  }
  if (parts.length === 2) {
    if (method === 'POST') return { action: 'CreateFunction' };
    if (method === 'GET') return { action: 'ListFunctions' };
  } else if (parts.length === 3) {
    const actions: Record<string, string> = { GET: 'GetFunction', PUT: 'UpdateFunction', DELETE: 'DeleteFunction' };
    if (actions[method]) return { action: actions[method], functionName: name };
  } else if (parts.length === 4 && parts[3] === 'provision-config') {
    const actions: Record<string, string> = {
      PUT: 'PutProvisionConfig',
      GET: 'GetProvisionConfig',
      DELETE: 'DeleteProvisionConfig',
    };
    if (actions[method]) return { action: actions[method], functionName: name };
  } else if (parts.length === 4 && parts[3] === 'triggers') {
    if (method === 'POST') return { action: 'CreateTrigger', functionName: name };
    if (method === 'GET') return { action: 'ListTriggers', functionName: name };
  } else if (parts.length === 5 && parts[3] === 'triggers') {
    const actions: Record<string, string> = { GET: 'GetTrigger', PUT: 'UpdateTrigger', DELETE: 'DeleteTrigger' };
    if (actions[method]) return { action: actions[method], functionName: name, triggerName: trigger };
  }
  return undefined;
}

function headersOf(req: IncomingMessage): Record<string, string> {
  return Object.fromEntries(
    Object.entries(req.headers).map(([name, value]) => [name, Array.isArray(value) ? value.join(', ') : (value ?? '')]),
  );
}

async function readAll(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new FcApiError(413, 'EntityTooLarge', `the request body is over ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export class FcFake {
  readonly requests: RecordedRequest[] = [];
  readonly invocations: RecordedInvocation[] = [];
  private readonly functions = new Map<string, StoredFunction>();
  /** Trigger URL ids: which function's trigger each one serves. */
  private readonly urlIds = new Map<string, { functionName: string; triggerName: string }>();
  private readonly faults: Array<{ fault: ManagementFault; remaining: number; action?: string }> = [];
  private readonly invocationFaults: Array<{ fault: InvocationFault; remaining: number }> = [];
  private readonly nonces = new Map<string, number>();
  private readonly dir = mkdtempSync(join(tmpdir(), 'sdflow-fc-fake-'));
  private readonly pool: FakeInstances;
  private roleCredentials: FakeCredentials | undefined;
  private port = 0;

  private constructor(
    private readonly options: FcFakeOptions,
    private readonly server: Server,
  ) {
    this.roleCredentials = options.roleCredentials;
    this.pool = new FakeInstances({
      dir: this.dir,
      maxPerFunction: options.maxInstancesPerFunction ?? 4,
      startTimeoutMs: options.instanceStartTimeoutMs ?? 60_000,
      imageEnv: options.imageEnv ?? {},
      roleCredentials: () => this.roleCredentials,
      buckets: options.buckets ?? {},
    });
  }

  /**
   * The role's STS credentials rotate, as real ones do before they expire: instances started from now on get the
   * new ones in their environment, and every request to any instance carries them in x-fc-* headers.
   */
  rotateRoleCredentials(next: FakeCredentials): void {
    this.roleCredentials = next;
  }

  static async start(options: FcFakeOptions): Promise<FcFake> {
    const server = createServer();
    const fake = new FcFake(options, server);
    server.on('request', (req, res) => {
      fake.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500).end(String(err));
        else res.destroy();
      });
    });
    server.keepAliveTimeout = 120_000;
    server.requestTimeout = 0;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    fake.port = (server.address() as AddressInfo).port;
    return fake;
  }

  /** Where the adapter points SDFLOW_FC_ENDPOINT. */
  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The next `times` OpenAPI requests (of `action`, if given) answer `fault` instead of being served. */
  fault(next: ManagementFault, times = 1, action?: string): void {
    this.faults.push({ fault: next, remaining: times, action });
  }

  /** The next `times` trigger requests answer `fault` before reaching an instance. */
  invocationFault(next: InvocationFault, times = 1): void {
    this.invocationFaults.push({ fault: next, remaining: times });
  }

  requestsFor(action: string): RecordedRequest[] {
    return this.requests.filter((r) => r.action === action);
  }

  clearRecords(): void {
    this.requests.length = 0;
    this.invocations.length = 0;
  }

  functionNames(): string[] {
    return [...this.functions.keys()].sort();
  }

  /** The function as FC holds it. */
  functionConfig(name: string): Record<string, unknown> | undefined {
    return this.functions.get(name)?.config;
  }

  triggersOf(name: string): Record<string, unknown>[] {
    return [...(this.functions.get(name)?.triggers.values() ?? [])].map((t) => t.trigger);
  }

  /** The function's live instances. */
  instancesOf(name: string): Instance[] {
    return this.pool.of(name);
  }

  /** Every instance started so far, in order. */
  get startedInstances(): Instance[] {
    return this.pool.started;
  }

  /** Deletes a function and its triggers as another tool (the console) would, behind the adapter's back. */
  removeBehindTheBack(name: string): void {
    const fn = this.functions.get(name);
    if (!fn) return;
    for (const trigger of fn.triggers.values()) this.urlIds.delete(trigger.urlId);
    this.functions.delete(name);
    this.pool.deleteFunction(name);
  }

  /** Deletes only the function's triggers, behind the adapter's back. */
  removeTriggersBehindTheBack(name: string): void {
    const fn = this.functions.get(name);
    if (!fn) return;
    for (const trigger of fn.triggers.values()) this.urlIds.delete(trigger.urlId);
    fn.triggers.clear();
  }

  /** Creates a function as another tool would: validated like CreateFunction. */
  createBehindTheBack(body: Record<string, unknown>): void {
    this.createFunction(body);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await this.pool.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  // --- dispatch -------------------------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    if (url.startsWith('/triggers/')) return this.handleTrigger(req, res);
    return this.handleApi(req, res);
  }

  private sendJson(res: ServerResponse, status: number, requestId: string, body?: unknown): void {
    if (body === undefined) {
      res.writeHead(status, { 'x-fc-request-id': requestId, 'content-length': 0 }).end();
      return;
    }
    const text = JSON.stringify(body);
    res
      .writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
        'x-fc-request-id': requestId,
      })
      .end(text);
  }

  private sendError(res: ServerResponse, requestId: string, err: { status: number; code: string; message: string }) {
    this.sendJson(res, err.status, requestId, { Code: err.code, Message: err.message, RequestId: requestId });
  }

  private takeFault(action: string): ManagementFault | undefined {
    const index = this.faults.findIndex((f) => f.action === undefined || f.action === action);
    if (index < 0) return undefined;
    const entry = this.faults[index];
    entry.remaining -= 1;
    if (entry.remaining <= 0) this.faults.splice(index, 1);
    return entry.fault;
  }

  private async handleApi(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = `1-${randomBytes(4).toString('hex')}-${randomBytes(8).toString('hex')}`;
    const rawUrl = req.url ?? '/';
    const parsedUrl = new URL(rawUrl, 'http://fc.invalid');
    const method = req.method ?? 'GET';
    const headers = headersOf(req);
    const route = routeOf(method, parsedUrl.pathname);
    let body: Buffer;
    try {
      body = await readAll(req, MAX_BODY);
    } catch (err) {
      if (err instanceof FcApiError) return this.sendError(res, requestId, err);
      throw err;
    }
    let json: unknown;
    try {
      json = body.length > 0 ? JSON.parse(body.toString('utf8')) : undefined;
    } catch {
      json = body.toString('utf8');
    }
    const record: RecordedRequest = {
      action: route?.action ?? `${method} ${parsedUrl.pathname}`,
      method,
      path: parsedUrl.pathname,
      query: Object.fromEntries(parsedUrl.searchParams),
      headers,
      body: json,
      outcome: 0,
    };
    this.requests.push(record);
    const fail = (err: { status: number; code: string; message: string }) => {
      record.outcome = err.status;
      record.code = err.code;
      this.sendError(res, requestId, err);
    };
    const fault = this.takeFault(record.action);
    if (fault === 'hang') {
      // Never answered: the client's timeout ends it.
      record.outcome = 'hang';
      return;
    }
    if (fault)
      return fail({ status: fault.status, code: fault.code, message: fault.message ?? `injected ${fault.code}` });
    try {
      verifyAcs3({ method, url: rawUrl, headers, body }, this.options.credentials, {
        payload: 'content-header',
        mustSign: ['host'],
        nonces: this.nonces,
      });
      if (!route) throw notImplemented(`${method} ${parsedUrl.pathname}`);
      if (headers['x-acs-action'] !== route.action) {
        throw invalid(`x-acs-action ${String(headers['x-acs-action'])} does not name ${method} ${parsedUrl.pathname}`);
      }
      if (headers['x-acs-version'] !== API_VERSION) throw invalid(`x-acs-version must be ${API_VERSION}`);
      const { status, answer } = this.serve(route, parsedUrl.searchParams, json);
      record.outcome = status;
      this.sendJson(res, status, requestId, answer);
    } catch (err) {
      if (err instanceof FcApiError || err instanceof SignatureError) return fail(err);
      throw err;
    }
  }

  private serve(route: Route, query: URLSearchParams, body: unknown): { status: number; answer?: unknown } {
    const needBody = () => {
      if (!isObject(body)) throw invalid('the request body must be a JSON object');
      return body;
    };
    const name = route.functionName ?? '';
    switch (route.action) {
      case 'CreateFunction':
        return { status: 200, answer: this.createFunction(needBody()) };
      case 'GetFunction':
        for (const key of query.keys()) if (key !== 'qualifier') throw invalid(`unknown parameter ${key}`);
        if ((query.get('qualifier') ?? 'LATEST') !== 'LATEST') throw notImplemented('qualifiers other than LATEST');
        return { status: 200, answer: this.fn(name).config };
      case 'UpdateFunction':
        return { status: 200, answer: this.updateFunction(name, needBody()) };
      case 'DeleteFunction': {
        const fn = this.fn(name);
        if (fn.triggers.size > 0) {
          throw new FcApiError(409, 'FunctionNotEmpty', `function ${name} still has triggers; delete them first`);
        }
        this.functions.delete(name);
        this.pool.deleteFunction(name);
        return { status: 204 };
      }
      case 'ListFunctions':
        return { status: 200, answer: this.listFunctions(query) };
      case 'CreateTrigger':
        return { status: 200, answer: this.createTrigger(name, needBody()) };
      case 'GetTrigger':
        return { status: 200, answer: this.trigger(name, route.triggerName ?? '').trigger };
      case 'UpdateTrigger':
        return { status: 200, answer: this.updateTrigger(name, route.triggerName ?? '', needBody()) };
      case 'DeleteTrigger': {
        const stored = this.trigger(name, route.triggerName ?? '');
        this.urlIds.delete(stored.urlId);
        this.fn(name).triggers.delete(route.triggerName ?? '');
        return { status: 204 };
      }
      case 'PutProvisionConfig':
        return { status: 200, answer: this.putProvision(name, latestOnly(query), needBody()) };
      case 'GetProvisionConfig':
        return { status: 200, answer: this.provisionOf(name, latestOnly(query)) };
      case 'DeleteProvisionConfig': {
        const fn = this.fn(name);
        latestOnly(query);
        if (!fn.provision) throw provisionNotFound(name);
        fn.provision = undefined;
        return { status: 204 };
      }
      case 'ListTriggers': {
        const fn = this.fn(name);
        const page = this.page(query, [...fn.triggers.keys()].sort(), 'prefix');
        return {
          status: 200,
          answer: {
            triggers: page.items.map((t) => fn.triggers.get(t)?.trigger),
            ...(page.nextToken ? { nextToken: page.nextToken } : {}),
          },
        };
      }
      default:
        throw notImplemented(route.action);
    }
  }

  private putProvision(name: string, qualifier: string, body: Record<string, unknown>) {
    const fn = this.fn(name);
    const count = (v: unknown) => isInt(v, 0, 10_000);
    const flag = (v: unknown) => typeof v === 'boolean';
    for (const field of ['scheduledActions', 'targetTrackingPolicies']) {
      if (body[field] !== undefined) throw notImplemented(`PutProvisionConfigInput.${field}`);
    }
    fieldsOf(
      body,
      'body',
      { defaultTarget: count, target: count, alwaysAllocateCPU: flag, alwaysAllocateGPU: flag },
      [],
    );
    const { defaultTarget, target } = body as { defaultTarget?: number; target?: number };
    if (defaultTarget === undefined && target === undefined) throw invalid('body.defaultTarget is required');
    if (defaultTarget !== undefined && target !== undefined && defaultTarget !== target) {
      throw invalid(`body.target (${target}) and body.defaultTarget (${defaultTarget}) differ`);
    }
    fn.provision = {
      defaultTarget: (defaultTarget ?? target) as number,
      alwaysAllocateCPU: (body.alwaysAllocateCPU as boolean | undefined) ?? true,
      alwaysAllocateGPU: (body.alwaysAllocateGPU as boolean | undefined) ?? true,
    };
    return this.provisionOf(name, qualifier);
  }

  /** The function's provisioned config as FC answers it (ProvisionConfig). */
  private provisionOf(name: string, qualifier: string) {
    const fn = this.fn(name);
    if (!fn.provision) throw provisionNotFound(name);
    const { defaultTarget, ...flags } = fn.provision;
    return {
      ...flags,
      defaultTarget,
      target: defaultTarget,
      current: 0,
      functionArn: `${String(fn.config.functionArn)}/${qualifier}`,
    };
  }

  /** The stored provisioned config of a function (undefined when it has none), for tests. */
  provisionConfig(name: string): StoredFunction['provision'] {
    return this.functions.get(name)?.provision;
  }

  private fn(name: string): StoredFunction {
    const fn = this.functions.get(name);
    if (!fn) throw new FcApiError(404, 'FunctionNotFound', `function '${name}' does not exist`);
    return fn;
  }

  private trigger(functionName: string, triggerName: string): StoredTrigger {
    const trigger = this.fn(functionName).triggers.get(triggerName);
    if (!trigger) {
      throw new FcApiError(
        404,
        'TriggerNotFound',
        `trigger '${triggerName}' of function '${functionName}' does not exist`,
      );
    }
    return trigger;
  }

  private createFunction(body: Record<string, unknown>): Record<string, unknown> {
    const defaults = {
      cpu: 0.35,
      memorySize: 512,
      diskSize: 512,
      timeout: 3,
      instanceConcurrency: 1,
      internetAccess: true,
    };
    const merged: Record<string, unknown> = { ...defaults, ...body };
    validateFunction(body, merged, true);
    const name = String(body.functionName);
    if (this.functions.has(name))
      throw new FcApiError(409, 'FunctionAlreadyExists', `function '${name}' already exists`);
    const created = now();
    const config: Record<string, unknown> = {
      ...merged,
      customContainerConfig: this.resolved(merged.customContainerConfig),
      functionId: randomUUID(),
      functionArn: `acs:fc:${this.options.region}:${this.options.accountId}:functions/${name}`,
      createdTime: created,
      lastModifiedTime: created,
      state: 'Active',
      lastUpdateStatus: 'Successful',
    };
    this.functions.set(name, { config, revision: 1, triggers: new Map() });
    this.pool.setFunction({ functionName: name, revision: 1, config });
    return config;
  }

  private updateFunction(name: string, body: Record<string, unknown>): Record<string, unknown> {
    const fn = this.fn(name);
    const merged = { ...fn.config, ...body };
    validateFunction(body, merged, false);
    fn.config = {
      ...merged,
      customContainerConfig: this.resolved(merged.customContainerConfig),
      lastModifiedTime: now(),
    };
    fn.revision += 1;
    this.pool.setFunction({ functionName: name, revision: fn.revision, config: fn.config });
    return fn.config;
  }

  /** FC resolves the image to a digest. */
  private resolved(container: unknown): Record<string, unknown> {
    const c = container as Record<string, unknown>;
    const digest = randomBytes(32).toString('hex');
    return { ...c, resolvedImageUri: `${String(c.image).replace(/[:@].*$/, '')}@sha256:${digest}` };
  }

  private page(query: URLSearchParams, names: string[], prefixParam: string): { items: string[]; nextToken?: string } {
    for (const key of query.keys()) {
      if (!['limit', 'nextToken', prefixParam].includes(key)) throw notImplemented(`the list parameter ${key}`);
    }
    const limitText = query.get('limit') ?? '20';
    const limit = Number(limitText);
    if (!/^\d+$/.test(limitText) || limit < 1 || limit > 100) throw invalid('limit must be 1 to 100');
    const prefix = query.get(prefixParam) ?? '';
    const token = query.get('nextToken');
    let after = '';
    if (token !== null) {
      after = Buffer.from(token, 'base64url').toString('utf8');
      if (token === '' || encodeToken(after) !== token) throw invalid('nextToken is not valid');
    }
    const matching = names.filter((name) => name.startsWith(prefix) && name > after);
    const items = matching.slice(0, Math.min(limit, this.options.maxPageSize ?? 100));
    return {
      items,
      ...(matching.length > items.length ? { nextToken: encodeToken(items[items.length - 1]) } : {}),
    };
  }

  private listFunctions(query: URLSearchParams): Record<string, unknown> {
    const page = this.page(query, this.functionNames(), 'prefix');
    return {
      functions: page.items.map((name) => this.functions.get(name)?.config),
      ...(page.nextToken ? { nextToken: page.nextToken } : {}),
    };
  }

  private createTrigger(functionName: string, body: Record<string, unknown>): Record<string, unknown> {
    const fn = this.fn(functionName);
    for (const key of Object.keys(body)) {
      if (key === 'invocationRole' || key === 'sourceArn') throw notImplemented(`the trigger field ${key}`);
      if (!['triggerName', 'triggerType', 'triggerConfig', 'qualifier', 'description'].includes(key)) {
        throw invalid(`${key} is not a known field`);
      }
    }
    const triggerName = body.triggerName;
    if (typeof triggerName !== 'string' || !TRIGGER_NAME.test(triggerName)) throw invalid('triggerName is invalid');
    if (body.triggerType !== 'http') {
      if (isText(body.triggerType)) throw notImplemented(`${String(body.triggerType)} triggers`);
      throw invalid('triggerType is required');
    }
    if ((body.qualifier ?? 'LATEST') !== 'LATEST') throw notImplemented('qualifiers other than LATEST');
    if (body.description !== undefined && (typeof body.description !== 'string' || body.description.length > 256)) {
      throw invalid('description must be at most 256 characters');
    }
    parseTriggerConfig(body.triggerConfig);
    if (fn.triggers.has(triggerName)) {
      throw new FcApiError(409, 'TriggerAlreadyExists', `trigger '${triggerName}' of '${functionName}' already exists`);
    }
    if ([...fn.triggers.values()].some((t) => t.trigger.triggerType === 'http')) {
      throw invalid(`function ${functionName} already has an HTTP trigger`);
    }
    const urlId = `${functionName.toLowerCase().replace(/_/g, '-')}-${randomBytes(5).toString('hex')}`;
    const created = now();
    const trigger: Record<string, unknown> = {
      triggerId: randomUUID(),
      triggerName,
      triggerType: 'http',
      triggerConfig: body.triggerConfig,
      qualifier: 'LATEST',
      description: body.description ?? '',
      status: 'Enabled',
      createdTime: created,
      lastModifiedTime: created,
      targetArn: String(fn.config.functionArn),
      httpTrigger: {
        urlInternet: `http://127.0.0.1:${this.port}/triggers/${urlId}`,
        urlIntranet: `http://localhost:${this.port}/triggers/${urlId}`,
      },
    };
    fn.triggers.set(triggerName, { trigger, urlId });
    this.urlIds.set(urlId, { functionName, triggerName });
    return trigger;
  }

  private updateTrigger(
    functionName: string,
    triggerName: string,
    body: Record<string, unknown>,
  ): Record<string, unknown> {
    const stored = this.trigger(functionName, triggerName);
    for (const key of Object.keys(body)) {
      if (key === 'invocationRole') throw notImplemented('the trigger field invocationRole');
      if (!['triggerConfig', 'qualifier', 'description'].includes(key)) throw invalid(`${key} is not a known field`);
    }
    if ((body.qualifier ?? 'LATEST') !== 'LATEST') throw notImplemented('qualifiers other than LATEST');
    if (body.triggerConfig !== undefined) parseTriggerConfig(body.triggerConfig);
    stored.trigger = { ...stored.trigger, ...body, lastModifiedTime: now() };
    return stored.trigger;
  }

  // --- HTTP triggers ----------------------------------------------------------------------------------------------

  private async handleTrigger(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = `1-${randomBytes(4).toString('hex')}-${randomBytes(8).toString('hex')}`;
    const rawUrl = req.url ?? '/';
    const match = /^\/triggers\/([^/?]+)(.*)$/.exec(rawUrl);
    const method = req.method ?? 'GET';
    const headers = headersOf(req);
    const target = match ? this.urlIds.get(match[1]) : undefined;
    const rest = match?.[2] || '/';
    const path = rest.startsWith('/') ? rest : `/${rest}`;
    const record: RecordedInvocation = {
      functionName: target?.functionName ?? '',
      method,
      path,
      headers,
      auth: 'rejected',
      status: 0,
      cancelled: false,
    };
    this.invocations.push(record);
    const fail = async (err: { status: number; code: string; message: string }) => {
      for await (const _ of req) {
        // Drain the request before answering.
      }
      record.status = err.status;
      record.code = err.code;
      this.sendError(res, requestId, err);
    };
    const stored = target ? this.functions.get(target.functionName)?.triggers.get(target.triggerName) : undefined;
    if (!target || !stored) {
      return fail({ status: 404, code: 'TriggerNotFound', message: `no HTTP trigger at ${rawUrl.split('?')[0]}` });
    }
    const settings = parseTriggerConfig(stored.trigger.triggerConfig);
    if (!settings.methods.includes(method)) {
      return fail({ status: 405, code: 'MethodNotAllowed', message: `the trigger does not accept ${method}` });
    }
    if (settings.authType === 'function') {
      try {
        verifyAcs3(
          // The path as the client sent it: the trigger's own path, here /triggers/<id>, is part of what it signed.
          { method, url: rawUrl, headers, body: Buffer.alloc(0) },
          this.options.credentials,
          { payload: 'empty', mustSign: ['x-acs-date'] },
        );
        record.auth = 'signed';
      } catch (err) {
        if (err instanceof SignatureError) return fail(err);
        throw err;
      }
    } else {
      record.auth = 'anonymous';
    }
    const injected = this.invocationFaults[0];
    if (injected) {
      injected.remaining -= 1;
      if (injected.remaining <= 0) this.invocationFaults.shift();
      return fail({ ...injected.fault, message: injected.fault.message ?? `injected ${injected.fault.code}` });
    }
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) {
        record.cancelled = true;
        gone.abort();
      }
    });
    let instance: Instance;
    try {
      instance = await this.pool.acquire(target.functionName, gone.signal);
    } catch (err) {
      if (gone.signal.aborted) return;
      return fail({ status: 502, code: 'InstanceStartFailed', message: (err as Error).message });
    }
    record.instanceId = instance.id;
    const config = this.functions.get(target.functionName)?.config ?? {};
    await this.forward(req, res, instance, path, requestId, Number(config.timeout ?? 3), gone.signal, record);
    this.pool.release(instance);
  }

  /** Streams the request to the instance and its answer back; resolves when the exchange is over. */
  private forward(
    req: IncomingMessage,
    res: ServerResponse,
    instance: Instance,
    path: string,
    requestId: string,
    timeoutS: number,
    gone: AbortSignal,
    record: RecordedInvocation,
  ): Promise<void> {
    return new Promise<void>((resolve) => {
      const passed: Record<string, string> = { 'x-fc-request-id': requestId };
      for (const name of ['content-type', 'content-length', 'accept']) {
        if (req.headers[name] !== undefined) passed[name] = String(req.headers[name]);
      }
      const role = this.roleCredentials;
      if (typeof this.functions.get(instance.functionName)?.config.role === 'string' && role) {
        passed['x-fc-access-key-id'] = role.accessKeyId;
        passed['x-fc-access-key-secret'] = role.accessKeySecret;
        if (role.securityToken) passed['x-fc-security-token'] = role.securityToken;
      }
      const upstream = httpRequest({
        host: '127.0.0.1',
        port: instance.port,
        method: req.method,
        path,
        headers: passed,
        agent: false,
      });
      let settled = false;
      const finish = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve();
      };
      // Past the function's timeout FC ends the request.
      const timer = setTimeout(() => {
        upstream.destroy();
        res.destroy();
        finish();
      }, timeoutS * 1000);
      gone.addEventListener(
        'abort',
        () => {
          upstream.destroy();
          finish();
        },
        { once: true },
      );
      upstream.on('error', (err) => {
        if (gone.aborted || res.destroyed) {
          finish();
          return;
        }
        if (!res.headersSent) {
          record.status = 502;
          this.sendError(res, requestId, { status: 502, code: 'FunctionRequestFailed', message: err.message });
        } else {
          res.destroy();
        }
        finish();
      });
      upstream.on('response', (answer) => {
        record.status = answer.statusCode ?? 502;
        const out: Record<string, string> = { 'x-fc-request-id': requestId };
        for (const [name, value] of Object.entries(answer.headers)) {
          if (['connection', 'keep-alive', 'transfer-encoding'].includes(name) || value === undefined) continue;
          out[name] = Array.isArray(value) ? value.join(', ') : value;
        }
        res.writeHead(record.status, out);
        res.flushHeaders();
        answer.on('data', (chunk: Buffer) => res.write(chunk));
        answer.on('end', () => {
          res.end();
          finish();
        });
        answer.on('error', () => {
          res.destroy();
          finish();
        });
      });
      req.pipe(upstream);
    });
  }
}
