import { z } from 'zod';
import { TASK_ID } from '../protocol/invoke.js';
import { batchUpdateBody, deleteFunctionsBody, functionOptionsBody, optionsBody } from './platform-schemas.js';
import { SCHEDULING_HEADERS } from './request-headers.js';

// The OpenAPI paths of the function admin routes, per-user options, the drop-in's options and lists, and the
// passthrough, generated from the same zod schemas the routes validate with. openapi.ts merges them into /openapi.json.

const jsonBody = (schema: z.ZodType) => ({
  required: true,
  content: { 'application/json': { schema: z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) } },
});

const batchAnswers = (what: string) => ({
  '200': { description: `every ${what} applied: {status: "success", ...}` },
  '400': { description: 'malformed body or field; the message names it' },
  '403': { description: 'needs an admin key' },
  '404': { description: `some ${what} failed, each for an unknown name: {status: "fail", ...}` },
  '500': { description: `some ${what} failed in the function runtime: {status: "fail", ...}` },
});

const passthroughHeaders = [
  { name: 'Request-Type', in: 'header', schema: { type: 'string', enum: ['sync', 'async'] } },
  {
    name: 'Task-Flag',
    in: 'header',
    schema: { type: 'string', enum: ['true'] },
    description: 'answer with the taskId header too; the recorded answer is at /tasks/{taskId}/result',
  },
  { name: 'taskId', in: 'header', schema: { type: 'string', pattern: TASK_ID.source } },
  ...SCHEDULING_HEADERS,
];

const passthrough = (prefix: string) => ({
  get: {
    summary:
      `A1111 read under ${prefix}, forwarded to an agent of the checkpoint named by ?model= (else yours, else the ` +
      'default); with Task-Flag: true it runs as a task behind the cap, as a POST does',
    parameters: [{ name: 'model', in: 'query', schema: { type: 'string' } }, ...passthroughHeaders],
    responses: {
      '2XX': { description: "SD's answer as it is" },
      '4XX': { description: "SD's answer as it is; 404 for an unknown checkpoint or path; 403 admin-only route" },
      '502': { description: 'SD answered 5xx, or the function could not be reached' },
    },
  },
  post: {
    summary:
      `A1111 call under ${prefix}, run as a task on the checkpoint named by stable_diffusion_model or ` +
      'override_settings.sd_model_checkpoint (else the default). Base64 images in the answer become object keys, ' +
      'with signed URLs in ossUrl. PUT, PATCH and DELETE work the same.',
    parameters: passthroughHeaders,
    requestBody: { content: { 'application/json': { schema: { type: 'object' } } } },
    responses: {
      '200': { description: "SD's answer; async: {status, taskId}" },
      '202': { description: 'sync wait longer than SDFLOW_SYNC_TIMEOUT_S: poll /tasks/{taskId}/result' },
      '4XX': { description: "SD's 4xx as it is; 403 for an admin-only route from a user key; 404 unknown checkpoint" },
      '502': { description: 'SD answered 5xx on every attempt, or the function could not be reached' },
      '504': { description: 'the task deadline passed' },
    },
  },
});

/** A drop-in list answered from the registry: loaded models only, in A1111's shape, object keys for paths. */
const registryList = (what: string) => ({
  get: {
    summary: `${what}, from the registry (loaded models only; no instance is involved)`,
    responses: { '200': { description: "A1111's shape, with the object key where A1111 has a path" } },
  },
});

const refresh = {
  post: {
    summary: 'Nothing to refresh: the lists come from the registry, which is always current',
    responses: { '200': { description: 'null' } },
  },
};

const settingsBody = {
  required: true,
  content: { 'application/json': { schema: { type: 'object', additionalProperties: true } } },
};

export function functionAndOptionPaths() {
  const versionParam = [{ name: 'version', in: 'path', required: true, schema: { type: 'integer', minimum: 1 } }];
  return {
    '/batch_update_sd_resource': {
      post: {
        summary:
          'Apply resources to the functions of some checkpoints (models), some functions, or all (admin). The local ' +
          'runtime applies env, extraArgs, timeout, maxInstances, keepAliveS and minInstances, FC minInstances (as ' +
          'provisioned instances); prewarmQueueDepth starts a pre-warm on bursts; the rest is recorded.',
        requestBody: jsonBody(batchUpdateBody),
        responses: batchAnswers('function update'),
      },
    },
    '/del/sd/functions': {
      post: {
        summary: 'Delete functions and their records (admin); the next request for a checkpoint recreates its function',
        requestBody: jsonBody(deleteFunctionsBody),
        responses: batchAnswers('delete'),
      },
    },
    '/restart': {
      post: {
        summary: "Recycle every function's instances: idle ones now, busy ones after their request (admin)",
        responses: { '200': { description: '{status: "success"}' }, '403': { description: 'needs an admin key' } },
      },
    },
    '/options': {
      get: {
        summary: 'Your latest options: {version, data} ({version: 0, data: {}} when none)',
        responses: { '200': { description: 'the options' } },
      },
      post: {
        summary:
          'Store a new version of your WebUI settings, applied to your txt2img/img2img requests as override_settings ' +
          "(the request's own keys win; sd_model_checkpoint is never applied)",
        requestBody: jsonBody(optionsBody),
        responses: {
          '200': { description: '{message, version, data}' },
          '400': { description: 'data is not an object, or over 64 KB' },
        },
      },
    },
    '/options/{version}': {
      get: {
        summary: 'One version of your options',
        parameters: versionParam,
        responses: { '200': { description: '{version, data}' }, '404': { description: 'no such version' } },
      },
    },
    '/functions/{name}': {
      get: {
        summary:
          'One function (by function or checkpoint name) as its record and the runtime see it: resources, the limits ' +
          'in effect and the instances (admin)',
        parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }],
        responses: {
          '200': { description: '{functionName, model, resources, runtime: {resources, limits, instances} | null}' },
          '403': { description: 'needs an admin key' },
          '404': { description: 'unknown function' },
        },
      },
    },
    '/functions/{name}/options': {
      get: {
        summary: "One function's WebUI settings (by function or checkpoint name)",
        parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }],
        responses: { '200': { description: '{functionName, model, options}' }, '404': { description: 'unknown' } },
      },
      post: {
        summary:
          "Merge WebUI settings into one function's (admin): every instance starts with them, running ones are " +
          'replaced (idle now, busy after their request). A null puts a setting back to its default.',
        parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }],
        requestBody: jsonBody(functionOptionsBody),
        responses: {
          '200': { description: '{status: "success", functionName, model, options}' },
          '400': { description: 'an unknown setting, or sd_model_checkpoint (the function is pinned to its own)' },
          '403': { description: 'needs an admin key' },
          '404': { description: 'unknown function or checkpoint, or an unknown sd_vae' },
        },
      },
    },
    '/sdapi/v1/options': {
      get: {
        summary:
          "A1111's whole option set, your values over the defaults; sd_model_checkpoint is the title of the " +
          'checkpoint your drop-in generations use',
        responses: { '200': { description: 'the options' } },
      },
      post: {
        summary:
          "Merge settings into a new version of your options, as A1111 merges; sd_model_checkpoint (any of A1111's " +
          'aliases) chooses the checkpoint of your drop-in generations that name none. No instance is touched.',
        requestBody: settingsBody,
        responses: {
          '200': { description: 'null' },
          '404': { description: 'unknown checkpoint or VAE' },
          '409': { description: 'the checkpoint or VAE is not loaded' },
          '422': { description: "an unknown setting: A1111's {detail}" },
        },
      },
    },
    '/sdapi/v1/sd-models': registryList('Checkpoints'),
    '/sdapi/v1/sd-vae': registryList('VAEs'),
    '/sdapi/v1/loras': registryList('LoRAs'),
    '/sdapi/v1/hypernetworks': registryList('Hypernetworks (the registry has none: [])'),
    '/sdapi/v1/embeddings': registryList('Embeddings (the registry has none: {loaded: {}, skipped: {}})'),
    '/controlnet/model_list': registryList('ControlNet models'),
    '/sdapi/v1/refresh-checkpoints': refresh,
    '/sdapi/v1/refresh-vae': refresh,
    '/sdapi/v1/refresh-loras': refresh,
    '/sdapi/v1/refresh-embeddings': refresh,
    '/sdapi/v1/{path}': passthrough('/sdapi/v1/'),
    '/controlnet/{path}': passthrough('/controlnet/'),
  };
}
