import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OpenApiUtil } from '@alicloud/openapi-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { FcError, type FcFunctionRuntime, FcSpecError } from '../../src/platform/functions/fc/runtime.js';
import { signTriggerRequest } from '../../src/platform/functions/fc/signing.js';
import { functionNameFor } from '../../src/platform/functions/naming.js';
import { FunctionNotFoundError, FunctionUnavailableError } from '../../src/platform/functions/port.js';
import { createFunctionRuntime } from '../../src/platform/index.js';
import type { AgentEvent } from '../../src/protocol/events.js';
import type { InvokeRequest } from '../../src/protocol/invoke.js';
import { type FakeCredentials, FcFake, type FcFakeOptions } from './fakes/fc-fake.js';
import { OssFake } from './fakes/oss-fake.js';

// The Function Compute runtime, with the real @alicloud/fc20230330 SDK, against a local FC fake that checks every
// OpenAPI request's and every trigger request's V3 signature with its own implementation of the documented
// algorithm, and whose triggers run real agents (with the simulator) that read and write through an OSS fake.

const ACCOUNT = '1234567890123456';
const BUCKET = 'sdflow-fc-test';
const CREDENTIALS: FakeCredentials = {
  accessKeyId: 'LTAI5tFcFakeAccessKeyId',
  accessKeySecret: 'fc-fake-access-key-secret-0123456789',
};
const IMAGE = 'registry.cn-hangzhou.aliyuncs.com/sdflow/agent:1.0';
const ROLE = `acs:ram::${ACCOUNT}:role/sdflow-fc`;
const VPC = { vpcId: 'vpc-bp1sdflow', vSwitchIds: ['vsw-bp1sdflow'], securityGroupId: 'sg-bp1sdflow' };
const NAS = { mountPoints: [{ serverAddr: '1a2b3c-xyz.cn-hangzhou.nas.aliyuncs.com:/sdflow', mountDir: '/mnt/nas' }] };
const OSS_MOUNT = {
  mountPoints: [
    {
      bucketName: BUCKET,
      bucketPath: '/models',
      endpoint: 'http://oss-cn-hangzhou-internal.aliyuncs.com',
      mountDir: '/mnt/sdflow/objects/models',
      readOnly: true,
    },
  ],
};
const MODELS = ['fc-alpha.safetensors', 'fc-beta.safetensors', 'fc-gamma.safetensors'];
type Env = Record<string, string>;

let oss: OssFake;
let fc: FcFake;
let dataDir: string;
let statsDir: string;

beforeAll(async () => {
  oss = await OssFake.start({ bucket: BUCKET, credentials: CREDENTIALS });
  for (const name of MODELS) oss.seed(`models/stableDiffusion/${name}`, Buffer.alloc(4096, name));
});

afterAll(async () => {
  await oss.close();
});

async function startFc(options: Partial<FcFakeOptions> = {}): Promise<FcFake> {
  return FcFake.start({
    accountId: ACCOUNT,
    region: 'cn-hangzhou',
    credentials: CREDENTIALS,
    roleCredentials: CREDENTIALS,
    buckets: {
      [BUCKET]: { list: (prefix) => oss.keys().filter((k) => k.startsWith(prefix)), read: (k) => oss.stored(k)!.body },
    },
    imageEnv: {
      SDFLOW_SIM_STEP_MS: '20',
      SDFLOW_SIM_LOAD_MS: '100',
      SDFLOW_SIM_VAE_MS: '5',
      SDFLOW_SIM_STATS_DIR: statsDir,
      SDFLOW_SD_PROGRESS_POLL_MS: '50',
    },
    maxPageSize: 2,
    ...options,
  });
}

beforeEach(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'sdflow-fc-test-'));
  statsDir = join(dataDir, 'sim-stats');
  fc = await startFc();
});

afterEach(async () => {
  await fc.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** The deployment's settings for FC (and OSS, which FC's instances use). */
function fcEnv(env: Env = {}): Env {
  return {
    SDFLOW_DATA_DIR: dataDir,
    SDFLOW_OBJECT_STORE: 'oss',
    SDFLOW_OSS_BUCKET: BUCKET,
    SDFLOW_OSS_ENDPOINT: oss.endpoint,
    SDFLOW_OSS_CNAME: '1',
    ALIBABA_CLOUD_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
    ALIBABA_CLOUD_ACCESS_KEY_SECRET: CREDENTIALS.accessKeySecret,
    SDFLOW_FUNCTIONS: 'fc',
    SDFLOW_FC_REGION: 'cn-hangzhou',
    SDFLOW_FC_ACCOUNT_ID: ACCOUNT,
    SDFLOW_FC_ENDPOINT: fc.endpoint,
    SDFLOW_FC_IMAGE: IMAGE,
    SDFLOW_FC_ROLE: ROLE,
    SDFLOW_FC_VPC_CONFIG: JSON.stringify(VPC),
    SDFLOW_FC_NAS_CONFIG: JSON.stringify(NAS),
    SDFLOW_FC_OSS_MOUNT_CONFIG: JSON.stringify(OSS_MOUNT),
    SDFLOW_FC_REQUEST_TIMEOUT_S: '5',
    SDFLOW_FC_MAX_ATTEMPTS: '3',
    ...env,
  };
}

/** Through the factory, as every process builds it. */
const fcRuntime = async (env: Env = {}) => (await createFunctionRuntime(loadConfig(fcEnv(env)))) as FcFunctionRuntime;

const nameOf = (model: string, prefix = '') => functionNameFor(model, prefix);
const envOf = (name: string) => (fc.functionConfig(name)?.environmentVariables ?? {}) as Env;

function txt2img(model: string, params: Record<string, unknown> = {}): InvokeRequest {
  return {
    taskId: `t${randomBytes(6).toString('hex')}`,
    user: 'alice',
    kind: 'txt2img',
    model,
    params: { prompt: 'a lighthouse', steps: 8, width: 256, height: 256, seed: 42, ...params },
  };
}

async function collect(
  runtime: FcFunctionRuntime,
  functionName: string,
  request: InvokeRequest,
): Promise<AgentEvent[]> {
  const events: AgentEvent[] = [];
  for await (const event of runtime.invoke(functionName, request, { signal: new AbortController().signal })) {
    events.push(event);
  }
  return events;
}

function expectResult(events: AgentEvent[]) {
  const last = events.at(-1);
  expect(last?.type, JSON.stringify(events.at(-1))).toBe('result');
  return last as Extract<AgentEvent, { type: 'result' }>;
}

async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, ms = 15_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('ensureFunction', () => {
  it('creates a custom-container GPU function with exactly the configured spec, and its HTTP trigger', async () => {
    const runtime = await fcRuntime();
    const name = nameOf(MODELS[0]);
    await runtime.ensureFunction({ functionName: name, model: MODELS[0], resources: {} });

    const [create] = fc.requestsFor('CreateFunction');
    expect(create).toMatchObject({ method: 'POST', path: '/2023-03-30/functions', outcome: 200 });
    expect(create.body).toEqual({
      functionName: name,
      description: `sdflow checkpoint ${MODELS[0]}`,
      runtime: 'custom-container',
      handler: 'index.handler',
      customContainerConfig: { image: IMAGE, port: 9000, command: ['sdflow', 'agent'] },
      gpuConfig: { gpuType: 'fc.gpu.tesla.1', gpuMemorySize: 16384 },
      cpu: 8,
      memorySize: 32768,
      diskSize: 10240,
      timeout: 1800,
      instanceConcurrency: 1,
      environmentVariables: {
        SD_MODEL: MODELS[0],
        SDFLOW_FUNCTION_NAME: name,
        SDFLOW_AGENT_PORT: '9000',
        SDFLOW_AGENT_HOST: '0.0.0.0',
        SDFLOW_DATA_DIR: '/mnt/sdflow',
        SDFLOW_OBJECT_STORE: 'oss',
        SDFLOW_LOG_LEVEL: 'info',
        SDFLOW_MAX_BODY_MB: '50',
        SDFLOW_OSS_BUCKET: BUCKET,
        SDFLOW_OSS_ENDPOINT: oss.endpoint,
        SDFLOW_OSS_CNAME: '1',
        SDFLOW_OSS_TIMEOUT_S: '60',
        SDFLOW_OSS_MAX_ATTEMPTS: '4',
      },
      instanceLifecycleConfig: { initializer: { handler: 'initialize', timeout: 300 } },
      role: ROLE,
      vpcConfig: VPC,
      nasConfig: NAS,
      ossMountConfig: OSS_MOUNT,
    });
    // No secret travels in the function's environment: instances get credentials from the role.
    expect(JSON.stringify(create.body)).not.toContain(CREDENTIALS.accessKeySecret);
    // Signed as the V3 signature wants it: every x-acs-* header and host signed, the body's hash sent.
    expect(create.headers.authorization).toMatch(
      new RegExp(
        `^ACS3-HMAC-SHA256 Credential=${CREDENTIALS.accessKeyId},SignedHeaders=\\S*host\\S*,Signature=[0-9a-f]{64}$`,
      ),
    );
    expect(create.headers['x-acs-action']).toBe('CreateFunction');
    expect(create.headers['x-acs-version']).toBe('2023-03-30');

    const [trigger] = fc.requestsFor('CreateTrigger');
    expect(trigger).toMatchObject({ method: 'POST', path: `/2023-03-30/functions/${name}/triggers`, outcome: 200 });
    const body = trigger.body as Record<string, string>;
    expect(body).toMatchObject({ triggerName: 'sdflow-http', triggerType: 'http', qualifier: 'LATEST' });
    expect(JSON.parse(body.triggerConfig)).toEqual({
      authType: 'function',
      methods: ['GET', 'POST', 'PUT', 'DELETE'],
      disableURLInternet: false,
    });
    expect(fc.functionNames()).toEqual([name]);
    expect(fc.triggersOf(name)).toHaveLength(1);
    expect(fc.requests.map((r) => r.action)).toEqual(['CreateFunction', 'CreateTrigger']);
  });

  it('takes "already exists" as success, for a second ensure and for two at once, without duplicates', async () => {
    const runtime = await fcRuntime();
    const name = nameOf(MODELS[0]);
    await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
    await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
    expect(fc.requests.map((r) => [r.action, r.outcome, r.code])).toEqual([
      ['CreateFunction', 200, undefined],
      ['CreateTrigger', 200, undefined],
      ['CreateFunction', 409, 'FunctionAlreadyExists'],
      ['GetFunction', 200, undefined],
      ['CreateTrigger', 409, 'TriggerAlreadyExists'],
      ['GetTrigger', 200, undefined],
    ]);

    fc.clearRecords();
    const other = nameOf(MODELS[1]);
    // Two replicas, each with its own client.
    const replicas = [await fcRuntime(), await fcRuntime()];
    await Promise.all(replicas.map((replica) => replica.ensureFunction({ functionName: other, model: MODELS[1] })));
    expect(fc.functionNames()).toEqual([name, other].sort());
    expect(fc.triggersOf(other)).toHaveLength(1);
    expect(fc.requestsFor('CreateFunction').map((r) => r.outcome)).toEqual([200, 409]);
    expect(fc.requestsFor('CreateTrigger').map((r) => r.outcome)).toEqual([200, 409]);
    expect(fc.requestsFor('UpdateFunction')).toEqual([]);
  });

  it('applies batch-update resources over the settings, and updates only when something differs', async () => {
    const runtime = await fcRuntime();
    const name = nameOf(MODELS[0]);
    await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
    const vpc = { vpcId: 'vpc-2', vSwitchIds: ['vsw-2', 'vsw-3'], securityGroupId: 'sg-2' };
    const nas = { userId: 10003, groupId: 10003, mountPoints: [{ serverAddr: 'nas-2:/m', mountDir: '/mnt/m' }] };
    const ossMount = { mountPoints: [{ ...OSS_MOUNT.mountPoints[0], bucketPath: '/models/stableDiffusion' }] };
    const resources = {
      image: 'registry.cn-hangzhou.aliyuncs.com/sdflow/agent:1.1',
      cpu: 4,
      memorySize: 16384,
      gpuMemorySize: 8192,
      instanceType: 'fc.gpu.ampere.1',
      timeout: 900,
      env: { HF_HOME: '/mnt/nas/hf' },
      extraArgs: '--xformers --medvram',
      vpcConfig: vpc,
      nasConfig: nas,
      ossMountConfig: ossMount,
      // Recorded by the platform; FC scales by itself.
      maxInstances: 2,
      keepAliveS: 60,
    };
    fc.clearRecords();
    await runtime.ensureFunction({ functionName: name, model: MODELS[0], resources });
    const [update] = fc.requestsFor('UpdateFunction');
    expect(update).toMatchObject({ method: 'PUT', path: `/2023-03-30/functions/${name}`, outcome: 200 });
    expect(update.body).toMatchObject({
      customContainerConfig: { image: resources.image, port: 9000, command: ['sdflow', 'agent'] },
      gpuConfig: { gpuType: 'fc.gpu.ampere.1', gpuMemorySize: 8192 },
      cpu: 4,
      memorySize: 16384,
      timeout: 900,
      instanceConcurrency: 1,
      vpcConfig: vpc,
      nasConfig: nas,
      ossMountConfig: ossMount,
    });
    const env = (update.body as { environmentVariables: Env }).environmentVariables;
    expect(env).toMatchObject({
      HF_HOME: '/mnt/nas/hf',
      SDFLOW_SD_EXTRA_ARGS: '--xformers --medvram',
      SD_MODEL: MODELS[0],
    });
    expect(fc.functionConfig(name)).toMatchObject({ cpu: 4, memorySize: 16384, timeout: 900 });

    // The same again: nothing differs, nothing is updated, although FC added fields of its own (resolvedImageUri, …).
    fc.clearRecords();
    await runtime.ensureFunction({ functionName: name, model: MODELS[0], resources });
    expect(fc.requestsFor('UpdateFunction')).toEqual([]);

    // A variable dropped from the resources is dropped from the function.
    const { env: _env, ...withoutEnv } = resources;
    await runtime.ensureFunction({ functionName: name, model: MODELS[0], resources: withoutEnv });
    expect(fc.requestsFor('UpdateFunction')).toHaveLength(1);
    expect(envOf(name).HF_HOME).toBeUndefined();

    // Resources FC cannot take are refused before any request, naming the field.
    fc.clearRecords();
    await expect(
      runtime.ensureFunction({ functionName: name, model: MODELS[0], resources: { instanceType: 'fc.gpu.volta.1' } }),
    ).rejects.toThrow(/resources\.instanceType: must be one of fc\.gpu\.tesla\.1/);
    await expect(
      runtime.ensureFunction({ functionName: name, model: MODELS[0], resources: { gpuMemorySize: 20480 } }),
    ).rejects.toBeInstanceOf(FcSpecError);
    expect(fc.requests).toEqual([]);
  });

  it('adopts a function that FC has and the platform does not know, updating what differs', async () => {
    const name = nameOf(MODELS[2]);
    fc.createBehindTheBack({
      functionName: name,
      runtime: 'custom-container',
      handler: 'index.handler',
      customContainerConfig: { image: 'registry.cn-hangzhou.aliyuncs.com/someone/else:0.1', port: 9000 },
      cpu: 2,
      memorySize: 4096,
    });
    await (await fcRuntime()).ensureFunction({ functionName: name, model: MODELS[2] });
    expect(fc.requests.map((r) => [r.action, r.outcome])).toEqual([
      ['CreateFunction', 409],
      ['GetFunction', 200],
      ['UpdateFunction', 200],
      ['CreateTrigger', 200],
    ]);
    expect(fc.functionConfig(name)).toMatchObject({
      customContainerConfig: { image: IMAGE },
      cpu: 8,
      instanceConcurrency: 1,
      environmentVariables: { SD_MODEL: MODELS[2] },
    });
  });

  it('keeps names within FC 3.0 limits: a 20-character prefix fits, a name FC refuses is refused before any call', async () => {
    const prefix = 'abcdefghij0123456789';
    const runtime = await fcRuntime({ SDFLOW_FUNCTION_PREFIX: prefix });
    const name = nameOf(MODELS[0], prefix);
    expect(name.length).toBeLessThanOrEqual(64);
    await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
    expect(fc.functionNames()).toEqual([name]);
    expect((await runtime.listFunctions()).map((f) => f.functionName)).toEqual([name]);

    fc.clearRecords();
    // FC does not take a name starting with a digit or a dash, nor one over 64 characters.
    const digit = nameOf(MODELS[0], '7team');
    await expect(runtime.ensureFunction({ functionName: digit, model: MODELS[0] })).rejects.toThrow(
      /not one FC 3\.0 accepts.*SDFLOW_FUNCTION_PREFIX/,
    );
    const long = `${prefix}_${name}`;
    await expect(runtime.ensureFunction({ functionName: long, model: MODELS[0] })).rejects.toThrow(/takes 1 to 64/);
    await expect(runtime.deleteFunction(long)).rejects.toBeInstanceOf(FcSpecError);
    expect(fc.requests).toEqual([]);
  });
});

describe('provisioned instances: minInstances and pre-warm', () => {
  const provisionPath = (name: string) => `/2023-03-30/functions/${name}/provision-config`;
  const idleMode = { alwaysAllocateCPU: false, alwaysAllocateGPU: false };

  it("maps minInstances to the function's provisioned instances on LATEST, in idle mode", async () => {
    const runtime = await fcRuntime();
    const name = nameOf(MODELS[0]);
    await runtime.ensureFunction({
      functionName: name,
      model: MODELS[0],
      resources: { minInstances: 2, keepAliveS: 5 },
    });

    const puts = fc.requestsFor('PutProvisionConfig');
    expect(puts).toHaveLength(1);
    expect(puts[0]).toMatchObject({
      method: 'PUT',
      path: provisionPath(name),
      query: { qualifier: 'LATEST' },
      outcome: 200,
    });
    expect(puts[0].body).toEqual({ defaultTarget: 2, target: 2, ...idleMode });
    expect(fc.provisionConfig(name)).toEqual({ defaultTarget: 2, ...idleMode });
    // The function itself carries neither setting: FC's CreateFunction would refuse an unknown field.
    expect(fc.requestsFor('CreateFunction')[0].outcome).toBe(200);

    // Back to 0 releases them.
    await runtime.ensureFunction({ functionName: name, model: MODELS[0], resources: { minInstances: 0 } });
    expect(fc.requestsFor('PutProvisionConfig').at(-1)?.body).toEqual({ defaultTarget: 0, target: 0, ...idleMode });
    expect(fc.provisionConfig(name)?.defaultTarget).toBe(0);
  });

  it('leaves the provisioned instances alone when the function sets no minInstances', async () => {
    const runtime = await fcRuntime();
    await runtime.ensureFunction({ functionName: nameOf(MODELS[1]), model: MODELS[1], resources: {} });
    expect(fc.requestsFor('PutProvisionConfig')).toEqual([]);
  });

  it('raises the provisioned target for a burst and lowers it back when asked for the minInstances again', async () => {
    const runtime = await fcRuntime();
    const name = nameOf(MODELS[2]);
    await runtime.ensureFunction({ functionName: name, model: MODELS[2], resources: { minInstances: 1 } });
    await runtime.prewarm(name, 3);
    expect(fc.provisionConfig(name)).toEqual({ defaultTarget: 3, ...idleMode });
    await runtime.prewarm(name, 1);
    expect(fc.provisionConfig(name)).toEqual({ defaultTarget: 1, ...idleMode });
    expect(fc.requestsFor('PutProvisionConfig').map((r) => [r.path, r.outcome])).toEqual(
      Array(3).fill([provisionPath(name), 200]),
    );
  });

  it('answers a pre-warm of a function FC does not have with FunctionNotFoundError', async () => {
    const runtime = await fcRuntime();
    await expect(runtime.prewarm(nameOf('missing.safetensors'), 2)).rejects.toBeInstanceOf(FunctionNotFoundError);
    expect(fc.requestsFor('PutProvisionConfig')[0]).toMatchObject({ outcome: 404, code: 'FunctionNotFound' });
  });
});

describe('listFunctions, deleteFunction and restartInstances', () => {
  it("lists the deployment's functions by prefix, following nextToken across every page", async () => {
    const runtime = await fcRuntime({ SDFLOW_FUNCTION_PREFIX: 'prod-' });
    const models = ['a.safetensors', 'b.safetensors', 'c.safetensors', 'd.safetensors', 'e.safetensors'];
    for (const model of models) await runtime.ensureFunction({ functionName: nameOf(model, 'prod-'), model });
    // Functions of others: another deployment's prefix, and a function that only starts like ours.
    await (await fcRuntime({ SDFLOW_FUNCTION_PREFIX: 'staging-' })).ensureFunction({
      functionName: nameOf('a.safetensors', 'staging-'),
      model: 'a.safetensors',
    });
    fc.createBehindTheBack({
      functionName: 'prod-sd_handmade',
      runtime: 'custom-container',
      handler: 'index.handler',
      customContainerConfig: { image: IMAGE, port: 9000 },
    });
    fc.clearRecords();

    const listed = await runtime.listFunctions();
    expect(listed.map((f) => [f.functionName, f.model]).sort()).toEqual(
      models.map((model) => [nameOf(model, 'prod-'), model]).sort(),
    );
    expect(listed[0].resources).toMatchObject({
      image: IMAGE,
      cpu: 8,
      memorySize: 32768,
      instanceType: 'fc.gpu.tesla.1',
    });
    // Six functions start with prod-sd_, two a page: three pages, each after the first with the previous token.
    const pages = fc.requestsFor('ListFunctions');
    expect(pages).toHaveLength(3);
    expect(pages.every((p) => p.query.prefix === 'prod-sd_' && p.query.limit === '100')).toBe(true);
    expect(pages[0].query.nextToken).toBeUndefined();
    expect(pages[1].query.nextToken).toEqual(expect.any(String));
    expect(pages[2].query.nextToken).not.toBe(pages[1].query.nextToken);
  });

  it('deletes the trigger, then the function; a function already gone is deleted too', async () => {
    const runtime = await fcRuntime();
    const name = nameOf(MODELS[0]);
    await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
    fc.clearRecords();
    await runtime.deleteFunction(name);
    expect(fc.requests.map((r) => [r.action, r.path, r.outcome])).toEqual([
      ['ListTriggers', `/2023-03-30/functions/${name}/triggers`, 200],
      ['DeleteTrigger', `/2023-03-30/functions/${name}/triggers/sdflow-http`, 204],
      ['DeleteFunction', `/2023-03-30/functions/${name}`, 204],
    ]);
    expect(fc.functionNames()).toEqual([]);

    fc.clearRecords();
    await runtime.deleteFunction(name);
    expect(fc.requests.map((r) => [r.action, r.code])).toEqual([['ListTriggers', 'FunctionNotFound']]);

    // A function whose trigger is already gone.
    await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
    fc.removeTriggersBehindTheBack(name);
    await runtime.deleteFunction(name);
    expect(fc.functionNames()).toEqual([]);
  });

  it('restarts by updating the environment, which later ensures keep', async () => {
    const runtime = await fcRuntime();
    const [a, b] = [nameOf(MODELS[0]), nameOf(MODELS[1])];
    await runtime.ensureFunction({ functionName: a, model: MODELS[0] });
    await runtime.ensureFunction({ functionName: b, model: MODELS[1] });
    fc.clearRecords();
    await runtime.restartInstances(a);
    const [update] = fc.requestsFor('UpdateFunction');
    const env = (update.body as { environmentVariables: Env }).environmentVariables;
    expect(Object.keys(update.body as object)).toEqual(['environmentVariables']);
    expect(env).toMatchObject({ SD_MODEL: MODELS[0], SDFLOW_RESTART_AT: expect.any(String) });
    expect(Date.parse(env.SDFLOW_RESTART_AT)).toBeGreaterThan(Date.now() - 10_000);

    // The marker is not a difference to undo.
    fc.clearRecords();
    await runtime.ensureFunction({ functionName: a, model: MODELS[0] });
    expect(fc.requestsFor('UpdateFunction')).toEqual([]);
    await runtime.ensureFunction({ functionName: a, model: MODELS[0], resources: { timeout: 600 } });
    expect(envOf(a).SDFLOW_RESTART_AT).toBe(env.SDFLOW_RESTART_AT);

    fc.clearRecords();
    await runtime.restartInstances();
    expect(fc.requestsFor('UpdateFunction').map((r) => r.path)).toEqual([
      `/2023-03-30/functions/${[a, b].sort()[0]}`,
      `/2023-03-30/functions/${[a, b].sort()[1]}`,
    ]);
    await expect(runtime.restartInstances(nameOf('missing.safetensors'))).rejects.toBeInstanceOf(FunctionNotFoundError);
  });
});

describe('invocation through the HTTP trigger', () => {
  it('streams progress then the result, signed; the fake refuses a tampered or missing signature', async () => {
    const runtime = await fcRuntime();
    const name = nameOf(MODELS[0]);
    await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
    const events = await collect(
      runtime,
      name,
      txt2img(MODELS[0], { batch_size: 2, steps: 30, width: 512, height: 512 }),
    );
    const result = expectResult(events);
    expect(events.some((e) => e.type === 'progress' && e.phase === 'sampling' && e.progress > 0)).toBe(true);
    expect(result.images).toHaveLength(2);
    // The agent wrote the images through OSS, with the role's credentials FC injected.
    for (const key of result.images) expect(oss.stored(key)?.contentType).toBe('image/png');
    const puts = oss.requestsFor('PutObject').map((r) => r.key);
    expect(puts.filter((k) => k.startsWith('images/'))).toEqual(result.images);
    // Live previews, if SD offered any in time, went to OSS too; the agent removed them all when the job ended.
    const previews = puts.filter((k) => k.startsWith('previews/'));
    for (const key of previews) expect(key).toMatch(/^previews\/alice\/t[0-9a-f]+\/\d+\.jpg$/);
    expect(previews.length + result.images.length).toBe(puts.length);
    expect(oss.requestsFor('DeleteObject').map((r) => r.key)).toEqual(expect.arrayContaining(previews));
    for (const key of previews) expect(oss.stored(key)).toBeUndefined();
    for (const e of events) {
      if (e.type === 'progress' && e.currentImage) expect(previews).toContain(e.currentImage);
    }

    const [invocation] = fc.invocations;
    expect(invocation).toMatchObject({
      functionName: name,
      method: 'POST',
      path: '/invoke',
      auth: 'signed',
      status: 200,
    });
    expect(invocation.headers.authorization).toMatch(
      new RegExp(
        `^ACS3-HMAC-SHA256 Credential=${CREDENTIALS.accessKeyId},SignedHeaders=x-acs-date;x-acs-security-token,Signature=[0-9a-f]{64}$`,
      ),
    );
    // One instance, started from the function's configuration: its checkpoint, the mounted models, one request.
    const [instance] = fc.startedInstances;
    expect(instance).toMatchObject({ functionName: name, concurrency: 1 });
    expect(fc.instancesOf(name)).toHaveLength(1);

    // The adapter's trigger signature is the one FC's documentation makes with the SDK's signer.
    const url = new URL(
      `${String((fc.triggersOf(name)[0].httpTrigger as { urlInternet: string }).urlInternet)}/invoke?a=1`,
    );
    const at = new Date();
    const ours = signTriggerRequest('POST', url, CREDENTIALS, at);
    const sdk = OpenApiUtil.getAuthorization(
      {
        method: 'POST',
        pathname: url.pathname,
        query: Object.fromEntries(url.searchParams),
        headers: { 'x-acs-date': ours['x-acs-date'], 'x-acs-security-token': '' },
      } as never,
      'ACS3-HMAC-SHA256',
      '',
      CREDENTIALS.accessKeyId,
      CREDENTIALS.accessKeySecret,
    );
    expect(ours.authorization).toBe(sdk);

    // Replayed with another body it still passes (FC signs no payload), but not with a forged signature, another
    // key, a stale date, or none.
    const base = String((fc.triggersOf(name)[0].httpTrigger as { urlInternet: string }).urlInternet);
    const target = new URL(`${base}/sd/sdapi/v1/sd-models`);
    const good = signTriggerRequest('GET', target, CREDENTIALS);
    expect((await fetch(target, { headers: good })).status).toBe(200);
    const forged = {
      ...good,
      authorization: good.authorization.replace(/Signature=(.)/, (_, c) => `Signature=${c === 'a' ? 'b' : 'a'}`),
    };
    const otherKey = signTriggerRequest('GET', target, { ...CREDENTIALS, accessKeySecret: 'not-the-secret' });
    const stale = signTriggerRequest('GET', target, CREDENTIALS, new Date(Date.now() - 20 * 60_000));
    const otherPath = signTriggerRequest('GET', new URL(`${base}/sd/sdapi/v1/options`), CREDENTIALS);
    for (const [headers, code] of [
      [forged, 'SignatureNotMatch'],
      [otherKey, 'SignatureNotMatch'],
      [stale, 'InvalidTimeStamp.Expired'],
      [otherPath, 'SignatureNotMatch'],
      [{}, 'MissingAuthorization'],
    ] as const) {
      const res = await fetch(target, { headers });
      expect(res.status).toBe(403);
      expect(((await res.json()) as { Code: string }).Code).toBe(code);
    }
  });

  it('closes the connection when the invoke is aborted, and the agent interrupts SD', async () => {
    const runtime = await fcRuntime();
    const name = nameOf(MODELS[0]);
    await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
    const controller = new AbortController();
    let abortedAt = 0;
    await expect(
      (async () => {
        for await (const event of runtime.invoke(name, txt2img(MODELS[0], { steps: 400 }), {
          signal: controller.signal,
        })) {
          if (event.type === 'progress' && event.phase === 'sampling' && event.progress > 0.02 && !abortedAt) {
            abortedAt = Date.now();
            controller.abort();
          }
        }
      })(),
    ).rejects.toThrow();
    expect(abortedAt).toBeGreaterThan(0);
    const interrupted = await waitFor('the simulator to record an interrupted job', () => {
      for (const file of readdirSync(statsDir)) {
        for (const line of readFileSync(join(statsDir, file), 'utf8').split('\n')) {
          if (!line) continue;
          const e = JSON.parse(line) as { event: string; t: number; interrupted?: boolean };
          if (e.event === 'end' && e.interrupted && e.t >= abortedAt) return e;
        }
      }
      return undefined;
    });
    expect(interrupted.t - abortedAt).toBeLessThan(2000);
    expect(fc.invocations.at(-1)).toMatchObject({ path: '/invoke', cancelled: true });
    // The instance serves the next request.
    expectResult(await collect(runtime, name, txt2img(MODELS[0])));
    expect(fc.startedInstances).toHaveLength(1);
  });

  it('sends one request per instance, and reports `starting` while FC starts instances', async () => {
    await fc.close();
    // A checkpoint load of 1.5 s in the initializer: FC answers nothing until the instance is initialized.
    fc = await startFc({
      imageEnv: { SDFLOW_SIM_STEP_MS: '20', SDFLOW_SIM_LOAD_MS: '1500', SDFLOW_SIM_STATS_DIR: statsDir },
    });
    const runtime = await fcRuntime();
    const name = nameOf(MODELS[1]);
    await runtime.ensureFunction({ functionName: name, model: MODELS[1] });
    const [one, two] = await Promise.all([
      collect(runtime, name, txt2img(MODELS[1], { steps: 20 })),
      collect(runtime, name, txt2img(MODELS[1], { steps: 20 })),
    ]);
    expectResult(one);
    expectResult(two);
    expect(one[0]).toMatchObject({ type: 'progress', phase: 'starting', progress: 0 });
    const served = fc.invocations.map((i) => i.instanceId);
    expect(new Set(served).size).toBe(2);
    expect(fc.startedInstances).toHaveLength(2);
  });

  it('passes requests through to SD behind the trigger', async () => {
    const runtime = await fcRuntime();
    const name = nameOf(MODELS[0]);
    await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
    const answer = await runtime.passthrough(name, { method: 'GET', path: '/sdapi/v1/sd-models' });
    expect(answer.status).toBe(200);
    const titles = (JSON.parse(answer.body.toString('utf8')) as { title: string }[]).map((m) => m.title);
    // The mounted bucket's models/: every checkpoint of the bucket.
    expect(titles.map((t) => t.replace(/ \[[0-9a-f]+\]$/, '')).sort()).toEqual([...MODELS].sort());
    expect(fc.invocations.at(-1)).toMatchObject({ method: 'GET', path: '/sd/sdapi/v1/sd-models', auth: 'signed' });
    const missing = await runtime.passthrough(name, { method: 'GET', path: '/sdapi/v1/no-such-route' });
    expect(missing.status).toBe(404);
  });

  it('repairs a function deleted behind its back: FunctionNotFoundError, then ensure recreates it', async () => {
    const runtime = await fcRuntime();
    const name = nameOf(MODELS[0]);
    await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
    expectResult(await collect(runtime, name, txt2img(MODELS[0])));
    const before = fc.triggersOf(name)[0].httpTrigger;

    fc.removeBehindTheBack(name);
    await expect(collect(runtime, name, txt2img(MODELS[0]))).rejects.toBeInstanceOf(FunctionNotFoundError);
    await expect(runtime.passthrough(name, { method: 'GET', path: '/sdapi/v1/sd-models' })).rejects.toBeInstanceOf(
      FunctionNotFoundError,
    );
    fc.clearRecords();
    await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
    expect(fc.requests.map((r) => [r.action, r.outcome])).toEqual([
      ['CreateFunction', 200],
      ['CreateTrigger', 200],
    ]);
    expect(fc.triggersOf(name)[0].httpTrigger).not.toEqual(before);
    expectResult(await collect(runtime, name, txt2img(MODELS[0])));

    // Only the trigger gone: the same repair recreates it.
    fc.removeTriggersBehindTheBack(name);
    await expect(collect(runtime, name, txt2img(MODELS[0]))).rejects.toBeInstanceOf(FunctionNotFoundError);
    await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
    expectResult(await collect(runtime, name, txt2img(MODELS[0])));

    // A runtime that never saw the function learns it is missing from GetTrigger.
    fc.removeBehindTheBack(name);
    await expect(collect(await fcRuntime(), name, txt2img(MODELS[0]))).rejects.toBeInstanceOf(FunctionNotFoundError);
  });

  it('uses the role credentials FC sends with each request, so a long-lived instance outlives its first token', async () => {
    const first = { accessKeyId: 'STS.first', accessKeySecret: 'first-secret', securityToken: 'CAIS-first' };
    const second = { accessKeyId: 'STS.second', accessKeySecret: 'second-secret', securityToken: 'CAIS-second' };
    fc.rotateRoleCredentials(first);
    oss.rotateCredentials(first);
    try {
      const runtime = await fcRuntime();
      const name = nameOf(MODELS[0]);
      await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
      expectResult(await collect(runtime, name, txt2img(MODELS[0])));
      // The role's token rotates and the first one expires: OSS refuses it from now on. The instance keeps running
      // with the first token in its environment.
      fc.rotateRoleCredentials(second);
      oss.rotateCredentials(second);
      const before = oss.requests.length;
      const result = expectResult(await collect(runtime, name, txt2img(MODELS[0])));
      expect(fc.startedInstances).toHaveLength(1);
      for (const key of result.images) expect(oss.stored(key)?.contentType).toBe('image/png');
      const since = oss.requests.slice(before);
      expect(since.filter((r) => r.operation === 'PutObject' && r.key === result.images[0])).toHaveLength(1);
      expect(new Set(since.map((r) => r.headers['x-oss-security-token']))).toEqual(new Set(['CAIS-second']));
    } finally {
      oss.rotateCredentials(CREDENTIALS);
    }
  });

  it('serves later requests on new instances after a restart', async () => {
    const runtime = await fcRuntime();
    const name = nameOf(MODELS[0]);
    await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
    expectResult(await collect(runtime, name, txt2img(MODELS[0])));
    const [first] = fc.startedInstances;
    await runtime.restartInstances(name);
    expectResult(await collect(runtime, name, txt2img(MODELS[0])));
    expect(fc.invocations.map((i) => i.instanceId)).toEqual([first.id, fc.startedInstances[1].id]);
    await waitFor('the old instance to stop', () => !fc.instancesOf(name).some((i) => i.id === first.id));
  });

  it('invokes an anonymous trigger without a signature, and updates a trigger whose auth changed', async () => {
    const anonymous = await fcRuntime({ SDFLOW_FC_TRIGGER_AUTH: 'anonymous' });
    const name = nameOf(MODELS[0]);
    await anonymous.ensureFunction({ functionName: name, model: MODELS[0] });
    expect(JSON.parse(String(fc.triggersOf(name)[0].triggerConfig)).authType).toBe('anonymous');
    expectResult(await collect(anonymous, name, txt2img(MODELS[0])));
    expect(fc.invocations[0].auth).toBe('anonymous');
    expect(fc.invocations[0].headers.authorization).toBeUndefined();

    fc.clearRecords();
    await (await fcRuntime()).ensureFunction({ functionName: name, model: MODELS[0] });
    expect(fc.requests.map((r) => r.action)).toEqual([
      'CreateFunction',
      'GetFunction',
      'CreateTrigger',
      'GetTrigger',
      'UpdateTrigger',
    ]);
    expect(JSON.parse(String(fc.triggersOf(name)[0].triggerConfig)).authType).toBe('function');
    // The anonymous runtime's requests are refused now.
    await expect(collect(anonymous, name, txt2img(MODELS[0]))).rejects.toThrow(/MissingAuthorization \(HTTP 403/);
  });

  it('uses the intranet URL inside the VPC, with the internet URL switched off', async () => {
    const runtime = await fcRuntime({ SDFLOW_FC_INTERNAL: '1' });
    const name = nameOf(MODELS[0]);
    await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
    expect(JSON.parse(String(fc.triggersOf(name)[0].triggerConfig)).disableURLInternet).toBe(true);
    expect((await runtime.passthrough(name, { method: 'GET', path: '/sdapi/v1/samplers' })).status).toBe(200);
    expect(fc.invocations[0].headers.host).toMatch(/^localhost:/);
  });
});

describe('retries and errors', () => {
  it('retries throttling (429 twice), each attempt signed anew', async () => {
    const runtime = await fcRuntime();
    fc.fault({ status: 429, code: 'ResourceThrottled', message: 'Reserve resource exhausted' }, 2);
    const name = nameOf(MODELS[0]);
    await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
    const creates = fc.requestsFor('CreateFunction');
    expect(creates.map((r) => r.outcome)).toEqual([429, 429, 200]);
    expect(new Set(creates.map((r) => r.headers['x-acs-signature-nonce'])).size).toBe(3);
    expect(fc.functionNames()).toEqual([name]);
  });

  it('retries 503 ServiceUnavailable and 500', async () => {
    const runtime = await fcRuntime();
    fc.fault({ status: 503, code: 'ServiceUnavailable' }, 1);
    fc.fault({ status: 500, code: 'InternalServerError' }, 1);
    expect(await runtime.listFunctions()).toEqual([]);
    expect(fc.requestsFor('ListFunctions').map((r) => r.outcome)).toEqual([503, 500, 200]);
  });

  it('times out a request that hangs, and retries it', async () => {
    const runtime = await fcRuntime({ SDFLOW_FC_REQUEST_TIMEOUT_S: '1' });
    fc.fault('hang', 1);
    const started = Date.now();
    expect(await runtime.listFunctions()).toEqual([]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(fc.requestsFor('ListFunctions').map((r) => r.outcome)).toEqual(['hang', 200]);
  });

  it('reports throttling that does not pass after the configured attempts', async () => {
    const runtime = await fcRuntime();
    fc.fault({ status: 503, code: 'ServiceUnavailable', message: 'try later' }, 10);
    const err = (await runtime.listFunctions().catch((e: unknown) => e)) as FcError;
    expect(err).toBeInstanceOf(FcError);
    expect(err).toMatchObject({ operation: 'ListFunctions', code: 'ServiceUnavailable', status: 503, attempts: 3 });
    expect(err.message).toMatch(
      /^FC ListFunctions failed after 3 attempts: ServiceUnavailable \(HTTP 503, request id 1-[0-9a-f-]+\): try later$/,
    );
    expect(fc.requestsFor('ListFunctions')).toHaveLength(3);
  });

  it('does not retry a wrong secret, and names the operation, function, code and request id', async () => {
    const runtime = await fcRuntime({ ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'not-the-secret' });
    const name = nameOf(MODELS[0]);
    const err = (await runtime
      .ensureFunction({ functionName: name, model: MODELS[0] })
      .catch((e: unknown) => e)) as FcError;
    expect(err).toBeInstanceOf(FcError);
    expect(err).toMatchObject({
      operation: 'CreateFunction',
      functionName: name,
      code: 'SignatureNotMatch',
      status: 403,
      attempts: 1,
    });
    expect(err.message).toContain(
      `FC CreateFunction of ${name} failed after 1 attempt: SignatureNotMatch (HTTP 403, request id ${err.requestId})`,
    );
    expect(fc.requests).toHaveLength(1);
    expect(fc.functionNames()).toEqual([]);
  });

  it('does not retry an unknown access key, nor a request FC finds invalid', async () => {
    const unknown = await fcRuntime({ ALIBABA_CLOUD_ACCESS_KEY_ID: 'LTAI5tSomebodyElse' });
    await expect(unknown.listFunctions()).rejects.toMatchObject({
      code: 'InvalidAccessKeyId',
      status: 403,
      attempts: 1,
    });
    expect(fc.requests).toHaveLength(1);

    fc.clearRecords();
    // 0.33 vCPU is not a multiple of 0.05: FC answers InvalidArgument.
    const invalid = (await fcRuntime()).ensureFunction({
      functionName: nameOf(MODELS[0]),
      model: MODELS[0],
      resources: { cpu: 0.33 },
    });
    await expect(invalid).rejects.toMatchObject({ code: 'InvalidArgument', status: 400, attempts: 1 });
    await expect(invalid).rejects.toThrow(/cpu must be a multiple of 0\.05/);
    expect(fc.requests).toHaveLength(1);
  });

  it('retries an invoke the gateway refused before it started (502, 504), never once it streamed', async () => {
    const runtime = await fcRuntime();
    const name = nameOf(MODELS[0]);
    await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
    fc.invocationFault({ status: 502, code: 'BadGateway' }, 1);
    fc.invocationFault({ status: 504, code: 'GatewayTimeout' }, 1);
    expectResult(await collect(runtime, name, txt2img(MODELS[0])));
    expect(fc.invocations.map((i) => i.status)).toEqual([502, 504, 200]);

    fc.clearRecords();
    fc.invocationFault({ status: 503, code: 'ResourceExhausted' }, 3);
    const unavailable = collect(runtime, name, txt2img(MODELS[0]));
    await expect(unavailable).rejects.toBeInstanceOf(FunctionUnavailableError);
    await expect(unavailable).rejects.toThrow(/failed after 3 attempts: ResourceExhausted \(HTTP 503, request id 1-/);

    // Refused outright: reported at once.
    fc.clearRecords();
    fc.invocationFault({ status: 403, code: 'AccessDenied', message: 'the caller may not invoke' }, 1);
    const refused = collect(runtime, name, txt2img(MODELS[0]));
    await expect(refused).rejects.toBeInstanceOf(FcError);
    await expect(refused).rejects.toThrow(/FC Invoke of .* failed after 1 attempt: AccessDenied \(HTTP 403/);
    expect(fc.invocations).toHaveLength(1);

    // An instance that dies mid-stream ends the invoke; the adapter does not send it again.
    fc.clearRecords();
    const controller = new AbortController();
    const broken = (async () => {
      for await (const event of runtime.invoke(name, txt2img(MODELS[0], { steps: 400 }), {
        signal: controller.signal,
      })) {
        if (event.type === 'progress' && event.progress > 0.02) {
          for (const instance of fc.instancesOf(name)) process.kill(-instance.pid, 'SIGKILL');
        }
      }
    })();
    await expect(broken).rejects.toBeInstanceOf(FunctionUnavailableError);
    await expect(broken).rejects.toMatchObject({ fault: 'crash' });
    expect(fc.invocations).toHaveLength(1);
  });

  it('reports an instance that FC could not start as a start fault, at once', async () => {
    const runtime = await fcRuntime();
    const name = nameOf(MODELS[0]);
    await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
    fc.clearRecords();
    fc.invocationFault(
      { status: 412, code: 'CAExited', message: 'The function either cannot be started or exited' },
      1,
    );
    const failed = collect(runtime, name, txt2img(MODELS[0]));
    await expect(failed).rejects.toBeInstanceOf(FunctionUnavailableError);
    await expect(failed).rejects.toMatchObject({ fault: 'start', message: expect.stringContaining('CAExited') });
    expect(fc.invocations).toHaveLength(1);
    // A gateway refusal is no fault of the checkpoint's.
    fc.invocationFault({ status: 503, code: 'ResourceExhausted' }, 3);
    const unavailable = collect(runtime, name, txt2img(MODELS[0]));
    await expect(unavailable).rejects.not.toHaveProperty('fault', 'start');
  });
});

describe('STS credentials', () => {
  it('sends the security token with every OpenAPI request and signs it into trigger requests', async () => {
    await fc.close();
    const sts = { ...CREDENTIALS, securityToken: 'CAIS-fc-sts-token' };
    fc = await startFc({ credentials: sts });
    const runtime = await fcRuntime({ ALIBABA_CLOUD_SECURITY_TOKEN: sts.securityToken });
    const name = nameOf(MODELS[0]);
    await runtime.ensureFunction({ functionName: name, model: MODELS[0] });
    expect((await runtime.passthrough(name, { method: 'GET', path: '/sdapi/v1/samplers' })).status).toBe(200);
    expect(fc.requests.every((r) => r.headers['x-acs-security-token'] === sts.securityToken)).toBe(true);
    expect(fc.invocations[0]).toMatchObject({ auth: 'signed', status: 200 });
    expect(fc.invocations[0].headers['x-acs-security-token']).toBe(sts.securityToken);

    // Without the token, FC refuses.
    await expect((await fcRuntime()).listFunctions()).rejects.toMatchObject({
      code: 'InvalidSecurityToken',
      status: 403,
    });
  });
});

describe('configuration', () => {
  it('names every missing setting, and what FC needs of the others', async () => {
    const build = (env: Env) => createFunctionRuntime(loadConfig({ SDFLOW_DATA_DIR: dataDir, ...env }));
    await expect(build({ SDFLOW_FUNCTIONS: 'fc', SDFLOW_OBJECT_STORE: 'oss' })).rejects.toThrow(
      /needs SDFLOW_FC_REGION and SDFLOW_FC_ACCOUNT_ID \(or SDFLOW_FC_ENDPOINT\), SDFLOW_FC_IMAGE, ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET$/,
    );
    await expect(build({ ...fcEnv(), SDFLOW_OBJECT_STORE: 'local' })).rejects.toThrow(/needs SDFLOW_OBJECT_STORE=oss/);
    await expect(build(fcEnv({ SDFLOW_FC_GPU_MEMORY_MB: '32768' }))).rejects.toThrow(ConfigError);
    await expect(build(fcEnv({ SDFLOW_FC_GPU_MEMORY_MB: '32768' }))).rejects.toThrow(
      /exceeds the 16384 MB of a fc\.gpu\.tesla\.1 card/,
    );
    await expect(build(fcEnv({ SDFLOW_FC_VPC_CONFIG: '' }))).rejects.toThrow(
      /SDFLOW_FC_NAS_CONFIG needs SDFLOW_FC_VPC_CONFIG/,
    );
    await expect(build(fcEnv({ SDFLOW_FC_ROLE: '' }))).rejects.toThrow(
      /SDFLOW_FC_OSS_MOUNT_CONFIG needs SDFLOW_FC_ROLE/,
    );
    expect(() => loadConfig(fcEnv({ SDFLOW_FC_VPC_CONFIG: '{"vpcId": "vpc-1"' }))).toThrow(
      /SDFLOW_FC_VPC_CONFIG: is not valid JSON/,
    );
    expect(() => loadConfig(fcEnv({ SDFLOW_FC_OSS_MOUNT_CONFIG: '{"mountPoints": [{"bucketName": "b"}]}' }))).toThrow(
      /SDFLOW_FC_OSS_MOUNT_CONFIG\.mountPoints\.0\.bucketPath/,
    );
    expect(() => loadConfig(fcEnv({ SDFLOW_FC_GPU_TYPE: 'fc.gpu.volta.1' }))).toThrow(
      /SDFLOW_FC_GPU_TYPE: must be one of/,
    );
  });

  it('reaches the regional endpoint of the account without an override', async () => {
    const runtime = await fcRuntime({
      SDFLOW_FC_ENDPOINT: '',
      SDFLOW_FC_REQUEST_TIMEOUT_S: '1',
      SDFLOW_FC_MAX_ATTEMPTS: '1',
    });
    // Unreachable from here: the error names the host it tried.
    const err = (await runtime.listFunctions().catch((e: unknown) => e)) as FcError;
    expect(err).toBeInstanceOf(FcError);
    expect(err.message).toContain(`${ACCOUNT}.cn-hangzhou.fc.aliyuncs.com`);
  });
});
