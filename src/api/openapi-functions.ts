import { z } from 'zod';
import { batchUpdateBody, deleteFunctionsBody, optionsBody } from './platform-schemas.js';

// The OpenAPI paths of the function admin routes, per-user options and the passthrough, generated from the same zod
// schemas the routes validate with. openapi.ts merges them into /openapi.json.

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
  { name: 'taskId', in: 'header', schema: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } },
];

const passthrough = (prefix: string) => ({
  get: {
    summary: `A1111 read under ${prefix}, forwarded to an agent of the checkpoint named by ?model= (else the default)`,
    parameters: [{ name: 'model', in: 'query', schema: { type: 'string' } }],
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

export function functionAndOptionPaths() {
  const versionParam = [{ name: 'version', in: 'path', required: true, schema: { type: 'integer', minimum: 1 } }];
  return {
    '/batch_update_sd_resource': {
      post: {
        summary:
          'Apply resources to the functions of some checkpoints (models), some functions, or all (admin). The local ' +
          'runtime applies env, extraArgs, timeout, maxInstances and keepAliveS; the rest is recorded.',
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
    '/sdapi/v1/{path}': passthrough('/sdapi/v1/'),
    '/controlnet/{path}': passthrough('/controlnet/'),
  };
}
