import { z } from 'zod';
import { TASK_ID } from '../protocol/invoke.js';
import { SCHEDULING_HEADERS } from './request-headers.js';
import type { GenerationSchemas } from './schemas.js';

// The OpenAPI paths of the A1111 drop-in's generation routes, progress and interrupt. openapi.ts merges them into
// /openapi.json, beside the drop-in's options and lists (openapi-functions.ts).

const jsonBody = (schema: z.ZodType) => ({
  required: true,
  content: { 'application/json': { schema: z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) } },
});

const dropInHeaders = [
  {
    name: 'Prefer',
    in: 'header',
    schema: { type: 'string', enum: ['respond-async'] },
    description: 'answer 202 {taskId, status} at once instead of waiting for the images',
  },
  { name: 'taskId', in: 'header', schema: { type: 'string', pattern: TASK_ID.source } },
  { name: 'Idempotency-Key', in: 'header', schema: { type: 'string', maxLength: 200 } },
  {
    name: 'version',
    in: 'header',
    schema: { type: 'integer', minimum: 1 },
    description: 'which version of your options to apply; the latest when absent',
  },
  ...SCHEDULING_HEADERS,
];

const generation = (summary: string, schema: z.ZodType) => ({
  post: {
    summary:
      `${summary}, as A1111 answers it, queued behind the global GPU cap. The checkpoint is ` +
      'override_settings.sd_model_checkpoint, else yours (POST /sdapi/v1/options), else the default. Waits up to ' +
      'SDFLOW_A1111_SYNC_TIMEOUT_S; the answer carries a taskId header.',
    parameters: dropInHeaders,
    requestBody: jsonBody(schema),
    responses: {
      '200': { description: "A1111's answer: {images (base64), parameters, info}" },
      '202': { description: 'with Prefer: respond-async, or a wait past the timeout: {taskId, status}' },
      '400': { description: 'malformed body or field; the message names it' },
      '404': { description: 'unknown checkpoint' },
      '409': { description: 'the checkpoint is not loaded, or the taskId exists' },
      '422': { description: 'SD rejected the input' },
      '500': { description: 'the task failed; the message says why' },
      '503': { description: 'the checkpoint is quarantined: the message says why, Retry-After when a probe may run' },
    },
  },
});

export function a1111Paths(schemas: GenerationSchemas) {
  return {
    '/sdapi/v1/txt2img': generation('Generate images from a prompt', schemas.a1111.txt2img),
    '/sdapi/v1/img2img': generation('Generate images from images', schemas.a1111.img2img),
    '/sdapi/v1/extra-single-image': generation('Upscale one image', schemas.extraImages),
    '/sdapi/v1/progress': {
      get: {
        summary: "Progress of your latest task, in A1111's shape (progress 0 and no job when none is open)",
        parameters: [
          {
            name: 'skip_current_image',
            in: 'query',
            schema: { type: 'boolean' },
            description: 'leave out the live preview',
          },
        ],
        responses: {
          '200': {
            description: '{progress, eta_relative, state, current_image, textinfo}; textinfo gives the queue place',
          },
        },
      },
    },
    '/sdapi/v1/interrupt': {
      post: {
        summary:
          'End your running task early, as A1111 does: its waiting call returns the images made so far (not a cancel)',
        responses: { '200': { description: '{}' } },
      },
    },
  };
}
