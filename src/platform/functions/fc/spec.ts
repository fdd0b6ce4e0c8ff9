import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import {
  ConfigError,
  FC_GPU_TYPES,
  type FcConfig,
  type FcGpuType,
  fcEnvSchema,
  fcGpuTypeSchema,
  fcNasConfigSchema,
  fcOssMountConfigSchema,
  fcVpcConfigSchema,
} from '../../../config/index.js';
import { INSTANCE_ENV } from '../../../protocol/instance-env.js';
import { fcInstanceEnv, resourcesFromEnv } from '../instance-env.js';
import { MAX_FUNCTION_NAME_LENGTH } from '../naming.js';
import type { FunctionSpec, RuntimeFunction } from '../port.js';

// What sdflow asks of FC 3.0 for one checkpoint's function: a custom-container GPU function running the agent, built
// from the deployment's settings (config.fc) with the function's batch-update resources merged over them.

/** FC 3.0's rule for function names: letters, digits, _ and -, not starting with a digit or -, 1 to 64 long. */
const FC_FUNCTION_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** The one HTTP trigger each function gets. */
export const TRIGGER_NAME = 'sdflow-http';
export const TRIGGER_METHODS = ['GET', 'POST', 'PUT', 'DELETE'];

/** The batch-update resources FC applies (platform-schemas.ts validates them at the API; checked again here). */
const resourcesSchema = z.looseObject({
  image: z.string().min(1).optional(),
  cpu: z.number().positive().optional(),
  memorySize: z.number().int().positive().optional(),
  gpuMemorySize: z.number().int().positive().optional(),
  instanceType: fcGpuTypeSchema.optional(),
  timeout: z.number().int().positive().optional(),
  extraArgs: z.string().optional(),
  env: fcEnvSchema.optional(),
  vpcConfig: fcVpcConfigSchema.optional(),
  nasConfig: fcNasConfigSchema.optional(),
  ossMountConfig: fcOssMountConfigSchema.optional(),
  minInstances: z.number().int().min(0).optional(),
});

/** A function's resources that FC cannot honour are refused with the field named. */
export class FcSpecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FcSpecError';
  }
}

function gpuMemoryProblem(gpuType: FcGpuType, gpuMemorySize: number): string | undefined {
  const card = FC_GPU_TYPES[gpuType];
  if (gpuMemorySize % 1024 !== 0) return `GPU memory ${gpuMemorySize} MB is not a multiple of 1024`;
  if (gpuMemorySize > card) return `GPU memory ${gpuMemorySize} MB exceeds the ${card} MB of a ${gpuType} card`;
  return undefined;
}

/** Checks the settings a function is built from: what FC needs, and what the agent needs on FC. */
export function checkFcSettings(fc: FcConfig): void {
  const { credentials } = fc;
  const missing: string[] = [];
  if (!fc.endpoint && !(fc.region && fc.accountId)) {
    missing.push('SDFLOW_FC_REGION and SDFLOW_FC_ACCOUNT_ID (or SDFLOW_FC_ENDPOINT)');
  }
  if (!fc.image) missing.push('SDFLOW_FC_IMAGE');
  if (!credentials.accessKeyId) missing.push('ALIBABA_CLOUD_ACCESS_KEY_ID');
  if (!credentials.accessKeySecret) missing.push('ALIBABA_CLOUD_ACCESS_KEY_SECRET');
  if (missing.length > 0) {
    throw new ConfigError(`the Function Compute runtime (SDFLOW_FUNCTIONS=fc) needs ${missing.join(', ')}`);
  }
  if (fc.objectStore !== 'oss') {
    throw new ConfigError(
      'the Function Compute runtime (SDFLOW_FUNCTIONS=fc) needs SDFLOW_OBJECT_STORE=oss: its instances read inputs ' +
        "and write images through OSS, not through this machine's files",
    );
  }
  const gpu = gpuMemoryProblem(fc.gpuType, fc.gpuMemorySize);
  if (gpu) throw new ConfigError(`SDFLOW_FC_GPU_MEMORY_MB: ${gpu} (SDFLOW_FC_GPU_TYPE)`);
  if (fc.nasConfig && !fc.vpcConfig) {
    throw new ConfigError('SDFLOW_FC_NAS_CONFIG needs SDFLOW_FC_VPC_CONFIG: FC reaches NAS only inside a VPC');
  }
  if (fc.ossMountConfig && !fc.role) {
    throw new ConfigError('SDFLOW_FC_OSS_MOUNT_CONFIG needs SDFLOW_FC_ROLE: FC mounts OSS with the function role');
  }
}

/** Asserts, before any call, that FC will accept the name: the naming module keeps it within 64 characters. */
export function assertFunctionName(functionName: string): void {
  if (functionName.length === 0 || functionName.length > MAX_FUNCTION_NAME_LENGTH) {
    throw new FcSpecError(
      `function name ${functionName} is ${functionName.length} characters; FC 3.0 takes 1 to ${MAX_FUNCTION_NAME_LENGTH}`,
    );
  }
  if (!FC_FUNCTION_NAME.test(functionName)) {
    throw new FcSpecError(
      `function name ${functionName} is not one FC 3.0 accepts: letters, digits, _ and -, not starting with a ` +
        'digit or - (check SDFLOW_FUNCTION_PREFIX)',
    );
  }
}

/** The FC function sdflow wants, as CreateFunctionInput's fields. */
export interface DesiredFunction {
  functionName: string;
  description: string;
  runtime: 'custom-container';
  handler: string;
  customContainerConfig: { image: string; port: number; command: string[]; entrypoint?: string[] };
  gpuConfig: { gpuType: FcGpuType; gpuMemorySize: number };
  cpu: number;
  memorySize: number;
  diskSize: number;
  timeout: number;
  instanceConcurrency: number;
  environmentVariables: Record<string, string>;
  instanceLifecycleConfig: { initializer: { handler: string; timeout: number } };
  role?: string;
  vpcConfig?: z.output<typeof fcVpcConfigSchema>;
  nasConfig?: z.output<typeof fcNasConfigSchema>;
  ossMountConfig?: z.output<typeof fcOssMountConfigSchema>;
}

/** The function for `spec`: the settings, with the function's resources over them, and the platform's env. */
export function desiredFunction(fc: FcConfig, spec: FunctionSpec): DesiredFunction {
  const parsed = resourcesSchema.safeParse(spec.resources ?? {});
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `resources.${i.path.join('.')}: ${i.message}`).join('; ');
    throw new FcSpecError(`the resources of ${spec.functionName} cannot be applied on FC: ${detail}`);
  }
  const r = parsed.data;
  const gpuType = r.instanceType ?? fc.gpuType;
  const gpuMemorySize = r.gpuMemorySize ?? fc.gpuMemorySize;
  const gpu = gpuMemoryProblem(gpuType, gpuMemorySize);
  if (gpu) throw new FcSpecError(`the resources of ${spec.functionName} cannot be applied on FC: ${gpu}`);
  const vpcConfig = r.vpcConfig ?? fc.vpcConfig;
  const nasConfig = r.nasConfig ?? fc.nasConfig;
  const ossMountConfig = r.ossMountConfig ?? fc.ossMountConfig;
  if (nasConfig && !vpcConfig) {
    throw new FcSpecError(
      `${spec.functionName}: a NAS mount needs a VPC (resources.vpcConfig or SDFLOW_FC_VPC_CONFIG)`,
    );
  }
  return {
    functionName: spec.functionName,
    // FC keeps at most 256 characters of description.
    description: `sdflow checkpoint ${spec.model}`.slice(0, 256),
    runtime: 'custom-container',
    // Required by the API; a custom container has no handler of its own.
    handler: 'index.handler',
    customContainerConfig: {
      image: r.image ?? (fc.image as string),
      port: fc.port,
      command: fc.command,
      ...(fc.entrypoint ? { entrypoint: fc.entrypoint } : {}),
    },
    gpuConfig: { gpuType, gpuMemorySize },
    cpu: r.cpu ?? fc.cpu,
    memorySize: r.memorySize ?? fc.memorySize,
    diskSize: fc.diskSize,
    timeout: r.timeout ?? fc.timeoutS,
    instanceConcurrency: fc.instanceConcurrency,
    environmentVariables: fcInstanceEnv(fc, spec, r),
    // For a custom container the initializer is an HTTP call: FC POSTs /initialize to the container once per instance,
    // before its first request; the agent pins (loads) its checkpoint there. The handler only has to be set.
    instanceLifecycleConfig: { initializer: { handler: 'initialize', timeout: fc.initializerTimeoutS } },
    ...(fc.role ? { role: fc.role } : {}),
    ...(vpcConfig ? { vpcConfig } : {}),
    ...(nasConfig ? { nasConfig } : {}),
    ...(ossMountConfig ? { ossMountConfig } : {}),
  };
}

/** Whether every field of `want` is in `have` with the same value (objects compared field by field, recursively). */
function covers(want: unknown, have: unknown): boolean {
  if (Array.isArray(want)) {
    return Array.isArray(have) && want.length === have.length && want.every((item, i) => covers(item, have[i]));
  }
  if (typeof want === 'object' && want !== null) {
    if (typeof have !== 'object' || have === null) return false;
    return Object.entries(want).every(([key, value]) => covers(value, (have as Record<string, unknown>)[key]));
  }
  return isDeepStrictEqual(want, have);
}

const withoutRestart = (env: Record<string, string> | undefined) => {
  const { [INSTANCE_ENV.restartAt]: _restart, ...rest } = env ?? {};
  return rest;
};

/**
 * The fields of `desired` that the function FC holds does not match: empty when nothing needs updating. The
 * environment must match exactly (a variable dropped from the spec is dropped from the function), except for the
 * restart marker; for other fields, what FC adds of its own (defaults, resolved values) does not count.
 */
export function differingFields(desired: DesiredFunction, actual: Record<string, unknown>): string[] {
  const fields: string[] = [];
  for (const [field, value] of Object.entries(desired)) {
    if (field === 'functionName' || field === 'description') continue;
    const have = actual[field];
    const same =
      field === 'environmentVariables'
        ? isDeepStrictEqual(
            withoutRestart(value as Record<string, string>),
            withoutRestart(have as Record<string, string>),
          )
        : covers(value, have);
    if (!same) fields.push(field);
  }
  return fields;
}

/**
 * UpdateFunction's body for `desired`, keeping the restart marker the function already has: set by restartInstances,
 * it is kept across updates.
 */
export function updateInput(desired: DesiredFunction, actual: Record<string, unknown>): Record<string, unknown> {
  const { functionName: _name, ...fields } = desired;
  const restartedAt = (actual.environmentVariables as Record<string, string> | undefined)?.[INSTANCE_ENV.restartAt];
  return restartedAt === undefined
    ? fields
    : { ...fields, environmentVariables: { ...desired.environmentVariables, [INSTANCE_ENV.restartAt]: restartedAt } };
}

/** A function FC holds, in the port's terms: its checkpoint (its instances' SD_MODEL) and what it runs with. */
export function runtimeFunctionOf(fn: Record<string, unknown>): RuntimeFunction {
  const env = (fn.environmentVariables ?? {}) as Record<string, string>;
  const container = (fn.customContainerConfig ?? {}) as { image?: string };
  const gpu = (fn.gpuConfig ?? {}) as { gpuType?: string; gpuMemorySize?: number };
  const resources: Record<string, unknown> = {
    image: container.image,
    cpu: fn.cpu,
    memorySize: fn.memorySize,
    diskSize: fn.diskSize,
    gpuMemorySize: gpu.gpuMemorySize,
    instanceType: gpu.gpuType,
    timeout: fn.timeout,
    ...resourcesFromEnv(env),
  };
  return {
    functionName: String(fn.functionName),
    model: env[INSTANCE_ENV.model] ?? '',
    resources: Object.fromEntries(Object.entries(resources).filter(([, value]) => value !== undefined)),
  };
}

/** The function's minInstances, when its resources set one: FC keeps that many provisioned instances. */
export function minInstancesOf(spec: FunctionSpec): number | undefined {
  const min = spec.resources?.minInstances;
  return typeof min === 'number' && Number.isInteger(min) && min >= 0 ? min : undefined;
}

/**
 * PutProvisionConfig's body for `instances` provisioned instances of the function's LATEST version. Idle mode on (the
 * GPU and CPU are not always allocated): a provisioned GPU instance that serves no request is frozen and billed at
 * FC's idle rate. The count goes in `defaultTarget` and, equal, in `target`, which FC 3.0 deprecated for it but the
 * SDK's model still marks required.
 */
export function provisionInput(instances: number): {
  defaultTarget: number;
  target: number;
  alwaysAllocateCPU: boolean;
  alwaysAllocateGPU: boolean;
} {
  return { defaultTarget: instances, target: instances, alwaysAllocateCPU: false, alwaysAllocateGPU: false };
}
