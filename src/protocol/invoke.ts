import { z } from 'zod';

// The one-request invoke protocol between the worker and a function instance's agent. The worker POSTs an invoke
// request to the agent's /invoke; the agent answers 200 with NDJSON events (events.ts). A closed connection means
// cancel: the agent interrupts SD.

/** A task id, client-chosen (the `taskId` header) or not: it names object keys, so it is a plain word. */
export const TASK_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** What a refused task id is told. */
export const TASK_ID_RULE = `must match ${TASK_ID.source}`;

/** What every invoke carries; the agent then reads `params` by `kind`. */
const invokeRequestSchema = z.object({
  taskId: z.string().regex(TASK_ID, TASK_ID_RULE),
  // The user names a key prefix: no separators, no dot segments.
  user: z
    .string()
    .min(1)
    .max(128)
    .refine(
      (u) => u !== '.' && u !== '..' && !/[/\\]/.test(u) && ![...u].some((c) => c.charCodeAt(0) < 0x20),
      'must not hold / or \\ or control characters, nor be . or ..',
    ),
  kind: z.enum(['txt2img', 'img2img', 'extra', 'passthrough']),
  /** The checkpoint the function is pinned to. */
  model: z.string().min(1),
  /** A1111 body; image fields hold object keys (or base64 for callers that bypass the claim check). */
  params: z.record(z.string(), z.unknown()),
  /** Whether the caller may reference any object key (admin), or only its own. */
  admin: z.boolean().optional(),
});

export type InvokeRequest = z.infer<typeof invokeRequestSchema>;

/** A txt2img, img2img or extra-single-image invoke: `params` is A1111's body for that route. */
export const generationRequestSchema = invokeRequestSchema.extend({ kind: z.enum(['txt2img', 'img2img', 'extra']) });

export type GenerationRequest = z.infer<typeof generationRequestSchema>;

/**
 * The params of a `passthrough` invoke: one A1111 request for SD, as the API received it. Its JSON body travels
 * inline, or, when large, as an object key (`bodyKey`) so it never enters Temporal's history.
 */
const passthroughParamsSchema = z.looseObject({
  method: z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE'], { error: 'must be GET, POST, PUT, PATCH or DELETE' }),
  /** Path and query, e.g. `/sdapi/v1/png-info`. */
  path: z.string().regex(/^\/[^\s]*$/, 'must be an absolute path'),
  body: z.unknown().optional(),
  bodyKey: z.string().min(1).optional(),
});

export const passthroughRequestSchema = invokeRequestSchema.extend({
  kind: z.literal('passthrough'),
  params: passthroughParamsSchema,
});

export type PassthroughRequest = z.infer<typeof passthroughRequestSchema>;
