import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';

// Every setting sdflow reads, with its environment variable and default. This is the only place that reads
// process.env for configuration; everything else receives a Config.

const int = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);
const num = (def: number, min = 0) => z.coerce.number().min(min).default(def);
const bool = (def: boolean) =>
  z
    .union([z.boolean(), z.string()])
    .default(def)
    .transform((v) => (typeof v === 'boolean' ? v : ['1', 'true', 'yes', 'on'].includes(v.toLowerCase())));
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

/** A1111 path prefixes the API passes through to an agent besides /sdapi/v1/ and /controlnet/ (comma-separated). */
const passthroughPrefixes = z
  .string()
  .default('')
  .transform((v) =>
    v
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean),
  )
  .pipe(
    z.array(
      z
        .string()
        .regex(/^\/[A-Za-z0-9._~-]+(\/[A-Za-z0-9._~-]+)*\/?$/, 'each prefix is a path such as /agent-scheduler/v1/')
        .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), 'a prefix must not hold . or .. segments')
        .transform((p) => (p.endsWith('/') ? p : `${p}/`)),
    ),
  );

// Function Compute 3.0 settings given as JSON (SDFLOW_FC_*_CONFIG, SDFLOW_FC_ENV, SDFLOW_FC_COMMAND): FC's own field
// names, checked here so that a mistake names the variable instead of failing at the first CreateFunction.

/** FC 3.0's GPU types and the GPU memory (MB) of each card: T4, A10 and an Ada Lovelace card with 48 GB. */
export const FC_GPU_TYPES = { 'fc.gpu.tesla.1': 16384, 'fc.gpu.ampere.1': 24576, 'fc.gpu.ada.1': 49152 } as const;
export type FcGpuType = keyof typeof FC_GPU_TYPES;
const gpuTypeNames = Object.keys(FC_GPU_TYPES) as [FcGpuType, ...FcGpuType[]];
export const fcGpuTypeSchema = z.enum(gpuTypeNames, { error: `must be one of ${gpuTypeNames.join(', ')}` });

const absoluteDir = z.string().regex(/^\/[^\0]*$/, 'must be an absolute path');
const nonEmpty = z.string().min(1, 'must not be empty');

export const fcVpcConfigSchema = z.strictObject({
  vpcId: nonEmpty,
  vSwitchIds: z.array(nonEmpty).min(1, 'must name at least one vSwitch'),
  securityGroupId: nonEmpty,
});
export const fcNasConfigSchema = z.strictObject({
  userId: z.number().int().optional(),
  groupId: z.number().int().optional(),
  mountPoints: z
    .array(z.strictObject({ serverAddr: nonEmpty, mountDir: absoluteDir, enableTLS: z.boolean().optional() }))
    .min(1, 'must hold at least one mount point'),
});
export const fcOssMountConfigSchema = z.strictObject({
  mountPoints: z
    .array(
      z.strictObject({
        bucketName: nonEmpty,
        bucketPath: z.string().regex(/^\//, 'must start with /'),
        endpoint: nonEmpty,
        mountDir: absoluteDir,
        readOnly: z.boolean().optional(),
      }),
    )
    .min(1, 'must hold at least one mount point'),
});
export const fcEnvSchema = z
  .record(z.string(), z.string({ error: 'must be a string' }), { error: 'must be an object of NAME: "value"' })
  .superRefine((vars, ctx) => {
    for (const name of Object.keys(vars)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        ctx.addIssue({ code: 'custom', path: [name], message: 'is not a valid environment variable name' });
      }
    }
  });
const fcArgv = z.array(nonEmpty, { error: 'must be an array of strings' }).min(1, 'must not be empty');

/** A setting holding JSON: parsed, then checked against `schema`. Unset or blank is undefined. */
const jsonSetting = <T extends z.ZodType>(schema: T) =>
  optionalString
    .transform((v, ctx) => {
      if (v === undefined) return undefined;
      try {
        return JSON.parse(v) as unknown;
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: `is not valid JSON (${(err as Error).message})` });
        return z.NEVER;
      }
    })
    .pipe(schema.optional());

/**
 * The command that starts the agent's WebUI (SDFLOW_SD_COMMAND), as an argv: a JSON array of strings is run as is; any
 * other text is a command line for `/bin/sh -c` (write `exec` before the WebUI so that signals reach it).
 */
const sdCommand = optionalString.transform((v, ctx) => {
  if (v === undefined) return undefined;
  if (!v.startsWith('[')) return ['/bin/sh', '-c', v];
  let argv: unknown;
  try {
    argv = JSON.parse(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `is not valid JSON (${(err as Error).message})` });
    return z.NEVER;
  }
  const parsed = fcArgv.safeParse(argv);
  if (!parsed.success) {
    ctx.addIssue({ code: 'custom', message: 'a JSON command must be a non-empty array of non-empty strings' });
    return z.NEVER;
  }
  return parsed.data;
});

/** The environment variables, as the schema sees them. Keys are env names so errors name the variable to fix. */
const envSchema = z.object({
  HOST: z.string().default('127.0.0.1'),
  PORT: int(8080, 0),
  SDFLOW_PUBLIC_URL: optionalString,
  SDFLOW_DATA_DIR: z.string().default('./.sdflow'),
  SDFLOW_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  TEMPORAL_ADDRESS: z.string().default('127.0.0.1:7233'),
  TEMPORAL_NAMESPACE: z.string().default('default'),
  TEMPORAL_TLS: bool(false),
  TEMPORAL_TLS_CERT: optionalString,
  TEMPORAL_TLS_KEY: optionalString,
  TEMPORAL_TLS_CA: optionalString,
  TEMPORAL_TLS_SERVER_NAME: optionalString,
  TEMPORAL_API_KEY: optionalString,
  SDFLOW_TEMPORAL_UI_PORT: int(8233, 0),
  SDFLOW_TEMPORAL_HTTP_PORT: int(7243, 0),
  SDFLOW_TASK_QUEUE: z.string().default('sdflow'),
  SDFLOW_DEPLOYMENT: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,32}$/, 'letters, digits, _ and -, at most 32')
    .default('default'),

  SDFLOW_MAX_CONCURRENCY: int(4, 1),
  SDFLOW_FUNCTION_MAX_INSTANCES: int(4, 1),
  SDFLOW_KEEP_ALIVE_S: num(180, 0),
  SDFLOW_SYNC_TIMEOUT_S: num(600, 0),
  SDFLOW_A1111_SYNC_TIMEOUT_S: z.preprocess((v) => (v === '' ? undefined : v), z.coerce.number().min(1).optional()),
  SDFLOW_TASK_DEADLINE_S: num(1800, 1),
  SDFLOW_MODEL_BUSY_RETRY_S: num(5, 0.1),
  SDFLOW_WORKFLOW_EXECUTION_TIMEOUT_S: num(86400, 60),
  SDFLOW_MAX_BODY_MB: num(50, 0.001),
  SDFLOW_REQUEST_RECEIVE_TIMEOUT_S: num(3600, 1),
  SDFLOW_URL_TTL_S: int(3600, 1),
  SDFLOW_URL_SECRET: optionalString,
  SDFLOW_QUERY_TIMEOUT_MS: int(2000, 100),
  SDFLOW_QUEUE_POSITION_MAX_AGE_MS: int(500, 0),
  SDFLOW_CANCEL_WAIT_S: num(5, 0),
  SDFLOW_PASSTHROUGH_PREFIXES: passthroughPrefixes,

  SDFLOW_INVOKE_HEARTBEAT_TIMEOUT_S: num(5, 1),
  SDFLOW_INVOKE_IDLE_TIMEOUT_S: num(120, 1),
  SDFLOW_INVOKE_MAX_ATTEMPTS: int(3, 1),
  SDFLOW_INVOKE_RETRY_INITIAL_S: num(1, 0.1),
  SDFLOW_ACTIVITY_MAX_ATTEMPTS: int(10, 1),
  SDFLOW_PROGRESS_SIGNAL_MS: int(1000, 100),
  SDFLOW_WORKER_SHUTDOWN_GRACE_S: num(10, 0),
  SDFLOW_MAX_HEARTBEAT_THROTTLE_S: num(1, 0.1),
  SDFLOW_SEMAPHORE_LEASE_CHECK_S: num(30, 0.5),
  SDFLOW_SEMAPHORE_CAN_AFTER_GRANTS: int(300, 1),
  SDFLOW_RECONCILE_PERIOD_S: num(60, 1),
  SDFLOW_RECONCILE_GRACE_S: num(120, 0),

  SDFLOW_FUNCTION_PREFIX: z
    .string()
    .regex(/^[a-z0-9_-]{0,20}$/, 'lower-case letters, digits, _ and -, at most 20')
    .default(''),
  SDFLOW_RUNTIME_HOST: z.string().default('127.0.0.1'),
  SDFLOW_RUNTIME_PORT: int(8190, 0),
  SDFLOW_RUNTIME_URL: optionalString,
  SDFLOW_INSTANCE_START_TIMEOUT_S: num(120, 1),
  SDFLOW_INSTANCE_QUEUE_TIMEOUT_S: num(600, 1),

  SDFLOW_AGENT_PORT: int(0, 0),
  SDFLOW_SD_URL: optionalString,
  SDFLOW_SD_COMMAND: sdCommand,
  SDFLOW_SD_START_TIMEOUT_S: num(120, 1),
  SDFLOW_SD_PROGRESS_POLL_MS: int(250, 20),
  SDFLOW_SD_GENERATE_TIMEOUT_S: num(7200, 1),
  SDFLOW_INTERRUPT_POLL_MS: int(1000, 50),
  SDFLOW_PREVIEW_INTERVAL_MS: int(2000, 0),
  SD_MODEL: optionalString,
  SDFLOW_SD_OPTIONS: jsonSetting(z.record(z.string(), z.unknown())),

  SDFLOW_SIM_PORT: int(7860, 0),
  SDFLOW_SIM_STEP_MS: num(65, 0),
  SDFLOW_SIM_LOAD_MS: num(5000, 0),
  SDFLOW_SIM_VAE_MS: num(100, 0),
  SDFLOW_SIM_STATS_DIR: optionalString,

  SDFLOW_OBJECT_STORE: z.enum(['local', 'oss']).default('local'),
  SDFLOW_META_STORE: z.enum(['sqlite', 'tablestore']).default('sqlite'),
  SDFLOW_FUNCTIONS: z.enum(['local', 'fc', 'static']).default('local'),
  SDFLOW_STATIC_POOL_FILE: optionalString,
  SDFLOW_STATIC_LEASE_TTL_S: num(30, 1),

  // Alibaba Cloud. Credentials come from the standard ALIBABA_CLOUD_* environment, never from files in the repo.
  ALIBABA_CLOUD_ACCESS_KEY_ID: optionalString,
  ALIBABA_CLOUD_ACCESS_KEY_SECRET: optionalString,
  ALIBABA_CLOUD_SECURITY_TOKEN: optionalString,
  SDFLOW_OSS_REGION: optionalString,
  SDFLOW_OSS_BUCKET: optionalString,
  SDFLOW_OSS_ENDPOINT: optionalString,
  // SDFLOW_OSS_ENDPOINT is a custom domain bound to the bucket (a CNAME), not a regional OSS endpoint.
  SDFLOW_OSS_CNAME: bool(false),
  SDFLOW_OSS_INTERNAL: bool(false),
  SDFLOW_OSS_PART_SIZE_MB: num(16, 0.1),
  SDFLOW_OSS_MULTIPART_THRESHOLD_MB: num(64, 0.1),
  SDFLOW_OSS_TIMEOUT_S: num(60, 1),
  SDFLOW_OSS_MAX_ATTEMPTS: int(4, 1),
  SDFLOW_TABLESTORE_ENDPOINT: optionalString,
  SDFLOW_TABLESTORE_INSTANCE: optionalString,
  SDFLOW_TABLESTORE_TABLE_PREFIX: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]{0,40}$/, 'letters, digits and _, starting with a letter or _, at most 41')
    .optional(),
  SDFLOW_TABLESTORE_TIMEOUT_S: num(30, 1),
  SDFLOW_TABLESTORE_MAX_ATTEMPTS: int(4, 1),
  // Function Compute 3.0 (SDFLOW_FUNCTIONS=fc). The endpoint is <account>.<region>[-internal].fc.aliyuncs.com unless
  // SDFLOW_FC_ENDPOINT overrides it (a URL; its scheme picks http or https).
  SDFLOW_FC_REGION: optionalString,
  SDFLOW_FC_ACCOUNT_ID: optionalString.pipe(
    z
      .string()
      .regex(/^\d{1,32}$/, 'the Alibaba Cloud account id (digits)')
      .optional(),
  ),
  SDFLOW_FC_ENDPOINT: optionalString,
  SDFLOW_FC_INTERNAL: bool(false),
  SDFLOW_FC_IMAGE: optionalString,
  SDFLOW_FC_PORT: int(9000, 1).pipe(z.number().max(65535, 'must be a TCP port')),
  SDFLOW_FC_COMMAND: jsonSetting(fcArgv),
  SDFLOW_FC_ENTRYPOINT: jsonSetting(fcArgv),
  SDFLOW_FC_GPU_TYPE: fcGpuTypeSchema.default('fc.gpu.tesla.1'),
  SDFLOW_FC_GPU_MEMORY_MB: int(16384, 1024),
  SDFLOW_FC_CPU: num(8, 0.05),
  SDFLOW_FC_MEMORY_MB: int(32768, 128),
  SDFLOW_FC_DISK_MB: z.coerce
    .number()
    .refine((v) => v === 512 || v === 10240, 'must be 512 or 10240')
    .default(10240),
  SDFLOW_FC_FUNCTION_TIMEOUT_S: int(1800, 1),
  SDFLOW_FC_INITIALIZER_TIMEOUT_S: int(300, 1),
  SDFLOW_FC_ROLE: optionalString.pipe(
    z
      .string()
      .regex(/^acs:ram::\d+:role\/\S+$/, 'a RAM role ARN, acs:ram::<account>:role/<name>')
      .optional(),
  ),
  SDFLOW_FC_VPC_CONFIG: jsonSetting(fcVpcConfigSchema),
  SDFLOW_FC_NAS_CONFIG: jsonSetting(fcNasConfigSchema),
  SDFLOW_FC_OSS_MOUNT_CONFIG: jsonSetting(fcOssMountConfigSchema),
  SDFLOW_FC_AGENT_DATA_DIR: absoluteDir.default('/mnt/sdflow'),
  SDFLOW_FC_ENV: jsonSetting(fcEnvSchema),
  SDFLOW_FC_TRIGGER_AUTH: z.enum(['function', 'anonymous']).default('function'),
  SDFLOW_FC_REQUEST_TIMEOUT_S: num(30, 1),
  SDFLOW_FC_MAX_ATTEMPTS: int(4, 1),

  SDFLOW_API_KEYS: optionalString,
  SDFLOW_API_KEYS_FILE: optionalString,
  SDFLOW_ALLOW_INSECURE: bool(false),
  SDFLOW_KEY_RATE_PER_MIN: int(600, 0),
  SDFLOW_KEY_MAX_QUEUED: int(100, 0),
  SDFLOW_QUEUE_RETRY_AFTER_S: int(10, 1),

  SDFLOW_DEMO_MODELS: bool(true),
  SDFLOW_DEFAULT_MODEL: optionalString,
  SDFLOW_MAX_MODEL_UPLOAD_MB: num(20480, 0.001),
  SDFLOW_REGISTRATION_SETTLE_WAIT_S: num(15, 0),

  SDFLOW_MAX_WIDTH: int(2048, 8),
  SDFLOW_MAX_HEIGHT: int(2048, 8),
  SDFLOW_MAX_STEPS: int(500, 1),
  SDFLOW_MAX_IMAGES_PER_TASK: int(16, 1),
  SDFLOW_MAX_PROMPT_CHARS: int(8000, 1),
  SDFLOW_MAX_INPUT_IMAGES: int(8, 1),
  SDFLOW_MAX_INPUT_IMAGE_MB: num(20, 0.001),
  SDFLOW_MAX_INPUT_PIXELS: int(4096 * 4096, 1),
});

export type Env = z.input<typeof envSchema>;

function loadFile(path: string): Record<string, string> {
  const raw = JSON.parse(readFileSync(path, 'utf8')) as unknown;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new Error(`config file ${path} must hold a JSON object of SETTING: value`);
  }
  return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, String(v)]));
}

export class ConfigError extends Error {}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** A WebUI the agent starts runs on the agent's own machine: it answers at a loopback SDFLOW_SD_URL. */
function checkSdCommand(command: string[] | undefined, sdUrl: string | undefined): void {
  if (!command) return;
  const problem = (detail: string) => new ConfigError(`invalid configuration: SDFLOW_SD_URL: ${detail}`);
  if (!sdUrl) throw problem('SDFLOW_SD_COMMAND needs it: the address its WebUI answers at, e.g. http://127.0.0.1:7861');
  let host: string;
  try {
    host = new URL(sdUrl).hostname;
  } catch {
    throw problem(`${sdUrl} is not a URL`);
  }
  if (!LOOPBACK_HOSTS.has(host)) {
    throw problem(`with SDFLOW_SD_COMMAND it must be a loopback address (127.0.0.1, localhost or [::1]), not ${host}`);
  }
}

/** Reads the config: the optional JSON file named by SDFLOW_CONFIG first, then the environment on top. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env) {
  const fromFile = env.SDFLOW_CONFIG ? loadFile(env.SDFLOW_CONFIG) : {};
  const merged: Record<string, string | undefined> = { ...fromFile };
  for (const key of Object.keys(envSchema.shape)) if (env[key] !== undefined) merged[key] = env[key];
  const parsed = envSchema.safeParse(merged);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new ConfigError(`invalid configuration: ${detail}`);
  }
  const e = parsed.data;
  checkSdCommand(e.SDFLOW_SD_COMMAND, e.SDFLOW_SD_URL);
  if ((e.TEMPORAL_TLS_CERT === undefined) !== (e.TEMPORAL_TLS_KEY === undefined)) {
    throw new ConfigError('invalid configuration: TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together (mTLS)');
  }
  const dataDir = isAbsolute(e.SDFLOW_DATA_DIR) ? e.SDFLOW_DATA_DIR : resolve(e.SDFLOW_DATA_DIR);
  const publicHost = e.HOST === '0.0.0.0' || e.HOST === '::' ? '127.0.0.1' : e.HOST;
  return {
    api: {
      host: e.HOST,
      port: e.PORT,
      publicUrl: (e.SDFLOW_PUBLIC_URL ?? `http://${publicHost}:${e.PORT}`).replace(/\/$/, ''),
      syncTimeoutS: e.SDFLOW_SYNC_TIMEOUT_S,
      // A1111 clients wait for their images and know nothing of 202: by default they wait out the task's deadline
      // (plus time for its final record), so they always get the outcome.
      a1111SyncTimeoutS: e.SDFLOW_A1111_SYNC_TIMEOUT_S ?? e.SDFLOW_TASK_DEADLINE_S + 60,
      maxBodyBytes: Math.floor(e.SDFLOW_MAX_BODY_MB * 1024 * 1024),
      requestReceiveTimeoutS: e.SDFLOW_REQUEST_RECEIVE_TIMEOUT_S,
      queryTimeoutMs: e.SDFLOW_QUERY_TIMEOUT_MS,
      queuePositionMaxAgeMs: e.SDFLOW_QUEUE_POSITION_MAX_AGE_MS,
      cancelWaitS: e.SDFLOW_CANCEL_WAIT_S,
      apiKeys: e.SDFLOW_API_KEYS,
      apiKeysFile: e.SDFLOW_API_KEYS_FILE,
      allowInsecure: e.SDFLOW_ALLOW_INSECURE,
      // Per API key (0 = no limit); the local principal of auth-off mode is never limited.
      keyRatePerMin: e.SDFLOW_KEY_RATE_PER_MIN,
      keyMaxQueued: e.SDFLOW_KEY_MAX_QUEUED,
      queueRetryAfterS: e.SDFLOW_QUEUE_RETRY_AFTER_S,
      /** Path prefixes passed through to an agent, each ending in `/`. */
      passthroughPrefixes: ['/sdapi/v1/', '/controlnet/', ...e.SDFLOW_PASSTHROUGH_PREFIXES],
    },
    dataDir,
    logLevel: e.SDFLOW_LOG_LEVEL,
    deployment: e.SDFLOW_DEPLOYMENT,
    temporal: {
      address: e.TEMPORAL_ADDRESS,
      namespace: e.TEMPORAL_NAMESPACE,
      // TLS is on when asked for, or implied by a client certificate or an API key (Temporal Cloud needs it).
      tls: e.TEMPORAL_TLS || e.TEMPORAL_TLS_CERT !== undefined || e.TEMPORAL_API_KEY !== undefined,
      tlsCertFile: e.TEMPORAL_TLS_CERT,
      tlsKeyFile: e.TEMPORAL_TLS_KEY,
      tlsCaFile: e.TEMPORAL_TLS_CA,
      tlsServerName: e.TEMPORAL_TLS_SERVER_NAME,
      apiKey: e.TEMPORAL_API_KEY,
      uiPort: e.SDFLOW_TEMPORAL_UI_PORT,
      httpPort: e.SDFLOW_TEMPORAL_HTTP_PORT,
      taskQueue: e.SDFLOW_TASK_QUEUE,
    },
    tasks: {
      deadlineS: e.SDFLOW_TASK_DEADLINE_S,
      executionTimeoutS: e.SDFLOW_WORKFLOW_EXECUTION_TIMEOUT_S,
      maxConcurrency: e.SDFLOW_MAX_CONCURRENCY,
      modelBusyRetryS: e.SDFLOW_MODEL_BUSY_RETRY_S,
    },
    invoke: {
      heartbeatTimeoutS: e.SDFLOW_INVOKE_HEARTBEAT_TIMEOUT_S,
      idleTimeoutS: e.SDFLOW_INVOKE_IDLE_TIMEOUT_S,
      maxAttempts: e.SDFLOW_INVOKE_MAX_ATTEMPTS,
      retryInitialS: e.SDFLOW_INVOKE_RETRY_INITIAL_S,
      progressSignalMs: e.SDFLOW_PROGRESS_SIGNAL_MS,
    },
    worker: {
      activityMaxAttempts: e.SDFLOW_ACTIVITY_MAX_ATTEMPTS,
      shutdownGraceS: e.SDFLOW_WORKER_SHUTDOWN_GRACE_S,
      maxHeartbeatThrottleS: e.SDFLOW_MAX_HEARTBEAT_THROTTLE_S,
    },
    semaphore: {
      id: `sdflow-semaphore-${e.SDFLOW_DEPLOYMENT}`,
      leaseCheckS: e.SDFLOW_SEMAPHORE_LEASE_CHECK_S,
      continueAsNewAfterGrants: e.SDFLOW_SEMAPHORE_CAN_AFTER_GRANTS,
    },
    reconciler: {
      id: `sdflow-reconciler-${e.SDFLOW_DEPLOYMENT}`,
      periodS: e.SDFLOW_RECONCILE_PERIOD_S,
      graceS: e.SDFLOW_RECONCILE_GRACE_S,
    },
    functions: {
      backend: e.SDFLOW_FUNCTIONS,
      /** The static GPU pool's file (SDFLOW_FUNCTIONS=static): checkpoints mapped to WebUI URLs. */
      staticPoolFile: e.SDFLOW_STATIC_POOL_FILE,
      /** How long a static pool WebUI's lease outlives its holder's last renewal (a holder that died frees it then). */
      staticLeaseTtlS: e.SDFLOW_STATIC_LEASE_TTL_S,
      prefix: e.SDFLOW_FUNCTION_PREFIX,
      maxInstances: e.SDFLOW_FUNCTION_MAX_INSTANCES,
      keepAliveS: e.SDFLOW_KEEP_ALIVE_S,
    },
    runtime: {
      host: e.SDFLOW_RUNTIME_HOST,
      port: e.SDFLOW_RUNTIME_PORT,
      url: (e.SDFLOW_RUNTIME_URL ?? `http://${e.SDFLOW_RUNTIME_HOST}:${e.SDFLOW_RUNTIME_PORT}`).replace(/\/$/, ''),
      instanceStartTimeoutS: e.SDFLOW_INSTANCE_START_TIMEOUT_S,
      instanceQueueTimeoutS: e.SDFLOW_INSTANCE_QUEUE_TIMEOUT_S,
    },
    agent: {
      port: e.SDFLOW_AGENT_PORT,
      sdUrl: e.SDFLOW_SD_URL?.replace(/\/$/, ''),
      /** The WebUI the agent starts and supervises, answering at sdUrl (argv). */
      sdCommand: e.SDFLOW_SD_COMMAND,
      sdStartTimeoutS: e.SDFLOW_SD_START_TIMEOUT_S,
      progressPollMs: e.SDFLOW_SD_PROGRESS_POLL_MS,
      generateTimeoutS: e.SDFLOW_SD_GENERATE_TIMEOUT_S,
      interruptPollMs: e.SDFLOW_INTERRUPT_POLL_MS,
      previewIntervalMs: e.SDFLOW_PREVIEW_INTERVAL_MS,
      model: e.SD_MODEL,
      /** The function's WebUI settings (POST /functions/{name}/options), applied before the instance serves. */
      sdOptions: e.SDFLOW_SD_OPTIONS,
    },
    sim: {
      port: e.SDFLOW_SIM_PORT,
      stepMs: e.SDFLOW_SIM_STEP_MS,
      loadMs: e.SDFLOW_SIM_LOAD_MS,
      vaeMs: e.SDFLOW_SIM_VAE_MS,
      statsDir: e.SDFLOW_SIM_STATS_DIR,
    },
    stores: {
      objectStore: e.SDFLOW_OBJECT_STORE,
      metaStore: e.SDFLOW_META_STORE,
      urlTtlS: e.SDFLOW_URL_TTL_S,
      urlSecret: e.SDFLOW_URL_SECRET,
    },
    cloud: {
      credentials: {
        accessKeyId: e.ALIBABA_CLOUD_ACCESS_KEY_ID,
        accessKeySecret: e.ALIBABA_CLOUD_ACCESS_KEY_SECRET,
        securityToken: e.ALIBABA_CLOUD_SECURITY_TOKEN,
      },
      oss: {
        region: e.SDFLOW_OSS_REGION,
        bucket: e.SDFLOW_OSS_BUCKET,
        endpoint: e.SDFLOW_OSS_ENDPOINT,
        cname: e.SDFLOW_OSS_CNAME,
        internal: e.SDFLOW_OSS_INTERNAL,
        partSizeBytes: Math.floor(e.SDFLOW_OSS_PART_SIZE_MB * 1024 * 1024),
        multipartThresholdBytes: Math.floor(e.SDFLOW_OSS_MULTIPART_THRESHOLD_MB * 1024 * 1024),
        timeoutS: e.SDFLOW_OSS_TIMEOUT_S,
        maxAttempts: e.SDFLOW_OSS_MAX_ATTEMPTS,
      },
      tablestore: {
        endpoint: e.SDFLOW_TABLESTORE_ENDPOINT,
        instance: e.SDFLOW_TABLESTORE_INSTANCE,
        // Deployments sharing an instance never collide: the default prefix carries the deployment id.
        tablePrefix: e.SDFLOW_TABLESTORE_TABLE_PREFIX ?? `sdflow_${e.SDFLOW_DEPLOYMENT.replace(/-/g, '_')}_`,
        timeoutS: e.SDFLOW_TABLESTORE_TIMEOUT_S,
        maxAttempts: e.SDFLOW_TABLESTORE_MAX_ATTEMPTS,
      },
      fc: {
        region: e.SDFLOW_FC_REGION,
        accountId: e.SDFLOW_FC_ACCOUNT_ID,
        endpoint: e.SDFLOW_FC_ENDPOINT,
        /** The VPC-internal endpoint, and the triggers' intranet URLs. */
        internal: e.SDFLOW_FC_INTERNAL,
        image: e.SDFLOW_FC_IMAGE,
        /** The port the agent listens on inside the container. */
        port: e.SDFLOW_FC_PORT,
        /** The container's command (the image's CMD), by default the agent; entrypoint unset keeps the image's. */
        command: e.SDFLOW_FC_COMMAND ?? ['sdflow', 'agent'],
        entrypoint: e.SDFLOW_FC_ENTRYPOINT,
        gpuType: e.SDFLOW_FC_GPU_TYPE,
        gpuMemorySize: e.SDFLOW_FC_GPU_MEMORY_MB,
        cpu: e.SDFLOW_FC_CPU,
        memorySize: e.SDFLOW_FC_MEMORY_MB,
        diskSize: e.SDFLOW_FC_DISK_MB,
        timeoutS: e.SDFLOW_FC_FUNCTION_TIMEOUT_S,
        initializerTimeoutS: e.SDFLOW_FC_INITIALIZER_TIMEOUT_S,
        /** Each instance serves one request at a time (DESIGN.md section 7); not a setting. */
        instanceConcurrency: 1,
        role: e.SDFLOW_FC_ROLE,
        vpcConfig: e.SDFLOW_FC_VPC_CONFIG,
        nasConfig: e.SDFLOW_FC_NAS_CONFIG,
        ossMountConfig: e.SDFLOW_FC_OSS_MOUNT_CONFIG,
        /** The agent's data dir in the container; the checkpoints are mounted at <dir>/objects/models. */
        agentDataDir: e.SDFLOW_FC_AGENT_DATA_DIR,
        env: e.SDFLOW_FC_ENV ?? {},
        triggerAuth: e.SDFLOW_FC_TRIGGER_AUTH,
        requestTimeoutS: e.SDFLOW_FC_REQUEST_TIMEOUT_S,
        maxAttempts: e.SDFLOW_FC_MAX_ATTEMPTS,
      },
    },
    models: {
      demo: e.SDFLOW_DEMO_MODELS,
      defaultModel: e.SDFLOW_DEFAULT_MODEL,
      maxUploadBytes: Math.floor(e.SDFLOW_MAX_MODEL_UPLOAD_MB * 1024 * 1024),
      registrationSettleWaitS: e.SDFLOW_REGISTRATION_SETTLE_WAIT_S,
    },
    limits: {
      maxWidth: e.SDFLOW_MAX_WIDTH,
      maxHeight: e.SDFLOW_MAX_HEIGHT,
      maxSteps: e.SDFLOW_MAX_STEPS,
      maxImagesPerTask: e.SDFLOW_MAX_IMAGES_PER_TASK,
      maxPromptChars: e.SDFLOW_MAX_PROMPT_CHARS,
      maxInputImages: e.SDFLOW_MAX_INPUT_IMAGES,
      maxInputImageBytes: Math.floor(e.SDFLOW_MAX_INPUT_IMAGE_MB * 1024 * 1024),
      maxInputPixels: e.SDFLOW_MAX_INPUT_PIXELS,
    },
  };
}

export type Config = ReturnType<typeof loadConfig>;

/** The settings' names, for docs and for passing config on to child processes. */
export const settingNames = Object.keys(envSchema.shape);

type SettingName = keyof typeof envSchema.shape;

/**
 * What each setting means, for the config matrix in docs/deploy.md, which scripts/config-matrix.mjs writes from
 * `settingsTable()`; test/unit/config-docs.test.ts fails when a setting has no meaning here or the matrix is stale.
 */
const settingMeanings: Partial<Record<SettingName, string>> = {
  HOST: "The API's listen address. A non-loopback address needs API keys, or SDFLOW_ALLOW_INSECURE.",
  PORT: "The API's port.",
  SDFLOW_PUBLIC_URL:
    'Base URL of the signed links the API hands out (unset: http://HOST:PORT). Set it behind a load balancer.',
  SDFLOW_DATA_DIR: 'Local state: SQLite, objects, the Temporal dev server file, logs, instance records.',
  SDFLOW_LOG_LEVEL: 'pino log level of every process.',
  TEMPORAL_ADDRESS: 'Temporal frontend (host:port). `sdflow dev` reuses a server already there.',
  TEMPORAL_NAMESPACE: 'Temporal namespace.',
  TEMPORAL_TLS: 'Connect to Temporal over TLS (implied by TEMPORAL_TLS_CERT or TEMPORAL_API_KEY).',
  TEMPORAL_TLS_CERT: 'Client certificate file (PEM) for mTLS, e.g. Temporal Cloud; needs TEMPORAL_TLS_KEY.',
  TEMPORAL_TLS_KEY: 'Private key file (PEM) of TEMPORAL_TLS_CERT.',
  TEMPORAL_TLS_CA: "CA certificate file (PEM) of a self-hosted server's TLS; unset: the system's roots.",
  TEMPORAL_TLS_SERVER_NAME: 'TLS server name override (SNI), for a server behind a proxy.',
  TEMPORAL_API_KEY: 'Temporal Cloud API key (sent as a bearer token over TLS).',
  SDFLOW_TEMPORAL_UI_PORT: 'Web UI port of the dev server `sdflow dev` starts.',
  SDFLOW_TEMPORAL_HTTP_PORT: 'HTTP API port of the dev server `sdflow dev` starts.',
  SDFLOW_TASK_QUEUE: 'Temporal task queue of the workflows and activities.',
  SDFLOW_DEPLOYMENT: 'Deployment id: names the semaphore and reconciler workflows and the default Tablestore prefix.',
  SDFLOW_MAX_CONCURRENCY: 'Global slots: GPU jobs running at once across the deployment.',
  SDFLOW_FUNCTION_MAX_INSTANCES: 'Local runtime: instances per function, unless the function sets maxInstances.',
  SDFLOW_KEEP_ALIVE_S:
    'Local runtime: an idle instance is stopped after this long, unless the function sets keepAliveS.',
  SDFLOW_SYNC_TIMEOUT_S: 'A sync request waits this long for its task, then answers 202 and the client polls.',
  SDFLOW_A1111_SYNC_TIMEOUT_S:
    'How long a drop-in /sdapi/v1 generation waits before answering 202 (unset: the task deadline plus 60 s).',
  SDFLOW_TASK_DEADLINE_S: "A task still unfinished after this long fails, with the reason (the workflow's own timer).",
  SDFLOW_MODEL_BUSY_RETRY_S:
    'A task whose checkpoint is being re-registered (PUT /models) checks again this often; it runs once loaded.',
  SDFLOW_WORKFLOW_EXECUTION_TIMEOUT_S: 'Temporal execution timeout of task and registration workflows: a far backstop.',
  SDFLOW_MAX_BODY_MB: 'Request body limit of the API (413 above it).',
  SDFLOW_REQUEST_RECEIVE_TIMEOUT_S: 'How long the API may take to receive one request (a model upload may be large).',
  SDFLOW_URL_TTL_S: 'Lifetime of signed links (local /files/ links and OSS URLs).',
  SDFLOW_URL_SECRET:
    'Secret that signs local /files/ links (unset: generated once and kept in the data dir). Share it across API replicas.',
  SDFLOW_QUERY_TIMEOUT_MS:
    "Deadline of the workflow query behind a live task's progress; past it the task row answers.",
  SDFLOW_QUEUE_POSITION_MAX_AGE_MS:
    "How long one read of the semaphore's queue answers every waiting task's queuePosition (0: read at every poll).",
  SDFLOW_CANCEL_WAIT_S: 'A cancellation waits this long for the task to become final before it answers.',
  SDFLOW_PASSTHROUGH_PREFIXES:
    'Comma-separated path prefixes passed through to SD besides /sdapi/v1/ and /controlnet/.',
  SDFLOW_INVOKE_HEARTBEAT_TIMEOUT_S: 'Heartbeat timeout of the invoke activity: how soon a lost worker is noticed.',
  SDFLOW_INVOKE_IDLE_TIMEOUT_S: 'An invoke with no event from its function for this long is abandoned and retried.',
  SDFLOW_INVOKE_MAX_ATTEMPTS: 'Attempts of the invoke activity (a retryable failure runs it again).',
  SDFLOW_INVOKE_RETRY_INITIAL_S: 'First backoff between invoke attempts (doubling).',
  SDFLOW_ACTIVITY_MAX_ATTEMPTS: 'Attempts of the bookkeeping activities (records, slots, functions).',
  SDFLOW_PROGRESS_SIGNAL_MS: 'At most one progress signal to the workflow per this interval (per phase).',
  SDFLOW_WORKER_SHUTDOWN_GRACE_S:
    'A stopping worker lets running activities finish this long; the rest are retried elsewhere.',
  SDFLOW_MAX_HEARTBEAT_THROTTLE_S: "The worker's heartbeat throttle: how fast a cancel reaches a running invoke.",
  SDFLOW_SEMAPHORE_LEASE_CHECK_S: "How often the semaphore checks that its holders' workflows are still open.",
  SDFLOW_SEMAPHORE_CAN_AFTER_GRANTS: 'The semaphore continues as new after this many grants.',
  SDFLOW_RECONCILE_PERIOD_S:
    'How often the reconciler looks for open task rows whose workflow is closed, and for stuck model registrations.',
  SDFLOW_RECONCILE_GRACE_S: 'The reconciler leaves task rows younger than this alone.',
  SDFLOW_FUNCTION_PREFIX:
    'Prefix of function names (`<prefix>sd_<hash>`), at most 20 characters; one per deployment sharing an FC account.',
  SDFLOW_RUNTIME_HOST: 'Listen address of `sdflow runtime`.',
  SDFLOW_RUNTIME_PORT: 'Port of `sdflow runtime`.',
  SDFLOW_RUNTIME_URL:
    'Where the API and workers reach `sdflow runtime` (unset: http://SDFLOW_RUNTIME_HOST:SDFLOW_RUNTIME_PORT).',
  SDFLOW_INSTANCE_START_TIMEOUT_S: 'Local runtime: an instance must be ready within this long.',
  SDFLOW_INSTANCE_QUEUE_TIMEOUT_S:
    'How long a request waits for a free instance (local runtime) or WebUI (static pool).',
  SDFLOW_AGENT_PORT: "The agent's port (0: any free port). The local runtime and FC set it.",
  SDFLOW_SD_URL:
    "The agent's WebUI (A1111 with --api): one that runs on its own, or the loopback address of SDFLOW_SD_COMMAND's (unset: the simulator).",
  SDFLOW_SD_COMMAND:
    'A WebUI the agent starts and restarts: a shell command line (use exec) or a JSON argv; needs a loopback SDFLOW_SD_URL.',
  SDFLOW_SD_START_TIMEOUT_S:
    'How long the agent waits for SD to answer; a started WebUI or simulator that does not is killed and started again.',
  SDFLOW_SD_PROGRESS_POLL_MS: "How often a running job's progress is read from SD.",
  SDFLOW_SD_GENERATE_TIMEOUT_S:
    'Backstop on one generation request to SD; a cancel or the task deadline normally ends it first.',
  SDFLOW_PREVIEW_INTERVAL_MS:
    "How often a running job's live preview is read from SD and stored for progress readers (0: no previews).",
  SDFLOW_INTERRUPT_POLL_MS: 'How often a running job checks for an A1111-style interrupt (POST /sdapi/v1/interrupt).',
  SD_MODEL: "The agent's pinned checkpoint. The local runtime and FC set it.",
  SDFLOW_SD_OPTIONS:
    "The function's WebUI settings as a JSON object, applied to SD before the instance serves. The local runtime and FC set it from POST /functions/{name}/options.",
  SDFLOW_SIM_PORT: 'Default port of `sdflow sim`.',
  SDFLOW_SIM_STEP_MS: 'Simulator: time per sampling step at 512x512, scaled by pixels.',
  SDFLOW_SIM_LOAD_MS: 'Simulator: time to load a checkpoint other than the loaded one.',
  SDFLOW_SIM_VAE_MS: 'Simulator: VAE decode time per image.',
  SDFLOW_SIM_STATS_DIR: 'Simulator: where each process appends its busy intervals (tests and benchmarks).',
  SDFLOW_OBJECT_STORE: 'Object store adapter: local files or Alibaba OSS.',
  SDFLOW_META_STORE: 'Meta store adapter: SQLite or Alibaba Tablestore.',
  SDFLOW_FUNCTIONS: 'Function runtime: `sdflow runtime` (local), Alibaba FC 3.0, or a static pool of WebUI URLs.',
  SDFLOW_STATIC_POOL_FILE: 'Static pool (SDFLOW_FUNCTIONS=static): JSON file mapping checkpoints to WebUI URLs.',
  SDFLOW_STATIC_LEASE_TTL_S:
    "Static pool: a WebUI's lease in the meta store lasts this long unless renewed; one a dead process held frees then.",
  ALIBABA_CLOUD_ACCESS_KEY_ID: 'Alibaba Cloud AccessKey id (OSS, Tablestore, FC). From the environment only.',
  ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'Alibaba Cloud AccessKey secret. From the environment only.',
  ALIBABA_CLOUD_SECURITY_TOKEN: 'STS token, with temporary AccessKeys (read once at start).',
  SDFLOW_OSS_REGION: 'OSS region, e.g. cn-hangzhou (or SDFLOW_OSS_ENDPOINT).',
  SDFLOW_OSS_BUCKET: 'OSS bucket of inputs, images and models.',
  SDFLOW_OSS_ENDPOINT:
    'OSS endpoint URL; wins over the region. With SDFLOW_OSS_CNAME, the custom domain of the bucket.',
  SDFLOW_OSS_CNAME: 'SDFLOW_OSS_ENDPOINT is a custom domain bound to the bucket.',
  SDFLOW_OSS_INTERNAL: 'With a region: use the VPC-internal endpoint.',
  SDFLOW_OSS_PART_SIZE_MB: 'Part size of multipart uploads.',
  SDFLOW_OSS_MULTIPART_THRESHOLD_MB: 'Objects larger than this go up by multipart upload.',
  SDFLOW_OSS_TIMEOUT_S: 'Timeout of one OSS request.',
  SDFLOW_OSS_MAX_ATTEMPTS: 'Attempts per OSS request, the first included.',
  SDFLOW_TABLESTORE_ENDPOINT: 'Tablestore instance endpoint URL.',
  SDFLOW_TABLESTORE_INSTANCE: 'Tablestore instance name.',
  SDFLOW_TABLESTORE_TABLE_PREFIX:
    'Prefix of the tables (unset: `sdflow_<deployment>_`), so deployments can share an instance.',
  SDFLOW_TABLESTORE_TIMEOUT_S: 'Timeout of one Tablestore request.',
  SDFLOW_TABLESTORE_MAX_ATTEMPTS: 'Attempts per Tablestore request, the first included.',
  SDFLOW_FC_REGION: 'FC region, e.g. cn-hangzhou.',
  SDFLOW_FC_ACCOUNT_ID: 'Alibaba Cloud account id, for the FC endpoint.',
  SDFLOW_FC_ENDPOINT: 'FC endpoint URL; wins over region and account.',
  SDFLOW_FC_INTERNAL:
    "Use FC's VPC-internal endpoint and the triggers' intranet URLs (public trigger URLs switched off).",
  SDFLOW_FC_IMAGE: 'The GPU function image (docker/gpu-function.Dockerfile), in ACR.',
  SDFLOW_FC_PORT: 'Port the agent listens on inside the container.',
  SDFLOW_FC_COMMAND: 'Container command, JSON argv (unset: ["sdflow","agent"]).',
  SDFLOW_FC_ENTRYPOINT: "Container entrypoint, JSON argv (unset: the image's).",
  SDFLOW_FC_GPU_TYPE: 'FC GPU type of new functions.',
  SDFLOW_FC_GPU_MEMORY_MB: 'GPU memory per instance, a multiple of 1024 within the card.',
  SDFLOW_FC_CPU: 'vCPUs per instance.',
  SDFLOW_FC_MEMORY_MB: 'Memory per instance.',
  SDFLOW_FC_DISK_MB: 'Disk per instance: 512 or 10240.',
  SDFLOW_FC_FUNCTION_TIMEOUT_S: 'FC timeout of one request.',
  SDFLOW_FC_INITIALIZER_TIMEOUT_S:
    "Timeout of an instance's initializer (the agent's /initialize: WebUI up, checkpoint loaded).",
  SDFLOW_FC_ROLE: 'RAM role ARN of the functions: STS credentials for OSS, and OSS mounts.',
  SDFLOW_FC_VPC_CONFIG: 'JSON {vpcId, vSwitchIds, securityGroupId}: the functions run in this VPC (needed for NAS).',
  SDFLOW_FC_NAS_CONFIG: 'JSON {userId?, groupId?, mountPoints:[{serverAddr, mountDir}]}: NAS mounts (models).',
  SDFLOW_FC_OSS_MOUNT_CONFIG:
    'JSON {mountPoints:[{bucketName, bucketPath, endpoint, mountDir, readOnly?}]}: OSS mounts (models).',
  SDFLOW_FC_AGENT_DATA_DIR:
    "The agent's data dir in the container; checkpoints are expected at `<dir>/objects/models`.",
  SDFLOW_FC_ENV: 'JSON {NAME: "value"}: extra environment of every function.',
  SDFLOW_FC_TRIGGER_AUTH: 'HTTP trigger auth: function (signed requests) or anonymous.',
  SDFLOW_FC_REQUEST_TIMEOUT_S: 'Timeout of one FC management API request.',
  SDFLOW_FC_MAX_ATTEMPTS: 'Attempts per FC management request, the first included.',
  SDFLOW_API_KEYS: 'API keys, user:role:secret,… (role admin or user). None: auth off.',
  SDFLOW_API_KEYS_FILE: 'File of API keys, one user:role:secret a line (# comments).',
  SDFLOW_ALLOW_INSECURE: 'Allow a non-loopback HOST with no API keys.',
  SDFLOW_KEY_RATE_PER_MIN: 'Requests per minute per API key (429 past it; 0: no limit).',
  SDFLOW_KEY_MAX_QUEUED: 'Waiting and running tasks per user of an API key (429 past it; 0: no limit).',
  SDFLOW_QUEUE_RETRY_AFTER_S: 'Retry-After of those 429 answers.',
  SDFLOW_DEMO_MODELS: '`sdflow dev` registers the two simulator demo checkpoints.',
  SDFLOW_DEFAULT_MODEL: 'Checkpoint of requests that name none (A1111 drop-in and passthrough routes).',
  SDFLOW_MAX_MODEL_UPLOAD_MB: 'Largest model upload (413 past it).',
  SDFLOW_REGISTRATION_SETTLE_WAIT_S:
    "An update of a model whose row has settled waits this long for the earlier registration's workflow to close (409 after).",
  SDFLOW_MAX_WIDTH: 'Largest width of a request.',
  SDFLOW_MAX_HEIGHT: 'Largest height of a request.',
  SDFLOW_MAX_STEPS: 'Most sampling steps of a request.',
  SDFLOW_MAX_IMAGES_PER_TASK: 'Most images of one task (batch_size x n_iter).',
  SDFLOW_MAX_PROMPT_CHARS: 'Longest prompt and negative prompt.',
  SDFLOW_MAX_INPUT_IMAGES: 'Most input images of one request.',
  SDFLOW_MAX_INPUT_IMAGE_MB: 'Largest input image.',
  SDFLOW_MAX_INPUT_PIXELS: 'Most pixels of an input image.',
};

export interface SettingRow {
  name: string;
  /** The default as it would be written in the environment; undefined when unset by default. */
  default: string | undefined;
  /** What the setting means; empty when settingMeanings lacks it. */
  meaning: string;
}

/** The default of a setting, read from the schema by parsing "unset". */
function defaultOf(name: SettingName): string | undefined {
  const parsed = envSchema.shape[name].safeParse(undefined);
  const value: unknown = parsed.success ? parsed.data : undefined;
  if (value === undefined || (Array.isArray(value) && value.length === 0)) return undefined;
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

/** Every setting, in the schema's order, with its default and meaning: the config matrix of docs/deploy.md. */
export function settingsTable(): SettingRow[] {
  return (settingNames as SettingName[]).map((name) => ({
    name,
    default: defaultOf(name),
    meaning: settingMeanings[name] ?? '',
  }));
}
