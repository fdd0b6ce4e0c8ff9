import type { FcConfig } from '../../config/index.js';
import { isJsonObject } from '../../json.js';
import { INSTANCE_ENV, isPlatformEnvName, type PlatformEnv } from '../../protocol/instance-env.js';
import type { FunctionSpec } from './port.js';

// An instance's environment, for every runtime that starts instances: what the runtime provides (its own environment
// locally, SDFLOW_FC_ENV on FC), then the function's `env`, then the platform's variables (protocol/instance-env.ts)
// over both. A function's env never sets a platform variable: the API refuses one, and one recorded before that rule
// is left out here, so the platform's identity, placement and stores are what every instance runs with.

/** What a function's resources become: its WebUI launch arguments and its WebUI settings. */
function resourceEnv(resources: Record<string, unknown>): PlatformEnv {
  const env: PlatformEnv = {};
  if (typeof resources.extraArgs === 'string') env[INSTANCE_ENV.sdExtraArgs] = resources.extraArgs;
  const settings = resources.sdOptions;
  if (isJsonObject(settings) && Object.keys(settings).length > 0) {
    env[INSTANCE_ENV.sdOptions] = JSON.stringify(settings);
  }
  return env;
}

/** The resources an instance environment came from (a runtime that keeps only the environment, such as FC). */
export function resourcesFromEnv(env: Record<string, string>): Record<string, unknown> {
  const resources: Record<string, unknown> = {};
  const extraArgs = env[INSTANCE_ENV.sdExtraArgs];
  if (extraArgs !== undefined) resources.extraArgs = extraArgs;
  const settings = env[INSTANCE_ENV.sdOptions];
  if (settings !== undefined) {
    try {
      resources.sdOptions = JSON.parse(settings);
    } catch {
      // not ours to judge: an environment edited by hand keeps working without the settings
    }
  }
  return resources;
}

/** The function's own `env`, without the platform's variables. */
function functionEnv(resources: Record<string, unknown>): Record<string, string> {
  const env = resources.env;
  if (!isJsonObject(env)) return {};
  return Object.fromEntries(
    Object.entries(env).filter(
      (entry): entry is [string, string] => typeof entry[1] === 'string' && !isPlatformEnvName(entry[0]),
    ),
  );
}

/** `base`, then the function's env, then the platform's variables over both. */
function instanceEnv<T extends string | undefined>(
  base: Record<string, T>,
  resources: Record<string, unknown>,
  platform: PlatformEnv,
): Record<string, T | string> {
  return { ...base, ...functionEnv(resources), ...platform, ...resourceEnv(resources) };
}

/** A local instance: one process of the runtime's machine, reached on loopback, sharing the runtime's data dir. */
interface LocalInstance {
  id: string;
  port: number;
  functionName: string;
  model: string;
  resources: Record<string, unknown>;
}

/**
 * A local instance's environment. It inherits the runtime's own, and with it the deployment's settings (stores, log
 * level, body limit), which the function's env cannot change either.
 */
export function localInstanceEnv(inherited: NodeJS.ProcessEnv, instance: LocalInstance, dataDir: string) {
  return instanceEnv(inherited, instance.resources, {
    [INSTANCE_ENV.model]: instance.model,
    [INSTANCE_ENV.functionName]: instance.functionName,
    [INSTANCE_ENV.instanceId]: instance.id,
    [INSTANCE_ENV.agentPort]: String(instance.port),
    [INSTANCE_ENV.agentHost]: '127.0.0.1',
    [INSTANCE_ENV.dataDir]: dataDir,
  });
}

/**
 * An FC function's environment, over the deployment's SDFLOW_FC_ENV. The object store settings are the deployment's
 * own, so the agent reads inputs and writes images where the API expects them; its credentials come from the
 * function's role (FC injects them as ALIBABA_CLOUD_*), never from this environment.
 */
export function fcInstanceEnv(
  fc: FcConfig,
  spec: FunctionSpec,
  resources: Record<string, unknown>,
): Record<string, string> {
  const { oss } = fc;
  const platform: PlatformEnv = {
    [INSTANCE_ENV.model]: spec.model,
    [INSTANCE_ENV.functionName]: spec.functionName,
    [INSTANCE_ENV.agentPort]: String(fc.port),
    // A container is reached from outside itself: the agent listens on every interface.
    [INSTANCE_ENV.agentHost]: '0.0.0.0',
    [INSTANCE_ENV.dataDir]: fc.agentDataDir,
    [INSTANCE_ENV.objectStore]: fc.objectStore,
    [INSTANCE_ENV.logLevel]: fc.logLevel,
    [INSTANCE_ENV.maxBodyMb]: String(fc.maxBodyBytes / (1024 * 1024)),
  };
  const oneOf = (name: `SDFLOW_OSS_${string}`, value: string | number | boolean | undefined) => {
    if (value !== undefined) platform[name] = String(value);
  };
  oneOf('SDFLOW_OSS_BUCKET', oss.bucket);
  oneOf('SDFLOW_OSS_REGION', oss.region);
  oneOf('SDFLOW_OSS_ENDPOINT', oss.endpoint);
  oneOf('SDFLOW_OSS_CNAME', oss.cname ? '1' : undefined);
  oneOf('SDFLOW_OSS_INTERNAL', oss.internal ? '1' : undefined);
  oneOf('SDFLOW_OSS_TIMEOUT_S', oss.timeoutS);
  oneOf('SDFLOW_OSS_MAX_ATTEMPTS', oss.maxAttempts);
  return instanceEnv(fc.env ?? {}, resources, platform);
}
