import type { Context } from 'koa';
import { TASK_ID, TASK_ID_RULE } from '../protocol/invoke.js';
import { badRequest } from './errors.js';

// The request headers a submission reads, each with the 400 that names it: the client's own taskId, an
// Idempotency-Key, sync or async, the version of the caller's options to apply, and Task-Flag.

export function clientTaskId(ctx: Context): string | undefined {
  const id = ctx.get('taskId');
  if (!id) return undefined;
  if (!TASK_ID.test(id)) throw badRequest(`taskId header: ${TASK_ID_RULE}`);
  return id;
}

export function idempotencyKey(ctx: Context): string | undefined {
  const key = ctx.get('Idempotency-Key');
  if (!key) return undefined;
  if (key.length > 200) throw badRequest('Idempotency-Key header: must be at most 200 characters');
  return key;
}

/** `Request-Type: async`, or A1111 clients' `Prefer: respond-async`. */
export const isAsync = (ctx: Context) =>
  ctx.get('Request-Type').toLowerCase() === 'async' || /respond-async/i.test(ctx.get('Prefer'));

/** `Task-Flag: true`: answer with the taskId header; a passthrough GET runs as a task. */
export const taskFlag = (ctx: Context) => ctx.get('Task-Flag').toLowerCase() === 'true';

const VERSION = /^[1-9][0-9]{0,9}$/;

/** An options version, from a header or a path segment. */
export function parseOptionsVersion(value: string, where: string): number {
  if (!VERSION.test(value)) throw badRequest(`${where}: must be a positive integer (an options version)`);
  return Number(value);
}

/** The `version` header of a generation request: which of the caller's options versions to apply. */
export function optionsVersionHeader(ctx: Context): number | undefined {
  const value = ctx.get('version').trim();
  return value ? parseOptionsVersion(value, 'version header') : undefined;
}
