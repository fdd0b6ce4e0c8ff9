import { z } from 'zod';
import type { GenerationSchemas } from './schemas.js';

// GET /openapi.json, generated from the same zod schemas the API validates with, so the spec cannot drift.

const jsonBody = (schema: z.ZodType) => ({
  required: true,
  content: { 'application/json': { schema: z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) } },
});

const headers = [
  { name: 'Request-Type', in: 'header', schema: { type: 'string', enum: ['sync', 'async'] } },
  { name: 'taskId', in: 'header', schema: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } },
  { name: 'Idempotency-Key', in: 'header', schema: { type: 'string', maxLength: 200 } },
];

const answers = {
  '200': { description: 'sync: the task ended as succeeded or cancelled; async: the task was accepted' },
  '202': { description: 'sync wait longer than SDFLOW_SYNC_TIMEOUT_S: poll /tasks/{taskId}/result' },
  '400': { description: 'malformed body or field; the message names the field' },
  '404': { description: 'unknown model' },
  '409': { description: 'duplicate taskId' },
  '413': { description: 'body over SDFLOW_MAX_BODY_MB' },
  '422': { description: 'SD rejected the input' },
  '500': { description: 'the task failed; the message says why' },
};

const taskIdParam = [{ name: 'taskId', in: 'path', required: true, schema: { type: 'string' } }];

export function openApiDocument(schemas: GenerationSchemas) {
  const submit = (summary: string, schema: z.ZodType) => ({
    post: { summary, parameters: headers, requestBody: jsonBody(schema), responses: answers },
  });
  return {
    openapi: '3.1.0',
    info: { title: 'sdflow', version: '0.1.0', description: 'Stable Diffusion API platform' },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    security: [{ bearer: [] }],
    paths: {
      '/txt2img': submit('Generate images from a prompt', schemas.txt2img),
      '/img2img': submit('Generate images from images', schemas.img2img),
      '/extra_images': submit('Upscale one image', schemas.extraImages),
      '/tasks/{taskId}/result': {
        get: {
          summary: 'A task and its signed image URLs',
          parameters: taskIdParam,
          responses: { '200': { description: 'the task' }, '404': { description: 'unknown task' } },
        },
      },
      '/tasks/{taskId}/progress': {
        get: {
          summary: 'Progress of a task',
          parameters: taskIdParam,
          responses: { '200': { description: 'progress 0..1' }, '404': { description: 'unknown task' } },
        },
      },
      '/tasks/{taskId}/cancellation': {
        post: {
          summary: 'Cancel a waiting or running task',
          parameters: taskIdParam,
          responses: {
            '200': { description: 'cancelled or being cancelled' },
            '409': { description: 'the task is already final' },
          },
        },
      },
      '/models': { get: { summary: 'The model registry', responses: { '200': { description: 'models' } } } },
      '/models/{name}': {
        get: {
          summary: 'One model',
          responses: { '200': { description: 'the model' }, '404': { description: 'unknown model' } },
        },
      },
      '/list/sdapi/functions': {
        get: { summary: 'Checkpoint functions', responses: { '200': { description: 'functions' } } },
      },
      '/healthz': {
        get: {
          summary: 'Readiness',
          security: [],
          responses: { '200': { description: 'ready' }, '503': { description: 'not ready, with the reasons' } },
        },
      },
    },
  };
}
