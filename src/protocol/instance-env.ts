// The environment variables the platform sets on a function's instances, by every runtime that starts them. They are
// the instance's identity and placement, the deployment's stores, and what its function's resources become; the
// agent reads them at start. A function's own `env` never sets one of them.

export const INSTANCE_ENV = {
  /** The checkpoint the instance is pinned to. */
  model: 'SD_MODEL',
  functionName: 'SDFLOW_FUNCTION_NAME',
  /** The local runtime's name for the instance; FC names its instances itself. */
  instanceId: 'SDFLOW_INSTANCE_ID',
  agentPort: 'SDFLOW_AGENT_PORT',
  /** Loopback for a local instance; every interface in a container. */
  agentHost: 'SDFLOW_AGENT_HOST',
  dataDir: 'SDFLOW_DATA_DIR',
  objectStore: 'SDFLOW_OBJECT_STORE',
  logLevel: 'SDFLOW_LOG_LEVEL',
  maxBodyMb: 'SDFLOW_MAX_BODY_MB',
  /** The function's WebUI launch arguments (`extraArgs`). */
  sdExtraArgs: 'SDFLOW_SD_EXTRA_ARGS',
  /** The function's WebUI settings, as JSON, which the agent applies before the instance serves. */
  sdOptions: 'SDFLOW_SD_OPTIONS',
  /** Changed to make FC replace a function's instances (FC has no restart). */
  restartAt: 'SDFLOW_RESTART_AT',
} as const;

/** The object store's settings (SDFLOW_OSS_BUCKET, …), which are the deployment's: every instance uses its store. */
const OSS_ENV_PREFIX = 'SDFLOW_OSS_';

type InstanceEnvName = (typeof INSTANCE_ENV)[keyof typeof INSTANCE_ENV] | `${typeof OSS_ENV_PREFIX}${string}`;

/** The platform's variables for one instance: only names of this contract. */
export type PlatformEnv = { [name in InstanceEnvName]?: string };

const NAMES: ReadonlySet<string> = new Set(Object.values(INSTANCE_ENV));

/** Whether the platform sets this variable, so that a function's env may not. */
export const isPlatformEnvName = (name: string): name is InstanceEnvName =>
  NAMES.has(name) || name.startsWith(OSS_ENV_PREFIX);

/** The reserved names, for messages and documentation: each variable, and each prefix as `PREFIX*`. */
export const RESERVED_ENV: readonly string[] = [...NAMES, `${OSS_ENV_PREFIX}*`];
