import { z } from 'zod';
import { api } from './api.js';
import { credentials } from './cloud.js';
import {
  fcEnvSchema,
  fcGpuTypeSchema,
  fcNasConfigSchema,
  fcOssMountConfigSchema,
  fcVpcConfigSchema,
} from './fc-schemas.js';
import { functions } from './functions.js';
import { oss } from './oss.js';
import { absoluteDir, argv, bool, int, jsonSetting, num, optionalString } from './schemas.js';
import { group, setting } from './setting.js';
import { shared } from './shared.js';
import { stores } from './stores.js';

/**
 * The Function Compute 3.0 runtime (SDFLOW_FUNCTIONS=fc): how to reach FC, and the GPU function it makes for each
 * checkpoint. The endpoint is <account>.<region>[-internal].fc.aliyuncs.com unless SDFLOW_FC_ENDPOINT overrides it (a
 * URL; its scheme picks http or https).
 */
export const fc = group(
  {
    region: setting({ env: 'SDFLOW_FC_REGION', schema: optionalString, meaning: 'FC region, e.g. cn-hangzhou.' }),
    accountId: setting({
      env: 'SDFLOW_FC_ACCOUNT_ID',
      schema: optionalString.pipe(
        z
          .string()
          .regex(/^\d{1,32}$/, 'the Alibaba Cloud account id (digits)')
          .optional(),
      ),
      meaning: 'Alibaba Cloud account id, for the FC endpoint.',
    }),
    endpoint: setting({
      env: 'SDFLOW_FC_ENDPOINT',
      schema: optionalString,
      meaning: 'FC endpoint URL; wins over region and account.',
    }),
    /** The VPC-internal endpoint, and the triggers' intranet URLs. */
    internal: setting({
      env: 'SDFLOW_FC_INTERNAL',
      schema: bool(false),
      meaning: "Use FC's VPC-internal endpoint and the triggers' intranet URLs (public trigger URLs switched off).",
    }),
    image: setting({
      env: 'SDFLOW_FC_IMAGE',
      schema: optionalString,
      meaning: 'The GPU function image (docker/gpu-function.Dockerfile), in ACR.',
    }),
    /** The port the agent listens on inside the container. */
    port: setting({
      env: 'SDFLOW_FC_PORT',
      schema: int(9000, 1).pipe(z.number().max(65535, 'must be a TCP port')),
      meaning: 'Port the agent listens on inside the container.',
    }),
    /** The container's command (the image's CMD), by default the agent; entrypoint unset keeps the image's. */
    command: setting({
      env: 'SDFLOW_FC_COMMAND',
      schema: jsonSetting(argv),
      meaning: 'Container command, JSON argv (unset: ["sdflow","agent"]).',
      map: (command) => command ?? ['sdflow', 'agent'],
    }),
    entrypoint: setting({
      env: 'SDFLOW_FC_ENTRYPOINT',
      schema: jsonSetting(argv),
      meaning: "Container entrypoint, JSON argv (unset: the image's).",
    }),
    gpuType: setting({
      env: 'SDFLOW_FC_GPU_TYPE',
      schema: fcGpuTypeSchema.default('fc.gpu.tesla.1'),
      meaning: 'FC GPU type of new functions.',
    }),
    gpuMemorySize: setting({
      env: 'SDFLOW_FC_GPU_MEMORY_MB',
      schema: int(16384, 1024),
      meaning: 'GPU memory per instance, a multiple of 1024 within the card.',
    }),
    cpu: setting({ env: 'SDFLOW_FC_CPU', schema: num(8, 0.05), meaning: 'vCPUs per instance.' }),
    memorySize: setting({ env: 'SDFLOW_FC_MEMORY_MB', schema: int(32768, 128), meaning: 'Memory per instance.' }),
    diskSize: setting({
      env: 'SDFLOW_FC_DISK_MB',
      schema: z.coerce
        .number()
        .refine((v) => v === 512 || v === 10240, 'must be 512 or 10240')
        .default(10240),
      meaning: 'Disk per instance: 512 or 10240.',
    }),
    timeoutS: setting({
      env: 'SDFLOW_FC_FUNCTION_TIMEOUT_S',
      schema: int(1800, 1),
      meaning: 'FC timeout of one request.',
    }),
    initializerTimeoutS: setting({
      env: 'SDFLOW_FC_INITIALIZER_TIMEOUT_S',
      schema: int(300, 1),
      meaning: "Timeout of an instance's initializer (the agent's /initialize: WebUI up, checkpoint loaded).",
    }),
    role: setting({
      env: 'SDFLOW_FC_ROLE',
      schema: optionalString.pipe(
        z
          .string()
          .regex(/^acs:ram::\d+:role\/\S+$/, 'a RAM role ARN, acs:ram::<account>:role/<name>')
          .optional(),
      ),
      meaning: 'RAM role ARN of the functions: STS credentials for OSS, and OSS mounts.',
    }),
    vpcConfig: setting({
      env: 'SDFLOW_FC_VPC_CONFIG',
      schema: jsonSetting(fcVpcConfigSchema),
      meaning: 'JSON {vpcId, vSwitchIds, securityGroupId}: the functions run in this VPC (needed for NAS).',
    }),
    nasConfig: setting({
      env: 'SDFLOW_FC_NAS_CONFIG',
      schema: jsonSetting(fcNasConfigSchema),
      meaning: 'JSON {userId?, groupId?, mountPoints:[{serverAddr, mountDir}]}: NAS mounts (models).',
    }),
    ossMountConfig: setting({
      env: 'SDFLOW_FC_OSS_MOUNT_CONFIG',
      schema: jsonSetting(fcOssMountConfigSchema),
      meaning: 'JSON {mountPoints:[{bucketName, bucketPath, endpoint, mountDir, readOnly?}]}: OSS mounts (models).',
    }),
    /** The agent's data dir in the container; the checkpoints are mounted at <dir>/objects/models. */
    agentDataDir: setting({
      env: 'SDFLOW_FC_AGENT_DATA_DIR',
      schema: absoluteDir.default('/mnt/sdflow'),
      meaning: "The agent's data dir in the container; checkpoints are expected at `<dir>/objects/models`.",
    }),
    env: setting({
      env: 'SDFLOW_FC_ENV',
      schema: jsonSetting(fcEnvSchema),
      meaning: 'JSON {NAME: "value"}: extra environment of every function.',
      map: (env) => env ?? {},
    }),
    triggerAuth: setting({
      env: 'SDFLOW_FC_TRIGGER_AUTH',
      schema: z.enum(['function', 'anonymous']).default('function'),
      meaning: 'HTTP trigger auth: function (signed requests) or anonymous.',
    }),
    requestTimeoutS: setting({
      env: 'SDFLOW_FC_REQUEST_TIMEOUT_S',
      schema: num(30, 1),
      meaning: 'Timeout of one FC management API request.',
    }),
    maxAttempts: setting({
      env: 'SDFLOW_FC_MAX_ATTEMPTS',
      schema: int(4, 1),
      meaning: 'Attempts per FC management request, the first included.',
    }),
  },
  (fc, read) => ({
    ...fc,
    /** Each instance serves one request at a time; not a setting. */
    instanceConcurrency: 1,
    credentials: credentials.load(read),
    functionPrefix: read(functions.settings.prefix),
    // What every instance's agent is given: the deployment's object store (instances read inputs and write images
    // where the API expects them), log level and body limit.
    objectStore: read(stores.settings.objectStore),
    oss: oss.load(read),
    logLevel: read(shared.settings.logLevel),
    maxBodyBytes: read(api.settings.maxBodyBytes),
  }),
);
