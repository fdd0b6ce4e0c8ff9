import type { Context } from 'koa';
import { TASK_ID, TASK_ID_RULE } from '../protocol/invoke.js';
import { LANES, type Lane, type TaskScheduling } from '../types.js';
import type { Principal } from './auth.js';
import { badRequest, forbidden } from './errors.js';

// The request headers a submission reads, each with the 4xx that names it: the client's own taskId, an
// Idempotency-Key, sync or async, the version of the caller's options to apply, Task-Flag, and the task's place in
// the grant order (Task-Priority, Task-Deadline).

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

/**
 * The `Task-Priority` header's lane (`high`, `normal` or `low`): the key's own lane when absent. A lane above the
 * key's `maxLane` is a 403; anything else that is not a lane is a 400.
 */
export function taskPriority(ctx: Context, principal: Principal): Lane {
  const value = ctx.get('Task-Priority').trim().toLowerCase();
  const lane = value ? (LANES as readonly string[]).includes(value) && (value as Lane) : (principal.lane ?? 'normal');
  if (!lane) throw badRequest(`Task-Priority header: must be one of ${LANES.join(', ')}`);
  const highest = principal.maxLane ?? 'high';
  if (LANES.indexOf(lane) < LANES.indexOf(highest)) {
    throw forbidden(`Task-Priority header: your key allows lanes up to ${highest}, not ${lane}`);
  }
  return lane;
}

/** At most a day, as no task waits longer than its deadline backstop anyway. */
const MAX_TASK_DEADLINE_S = 86_400;

/**
 * The `Task-Deadline` header: seconds from now within which the task should finish, as epoch ms. A task the estimate
 * says cannot is refused at submit (409); one still waiting when it passes fails without ever taking a slot.
 */
export function taskDeadline(ctx: Context, now = Date.now()): number | undefined {
  const value = ctx.get('Task-Deadline').trim();
  if (!value) return undefined;
  const seconds = Number(value);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(value) || !(seconds > 0) || seconds > MAX_TASK_DEADLINE_S) {
    throw badRequest(`Task-Deadline header: must be a number of seconds above 0, at most ${MAX_TASK_DEADLINE_S}`);
  }
  return now + Math.round(seconds * 1000);
}

/** A submission's place in the grant order: its lane and deadline from the headers, its share and cap from the key. */
export function slotOwnerOf(ctx: Context, principal: Principal): TaskScheduling {
  const deadlineAt = taskDeadline(ctx);
  return {
    owner: {
      lane: taskPriority(ctx, principal),
      user: principal.user,
      ...(principal.weight !== undefined ? { weight: principal.weight } : {}),
      ...(principal.maxSlots !== undefined ? { maxSlots: principal.maxSlots } : {}),
    },
    ...(deadlineAt !== undefined ? { deadlineAt } : {}),
  };
}

/** The two headers above as /openapi.json describes them, on every route that submits a task. */
export const SCHEDULING_HEADERS = [
  {
    name: 'Task-Priority',
    in: 'header',
    schema: { type: 'string', enum: [...LANES] },
    description:
      "the task's lane (default: your key's lane, else normal); above your key's maxLane is a 403. A task that waits SDFLOW_PRIORITY_AGING_S moves up a lane",
  },
  {
    name: 'Task-Deadline',
    in: 'header',
    schema: { type: 'number', exclusiveMinimum: 0, maximum: MAX_TASK_DEADLINE_S },
    description:
      'seconds from now within which the task should finish: a 409 with estimatedStartS and estimatedFinishS when the estimate already misses it; a task still waiting when it passes fails with errorKind task_deadline and never takes a slot',
  },
];
