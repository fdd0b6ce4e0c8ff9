import { z } from 'zod';
import { assertSafeKey, ObjectKeyError } from '../platform/object-store/keys.js';
import { MODEL_TYPES, type ModelType } from '../records.js';

// The request schemas of model management (POST /models, PUT /models/{name}): the routes validate with them and
// /openapi.json is generated from them. A model's name is a plain file name, since it is the last segment of its
// object key `models/<type>/<name>`, which every instance sees as a file in its model directory.

export const MAX_MODEL_NAME = 200;

const required = (what: string, type: string) => (issue: { input?: unknown }) =>
  issue.input === undefined ? `is required: ${what}` : `must be ${type}`;

export const modelType = z.enum(MODEL_TYPES as [ModelType, ...ModelType[]], {
  error: (issue) =>
    issue.input === undefined
      ? `is required: one of ${MODEL_TYPES.join(', ')}`
      : `must be one of ${MODEL_TYPES.join(', ')}`,
});

export const modelName = z
  .string({ error: required('the model file name, e.g. my-model.safetensors', 'a string') })
  .min(1, 'must not be empty')
  .max(MAX_MODEL_NAME, `must be at most ${MAX_MODEL_NAME} characters`)
  .refine((v) => !/[/\\]/.test(v), 'must be a plain file name, without / or \\')
  .refine((v) => !v.includes('..'), 'must not contain ..')
  .refine((v) => !v.startsWith('.'), 'must not start with a dot (hidden files are not models)')
  .refine((v) => ![...v].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f), {
    message: 'must not contain control characters',
  })
  .refine((v) => v.trim() === v, 'must not start or end with whitespace')
  .describe('the model file name, e.g. my-lora.safetensors');

/** An object key that passes the store's key rules; whether an object is there is checked afterwards. */
export const ossPath = z
  .string({ error: required('the object key of the model file', 'a string') })
  .superRefine((key, ctx) => {
    try {
      assertSafeKey(key);
    } catch (err) {
      if (!(err instanceof ObjectKeyError)) throw err;
      ctx.addIssue({ code: 'custom', message: err.message });
    }
  })
  .describe('object key of a file already in the store; it is copied to models/<type>/<name>');

/** POST /models with a JSON body: register a file already in the object store. */
export const registerModelBody = z.object({ type: modelType, name: modelName, ossPath });

/** POST /models as multipart/form-data: these fields, then the file part `file`. */
export const registerModelForm = z.object({ type: modelType, name: modelName });

/** PUT /models/{name} with a JSON body: a new file (ossPath), a new type, both, or neither (re-checks the file). */
export const updateModelBody = z.object({ type: modelType.optional(), ossPath: ossPath.optional() });

/** PUT /models/{name} as multipart/form-data: optionally `type`, then the file part `file`. */
export const updateModelForm = z.object({ type: modelType.optional() });

export type RegisterModelBody = z.infer<typeof registerModelBody>;
export type UpdateModelBody = z.infer<typeof updateModelBody>;
