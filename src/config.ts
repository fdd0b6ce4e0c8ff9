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

/** The environment variables, as the schema sees them. Keys are env names so errors name the variable to fix. */
const envSchema = z.object({
  HOST: z.string().default('127.0.0.1'),
  PORT: int(8080, 0),
  SDFLOW_PUBLIC_URL: optionalString,
  SDFLOW_DATA_DIR: z.string().default('./.sdflow'),
  SDFLOW_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  TEMPORAL_ADDRESS: z.string().default('127.0.0.1:7233'),
  TEMPORAL_NAMESPACE: z.string().default('default'),
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
  SDFLOW_TASK_DEADLINE_S: num(1800, 1),
  SDFLOW_WORKFLOW_EXECUTION_TIMEOUT_S: num(86400, 60),
  SDFLOW_MAX_BODY_MB: num(50, 0.001),
  SDFLOW_URL_TTL_S: int(3600, 1),
  SDFLOW_URL_SECRET: optionalString,
  SDFLOW_QUERY_TIMEOUT_MS: int(2000, 100),
  SDFLOW_CANCEL_WAIT_S: num(5, 0),

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
  SDFLOW_SD_START_TIMEOUT_S: num(120, 1),
  SDFLOW_SD_PROGRESS_POLL_MS: int(250, 20),
  SDFLOW_SD_GENERATE_TIMEOUT_S: num(7200, 1),
  SDFLOW_INTERRUPT_POLL_MS: int(1000, 50),
  SD_MODEL: optionalString,

  SDFLOW_SIM_PORT: int(7860, 0),
  SDFLOW_SIM_STEP_MS: num(65, 0),
  SDFLOW_SIM_LOAD_MS: num(5000, 0),
  SDFLOW_SIM_VAE_MS: num(100, 0),
  SDFLOW_SIM_STATS_DIR: optionalString,

  SDFLOW_OBJECT_STORE: z.enum(['local', 'oss']).default('local'),
  SDFLOW_META_STORE: z.enum(['sqlite', 'tablestore']).default('sqlite'),
  SDFLOW_FUNCTIONS: z.enum(['local', 'fc', 'static']).default('local'),

  // Alibaba Cloud. Credentials come from the standard ALIBABA_CLOUD_* environment, never from files in the repo.
  ALIBABA_CLOUD_ACCESS_KEY_ID: optionalString,
  ALIBABA_CLOUD_ACCESS_KEY_SECRET: optionalString,
  ALIBABA_CLOUD_SECURITY_TOKEN: optionalString,
  SDFLOW_OSS_REGION: optionalString,
  SDFLOW_OSS_BUCKET: optionalString,
  SDFLOW_OSS_ENDPOINT: optionalString,
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

  SDFLOW_API_KEYS: optionalString,
  SDFLOW_API_KEYS_FILE: optionalString,
  SDFLOW_ALLOW_INSECURE: bool(false),

  SDFLOW_DEMO_MODELS: bool(true),
  SDFLOW_DEFAULT_MODEL: optionalString,
  SDFLOW_MAX_MODEL_UPLOAD_MB: num(20480, 0.001),

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
  const dataDir = isAbsolute(e.SDFLOW_DATA_DIR) ? e.SDFLOW_DATA_DIR : resolve(e.SDFLOW_DATA_DIR);
  const publicHost = e.HOST === '0.0.0.0' || e.HOST === '::' ? '127.0.0.1' : e.HOST;
  return {
    api: {
      host: e.HOST,
      port: e.PORT,
      publicUrl: (e.SDFLOW_PUBLIC_URL ?? `http://${publicHost}:${e.PORT}`).replace(/\/$/, ''),
      syncTimeoutS: e.SDFLOW_SYNC_TIMEOUT_S,
      maxBodyBytes: Math.floor(e.SDFLOW_MAX_BODY_MB * 1024 * 1024),
      queryTimeoutMs: e.SDFLOW_QUERY_TIMEOUT_MS,
      cancelWaitS: e.SDFLOW_CANCEL_WAIT_S,
      apiKeys: e.SDFLOW_API_KEYS,
      apiKeysFile: e.SDFLOW_API_KEYS_FILE,
      allowInsecure: e.SDFLOW_ALLOW_INSECURE,
    },
    dataDir,
    logLevel: e.SDFLOW_LOG_LEVEL,
    deployment: e.SDFLOW_DEPLOYMENT,
    temporal: {
      address: e.TEMPORAL_ADDRESS,
      namespace: e.TEMPORAL_NAMESPACE,
      uiPort: e.SDFLOW_TEMPORAL_UI_PORT,
      httpPort: e.SDFLOW_TEMPORAL_HTTP_PORT,
      taskQueue: e.SDFLOW_TASK_QUEUE,
    },
    tasks: {
      deadlineS: e.SDFLOW_TASK_DEADLINE_S,
      executionTimeoutS: e.SDFLOW_WORKFLOW_EXECUTION_TIMEOUT_S,
      maxConcurrency: e.SDFLOW_MAX_CONCURRENCY,
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
      sdStartTimeoutS: e.SDFLOW_SD_START_TIMEOUT_S,
      progressPollMs: e.SDFLOW_SD_PROGRESS_POLL_MS,
      generateTimeoutS: e.SDFLOW_SD_GENERATE_TIMEOUT_S,
      interruptPollMs: e.SDFLOW_INTERRUPT_POLL_MS,
      model: e.SD_MODEL,
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
    },
    models: {
      demo: e.SDFLOW_DEMO_MODELS,
      defaultModel: e.SDFLOW_DEFAULT_MODEL,
      maxUploadBytes: Math.floor(e.SDFLOW_MAX_MODEL_UPLOAD_MB * 1024 * 1024),
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
