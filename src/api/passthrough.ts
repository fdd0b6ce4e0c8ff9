import { randomBytes } from 'node:crypto';
import { isJsonObject } from '../json.js';
import { objectKeyForInput } from '../platform/object-store/keys.js';
import type { ObjectStore } from '../platform/object-store/port.js';
import type { TaskRecord } from '../records.js';
import type { ErrorKind, SdParams } from '../types.js';
import type { Answer } from './answers.js';
import { badRequest, HttpError } from './errors.js';
import type { TaskDeps } from './tasks.js';

// The rules of the passthrough (docs/ARCHITECTURE.md, "The HTTP contract"): which paths pass, which need an admin,
// how SD's statuses are answered, and where a large body goes. The route in routes/passthrough.ts applies them.

/** A body larger than this goes to the store (`inputs/<user>/<taskId>/…`), so it never enters Temporal's history. */
export const INLINE_BODY_BYTES = 64 * 1024;

export const isPassthroughPath = (path: string, prefixes: readonly string[]) =>
  prefixes.some((p) => path.startsWith(p));

/**
 * The path as SD will route it: each segment percent-decoded, empty segments and a trailing slash dropped. Refuses
 * dot segments and backslashes, which a URL parser on the way would resolve, stepping outside the allowed prefix.
 */
export function normalizedPath(path: string): string {
  const segments: string[] = [];
  for (const raw of path.split('/')) {
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      throw badRequest(`path: malformed percent-encoding in ${path}`);
    }
    if (segment === '.' || segment === '..' || segment.includes('\\')) {
      throw badRequest('path: must not hold . or .. segments or backslashes');
    }
    if (segment !== '') segments.push(segment);
  }
  return `/${segments.join('/')}`;
}

const INSTANCE_CHANGING = /^\/sdapi\/v1\/(reload-checkpoint|unload-checkpoint|server-[^/]+|refresh-[^/]+)$/;

/**
 * Routes that change an instance (its loaded checkpoint, the server itself, its lists): admin only. Settings are the
 * caller's own (`/sdapi/v1/options`) or a function's (`/functions/{name}/options`), never one instance's.
 */
export function changesInstance(normalized: string): boolean {
  return INSTANCE_CHANGING.test(normalized);
}

/** SD's status as the API answers it: 2xx and 4xx as they are; an upstream failure (5xx) is a 502. */
export const answerStatus = (upstream: number) => (upstream >= 500 ? 502 : upstream);

/**
 * The status of a failed passthrough task: an unknown checkpoint is 404 and a deadline 504; anything else (SD
 * answered 5xx on every attempt, the agent or its function could not be reached) is the upstream's failure, 502.
 */
export function failedStatus(kind: ErrorKind | undefined): number {
  if (kind === 'not_found') return 404;
  if (kind === 'deadline') return 504;
  return 502;
}

/** The recorded answer of a passthrough task: SD's status and its body, images replaced by keys. */
function recordedAnswer(task: TaskRecord): Answer {
  try {
    const info = JSON.parse(task.info ?? '') as { status?: unknown; body?: unknown };
    if (typeof info.status === 'number') return { status: info.status, body: info.body };
  } catch {
    // fall through: a task recorded without SD's answer
  }
  throw new HttpError(502, `task ${task.taskId} recorded no answer from SD`, { taskId: task.taskId });
}

/** A finished passthrough task's answer: SD's own (with signed links to any images it made), or why it failed. */
export async function passthroughAnswer(deps: TaskDeps, task: TaskRecord): Promise<Answer> {
  if (task.status === 'succeeded') {
    const recorded = recordedAnswer(task);
    const ttl = deps.config.stores.urlTtlS;
    const ossUrl = await Promise.all(task.images.map((key) => deps.store.signedUrl(key, ttl)));
    const body = recorded.body;
    const withLinks = isJsonObject(body) && ossUrl.length > 0 ? { ...body, ossUrl } : body;
    return { status: answerStatus(recorded.status), body: withLinks };
  }
  const message = task.message ?? task.status;
  if (task.status === 'cancelled') return { status: 200, body: { status: task.status, taskId: task.taskId, message } };
  return { status: failedStatus(task.errorKind), body: { status: task.status, taskId: task.taskId, message } };
}

/** Moves a large JSON body out of the task's params into the caller's inputs; the agent reads it back. */
export async function storeLargeBody(
  params: SdParams,
  c: { store: ObjectStore; user: string; taskId: string },
): Promise<SdParams> {
  if (params.body === undefined) return params;
  const json = JSON.stringify(params.body);
  if (Buffer.byteLength(json) <= INLINE_BODY_BYTES) return params;
  // A nonce per request keeps a losing duplicate submit from overwriting the body of the task that won its id.
  const key = objectKeyForInput(c.user, c.taskId, `${randomBytes(4).toString('hex')}-body.json`);
  await c.store.put(key, Buffer.from(json), { contentType: 'application/json' });
  const { body: _inline, ...rest } = params;
  return { ...rest, bodyKey: key };
}
