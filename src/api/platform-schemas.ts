import { z } from 'zod';
import { isPlatformEnvName, RESERVED_ENV } from '../protocol/instance-env.js';

// Request schemas of the function admin routes (batch update, delete) and of per-user options. The routes validate
// with them and /openapi.json is generated from them. Admin bodies are strict: a misspelt field is a 400 naming
// it, not a silently ignored setting.

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MAX_NAMES = 1000;

const unknownFields = (issue: { code?: string; keys?: string[] }) =>
  issue.code === 'unrecognized_keys' ? `unknown field(s): ${(issue.keys ?? []).join(', ')}` : undefined;

const names = (what: string) =>
  z
    .array(z.string({ error: 'must be a string' }).min(1, 'must not be empty').max(255, 'is too long'), {
      error: `must be an array of ${what}`,
    })
    .max(MAX_NAMES, `must name at most ${MAX_NAMES}`);

const number = () => z.number({ error: 'must be a number' }).refine(Number.isFinite, 'must be a finite number');
const positiveInteger = (max: number) =>
  number()
    .refine(Number.isInteger, 'must be an integer')
    .pipe(z.number().min(1, 'must be at least 1').max(max, `must be at most ${max}`));
const count = (max: number) =>
  number()
    .refine(Number.isInteger, 'must be an integer')
    .pipe(z.number().min(0, 'must be at least 0').max(max, `must be at most ${max}`));
const text = (max: number) =>
  z.string({ error: 'must be a string' }).min(1, 'must not be empty').max(max, `must be at most ${max} characters`);
const config = (what: string) => z.record(z.string(), z.unknown(), { error: `must be an object (${what})` });

const env = z
  .record(z.string(), z.string({ error: 'must be a string' }).max(32_768, 'must be at most 32768 characters'), {
    error: 'must be an object of NAME: "value"',
  })
  .superRefine((vars, ctx) => {
    for (const name of Object.keys(vars)) {
      if (!ENV_NAME.test(name)) {
        ctx.addIssue({ code: 'custom', path: [name], message: 'is not a valid environment variable name' });
      } else if (isPlatformEnvName(name)) {
        ctx.addIssue({ code: 'custom', path: [name], message: 'is set by the platform and cannot be changed' });
      }
    }
  });

/** The resource fields of `POST /batch_update_sd_resource`, each applied to every selected function. */
export const resourceFields = {
  image: text(1024).optional().describe('container image (recorded for the cloud runtime)'),
  cpu: number().pipe(z.number().gt(0, 'must be more than 0')).optional().describe('vCPUs (recorded)'),
  instanceType: text(100).optional().describe('GPU instance type, e.g. fc.gpu.ampere.1 (recorded)'),
  memorySize: positiveInteger(1_048_576).optional().describe('memory in MB (recorded)'),
  gpuMemorySize: positiveInteger(1_048_576).optional().describe('GPU memory in MB (recorded)'),
  timeout: positiveInteger(86_400).optional().describe('seconds one request may run on an instance'),
  extraArgs: z
    .string({ error: 'must be a string' })
    .max(8192, 'must be at most 8192 characters')
    .optional()
    .describe('WebUI launch arguments; changing them replaces the instances'),
  vpcConfig: config('VPC settings').optional().describe('recorded for the cloud runtime'),
  nasConfig: config('NAS mounts').optional().describe('recorded for the cloud runtime'),
  ossMountConfig: config('OSS mounts').optional().describe('recorded for the cloud runtime'),
  env: env
    .optional()
    .describe(
      'merged into the instance environment; changing it replaces the instances. The variables the platform sets ' +
        `are refused: ${RESERVED_ENV.join(', ')}`,
    ),
  maxInstances: positiveInteger(1000).optional().describe('instances per function, at most'),
  keepAliveS: number()
    .pipe(z.number().min(0, 'must be at least 0').max(604_800, 'must be at most 604800'))
    .optional()
    .describe('seconds an idle instance is kept (local runtime; above minInstances)'),
  minInstances: count(1000)
    .optional()
    .describe(
      'instances kept started whatever keepAliveS says, at most maxInstances (FC: provisioned instances, in idle ' +
        'mode); 0 lets them go',
    ),
  prewarmQueueDepth: positiveInteger(100_000)
    .optional()
    .describe(
      "tasks of the checkpoint waiting for a slot that start a pre-warm: instances up to the checkpoint's share of " +
        'the cap start before their tasks are granted (absent: no pre-warm)',
    ),
};

export type ResourceUpdate = { [K in keyof typeof resourceFields]?: z.output<(typeof resourceFields)[K]> };

export const batchUpdateBody = z
  .strictObject(
    {
      models: names('checkpoint names').optional().describe('the functions of these checkpoints'),
      functions: names('function names').optional().describe('these functions (or checkpoint names)'),
      ...resourceFields,
    },
    { error: unknownFields },
  )
  .superRefine((body, ctx) => {
    if (body.minInstances !== undefined && body.maxInstances !== undefined && body.minInstances > body.maxInstances) {
      ctx.addIssue({
        code: 'custom',
        path: ['minInstances'],
        message: `must be at most maxInstances (${body.maxInstances})`,
      });
    }
    if (!Object.keys(resourceFields).some((field) => body[field as keyof typeof body] !== undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [],
        message: `names no resource to update; set one of ${Object.keys(resourceFields).join(', ')}`,
      });
    }
  });

export const deleteFunctionsBody = z.strictObject(
  {
    functions: names('function names (or checkpoint names)')
      .min(1, 'must name at least one function')
      .describe('function names, or checkpoint names whose functions to delete'),
  },
  { error: unknownFields },
);

export const MAX_OPTIONS_BYTES = 64 * 1024;

const webUiSettings = z
  .record(z.string(), z.unknown(), {
    error: 'must be an object of WebUI settings, e.g. {"CLIP_stop_at_last_layers": 2}',
  })
  .refine(
    (data) => Buffer.byteLength(JSON.stringify(data)) <= MAX_OPTIONS_BYTES,
    `must be at most ${MAX_OPTIONS_BYTES / 1024} KB of JSON`,
  );

/**
 * `POST /functions/{name}/options`: WebUI settings for every instance of one function, as A1111's options body. A
 * null puts a setting back to the WebUI's default. The checkpoint is the function's own and cannot be set here.
 */
export const functionOptionsBody = webUiSettings.superRefine((data, ctx) => {
  if (data.sd_model_checkpoint !== undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['sd_model_checkpoint'],
      message: 'is the checkpoint the function is pinned to; it cannot be changed',
    });
  }
});

/** `POST /options`: the caller's WebUI settings, applied to their requests as override_settings. */
export const optionsBody = z.object({ data: webUiSettings });
