import { z } from 'zod';
import { TASK_ID } from '../protocol/invoke.js';
import { registerModelBody, registerModelForm, updateModelBody, updateModelForm } from './model-schemas.js';
import { a1111Paths } from './openapi-a1111.js';
import { functionAndOptionPaths } from './openapi-functions.js';
import { SCHEDULING_HEADERS } from './request-headers.js';
import { taskListQuery } from './routes/tasks.js';
import { type GenerationSchemas, retryBody } from './schemas.js';
import { usageQuery } from './usage.js';

// GET /openapi.json, generated from the same zod schemas the API validates with, so the spec cannot drift.

/** `anyOf: [{anyOf: [a, b]}, c]` as `anyOf: [a, b, c]`: a nullable number reads number | numeric string | null. */
function flattenAnyOf({ jsonSchema }: { jsonSchema: z.core.JSONSchema.BaseSchema }) {
  jsonSchema.anyOf &&= jsonSchema.anyOf.flatMap((option) =>
    Object.keys(option).length === 1 && option.anyOf ? option.anyOf : [option],
  );
}

const toSchema = (schema: z.ZodType) =>
  z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any', override: flattenAnyOf });

const jsonBody = (schema: z.ZodType) => ({
  required: true,
  content: { 'application/json': { schema: toSchema(schema) } },
});

const headers = [
  { name: 'Request-Type', in: 'header', schema: { type: 'string', enum: ['sync', 'async'] } },
  { name: 'taskId', in: 'header', schema: { type: 'string', pattern: TASK_ID.source } },
  { name: 'Idempotency-Key', in: 'header', schema: { type: 'string', maxLength: 200 } },
  {
    name: 'version',
    in: 'header',
    schema: { type: 'integer', minimum: 1 },
    description: 'which version of your options to apply (txt2img, img2img); the latest when absent',
  },
  ...SCHEDULING_HEADERS,
];

const answers = {
  '200': {
    description:
      'sync: the task ended as succeeded or cancelled; async: the task was accepted ({status, taskId}, and while it waits estimatedStartS and estimatedFinishS)',
  },
  '202': { description: 'sync wait longer than SDFLOW_SYNC_TIMEOUT_S: poll /tasks/{taskId}/result' },
  '400': {
    description:
      'malformed body, field or header (Task-Priority, Task-Deadline), or a webhook target that is not allowed; the message names it',
  },
  '403': { description: "Task-Priority above your key's maxLane" },
  '404': { description: 'unknown model' },
  '409': {
    description:
      'duplicate taskId, or a Task-Deadline the estimate already misses ({message, estimatedStartS, estimatedFinishS}; no task is created)',
  },
  '413': { description: 'body over SDFLOW_MAX_BODY_MB' },
  '422': { description: 'SD rejected the input' },
  '500': { description: 'the task failed; the message says why' },
  '503': {
    description:
      'the checkpoint is quarantined (its instances kept failing): the message says why, Retry-After when a probe may run',
  },
};

/** A model request body: JSON naming an object already in the store, or a form whose file part comes last. */
const modelBody = (json: z.ZodType, form: z.ZodType, fileRequired: boolean) => {
  const fields = toSchema(form) as { properties?: object; required?: string[] };
  return {
    required: fileRequired,
    content: {
      'application/json': { schema: toSchema(json) },
      'multipart/form-data': {
        schema: {
          ...fields,
          properties: { ...fields.properties, file: { type: 'string', format: 'binary' } },
          required: [...(fields.required ?? []), 'file'],
        },
        encoding: { file: { contentType: 'application/octet-stream' } },
      },
    },
  };
};

const modelNameParam = [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }];
const waitParams = [
  { name: 'wait', in: 'query', schema: { type: 'boolean' }, description: 'wait for the registration to end' },
  { name: 'Request-Type', in: 'header', schema: { type: 'string', enum: ['sync', 'async'] } },
];
const registrationAnswers = {
  '202': { description: 'registration started: the model (status registering) and its workflowId' },
  '200': { description: 'with wait: the model, loaded' },
  '400': { description: 'malformed field (type, name, ossPath, file); the message names it' },
  '403': { description: 'needs an admin key' },
  '409': { description: 'a model of that name exists, or its registration is still running' },
  '413': { description: 'upload over SDFLOW_MAX_MODEL_UPLOAD_MB' },
  '422': { description: 'with wait: the file is broken; the message says why' },
  '500': { description: 'with wait: the registration failed for another reason, given in the message' },
};

/** A query object's fields as OpenAPI query parameters. */
function queryParams(schema: z.ZodObject) {
  const json = toSchema(schema) as { properties?: Record<string, object> };
  return Object.entries(json.properties ?? {}).map(([name, fieldSchema]) => ({
    name,
    in: 'query',
    schema: fieldSchema,
  }));
}

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
      '/tasks': {
        get: {
          summary: "Your tasks, newest first, a page at a time (an admin's: every user's, or one user's)",
          parameters: queryParams(taskListQuery),
          responses: {
            '200': { description: '{tasks:[…], cursor?}: pass cursor back for the next page' },
            '400': { description: 'malformed query field or cursor; the message names it' },
            '403': { description: "user: another user's tasks need an admin key" },
          },
        },
      },
      '/usage': {
        get: {
          summary:
            "The cost of your tasks created in [from, to), summed by checkpoint (an admin's: every user's, or one user's)",
          parameters: queryParams(usageQuery),
          responses: {
            '200': {
              description:
                "{from, to, rows: [{user, model, tasks, images, queueS, coldStartS, gpuS, billedGpuS}]}: seconds, from the succeeded tasks' cost",
            },
            '400': { description: 'from or to is not an ISO 8601 instant, or from is after to; the message names it' },
            '403': { description: "user: another user's usage needs an admin key" },
          },
        },
      },
      '/tasks/{taskId}': {
        delete: {
          summary:
            "Delete a final task's images, inputs and previews; its record stays, as status deleted (yours, or any as an admin)",
          parameters: taskIdParam,
          responses: {
            '200': { description: '{taskId, status: "deleted"}' },
            '404': { description: "unknown task (another user's task is unknown too)" },
            '409': { description: 'the task is waiting or running: cancel it first' },
          },
        },
      },
      '/tasks/{taskId}/result': {
        get: {
          summary:
            "A task and its signed image URLs (a deleted task has none); a succeeded task's cost: {queueS, coldStartS, gpuS, idleS, billedGpuS, gpuType, images}",
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
      '/tasks/{taskId}/events': {
        get: {
          summary:
            "A task's events as Server-Sent Events: status {status, phase, coldStart?, queuePosition?} (ids 1, 2, … " +
            'per task), progress {progress, etaRelative, state}, preview {currentImage, currentImageUrl}, then ' +
            'completed (the result view), after which the stream ends. A comment every 15 s of silence',
          parameters: [
            ...taskIdParam,
            {
              name: 'Last-Event-ID',
              in: 'header',
              schema: { type: 'string', pattern: '^[0-9]+$' },
              description:
                'resume after this status event: every later status event, then the latest progress and preview',
            },
          ],
          responses: {
            '200': { description: 'the stream', content: { 'text/event-stream': { schema: { type: 'string' } } } },
            '400': { description: 'Last-Event-ID is not a status event id' },
            '404': { description: 'unknown task' },
          },
        },
      },
      '/tasks/{taskId}/webhooks': {
        get: {
          summary:
            "A task's webhook and every delivery attempt: {taskId, webhook: {url, events} | null, attempts: " +
            '[{event, webhookId, at, statusCode?, error?, durationMs}]}',
          parameters: taskIdParam,
          responses: { '200': { description: 'the webhook and its attempts' }, '404': { description: 'unknown task' } },
        },
      },
      '/tasks/{taskId}/webhooks/redeliver': {
        post: {
          summary: "Send a final task's completed webhook again, with the same webhook-id",
          parameters: taskIdParam,
          responses: {
            '202': { description: '{taskId, event: "completed", webhookId}: handed to its delivery' },
            '404': { description: 'unknown task' },
            '409': { description: 'the task has no webhook, or has not ended' },
          },
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
      '/tasks/{taskId}/retry': {
        post: {
          summary:
            "Run a failed or cancelled task again as a new task (retryOf names the original), with the original's params " +
            'and webhook (the body may name its own)',
          parameters: [...taskIdParam, ...headers.filter((h) => h.name !== 'version')],
          requestBody: { ...jsonBody(retryBody), required: false },
          responses: {
            ...answers,
            '404': { description: 'unknown task, or its checkpoint is gone' },
            '409': { description: 'the task is not failed or cancelled, or the new taskId exists' },
          },
        },
      },
      '/models': {
        get: { summary: 'The model registry', responses: { '200': { description: 'models' } } },
        post: {
          summary: 'Register a model: JSON naming an object in the store, or a multipart upload (admin)',
          parameters: waitParams,
          requestBody: modelBody(registerModelBody, registerModelForm, true),
          responses: registrationAnswers,
        },
      },
      '/models/{name}': {
        get: {
          summary: "One model; a checkpoint's with its health (ok, quarantined, probing), healthReason and healthSince",
          parameters: modelNameParam,
          responses: { '200': { description: 'the model' }, '404': { description: 'unknown model' } },
        },
        put: {
          summary: 'Update a model: a new file or type re-registers it and recycles the instances using it (admin)',
          parameters: [...modelNameParam, ...waitParams],
          requestBody: modelBody(updateModelBody, updateModelForm, false),
          responses: {
            ...registrationAnswers,
            '200': { description: 'nothing changed (or, with wait, the model loaded again)' },
            '404': { description: 'unknown model' },
          },
        },
        delete: {
          summary: 'Soft-delete a model: new requests for it get 404, running tasks finish (admin)',
          parameters: modelNameParam,
          responses: {
            '200': { description: 'the model, status deleted' },
            '403': { description: 'needs an admin key' },
            '404': { description: 'unknown model' },
          },
        },
      },
      '/models/{name}/quarantine': {
        delete: {
          summary: "Lift a checkpoint's quarantine: its circuit breaker closes and its tasks run again (admin)",
          parameters: modelNameParam,
          responses: {
            '200': { description: 'the model, health ok' },
            '400': { description: 'the model is not a checkpoint' },
            '403': { description: 'needs an admin key' },
            '404': { description: 'unknown model' },
          },
        },
      },
      '/list/sdapi/functions': {
        get: { summary: 'Checkpoint functions', responses: { '200': { description: 'functions' } } },
      },
      '/list/sdapi/fucntions': {
        get: {
          summary: 'The same list under a misspelt path existing clients call',
          deprecated: true,
          responses: { '200': { description: 'functions' } },
        },
      },
      ...functionAndOptionPaths(),
      ...a1111Paths(schemas),
      '/metrics': {
        get: {
          summary: 'Prometheus metrics: tasks, queue, slots, cold starts, task timings, HTTP requests (admin)',
          responses: {
            '200': {
              description: 'the Prometheus text format',
              content: { 'text/plain': { schema: { type: 'string' } } },
            },
            '403': { description: 'needs an admin key' },
          },
        },
      },
      '/files/{key}': {
        get: {
          summary: 'A signed download (the ossUrl links): the signature authorizes it, no key is needed',
          security: [],
          parameters: [
            { name: 'key', in: 'path', required: true, schema: { type: 'string' }, description: 'the object key' },
            { name: 'expires', in: 'query', required: true, schema: { type: 'integer' } },
            { name: 'signature', in: 'query', required: true, schema: { type: 'string' } },
          ],
          responses: {
            '200': { description: 'the object' },
            '403': { description: 'tampered or expired link' },
            '404': { description: 'no such object' },
          },
        },
      },
      '/openapi.json': {
        get: { summary: 'This document', security: [], responses: { '200': { description: 'OpenAPI 3.1' } } },
      },
      '/docs': {
        get: {
          summary: 'Interactive documentation of this document (Swagger UI, served from this host only)',
          security: [],
          responses: { '200': { description: 'an HTML page' } },
        },
      },
      '/docs/{file}': {
        get: {
          summary: "The documentation page's scripts and styles",
          security: [],
          parameters: [{ name: 'file', in: 'path', required: true, schema: { type: 'string' } }],
          responses: { '200': { description: 'the file' }, '404': { description: 'no such file' } },
        },
      },
      '/console/config.json': {
        get: {
          summary: "The web console's view of the caller: user, role, whether keys are on, the Temporal Web UI",
          responses: { '200': { description: 'the caller and the links the console needs' } },
        },
      },
      '/console': {
        get: {
          summary: 'The web console (redirects to /console/)',
          security: [],
          responses: { '302': { description: 'to /console/' } },
        },
      },
      '/console/{file}': {
        get: {
          summary: "The web console's page, scripts and styles (the key is entered in the page, never in a URL)",
          security: [],
          parameters: [{ name: 'file', in: 'path', required: true, schema: { type: 'string' } }],
          responses: { '200': { description: 'the file' }, '404': { description: 'no such file' } },
        },
      },
      '/healthz': {
        get: {
          summary: 'Readiness',
          security: [],
          responses: {
            '200': { description: 'ready: `{status: "ok", pid}` (the API process, for launchers)' },
            '503': { description: 'not ready: `{status: "starting", problems, pid}`' },
          },
        },
      },
    },
  };
}
