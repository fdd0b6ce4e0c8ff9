import type { Context } from 'koa';
import type { TaskRecord } from '../records.js';
import { isFinal, type SlotOwner } from '../types.js';
import type { TaskEstimate } from './eta.js';
import { isAsync } from './request-headers.js';
import { resultView, type TaskDeps, waitForTask } from './tasks.js';

// The one way a submitted task is answered, for every route that submits one: at once when the client asked for
// async, else after a wait for the task to end, capped, and ended early by a client that goes away. The task is
// durable: nothing here ever stops it.

export interface Answer {
  status: number;
  body: unknown;
}

/** Aborted when the client goes away before its answer is written. */
export function clientGone(ctx: Context): AbortSignal {
  const gone = new AbortController();
  ctx.res.once('close', () => {
    if (!ctx.res.writableFinished) gone.abort();
  });
  return gone.signal;
}

/** Sends an answer; a JSON body that is not an object (null, a number) is sent as JSON text, not as koa would. */
export function send(ctx: Context, answer: Answer): void {
  ctx.status = answer.status;
  if (typeof answer.body === 'object' && answer.body !== null) {
    ctx.body = answer.body;
  } else if (typeof answer.body === 'string') {
    ctx.body = answer.body;
  } else {
    ctx.type = 'application/json';
    ctx.body = JSON.stringify(answer.body ?? null);
  }
}

export interface TaskAnswers {
  /** How long a sync request waits for its task. */
  waitMs: number;
  /** The answer for a task that ended. */
  final(task: TaskRecord): Promise<Answer>;
  /**
   * The answer for a task that has not ended: accepted (async), or still open when the wait ended. Default 200/202,
   * with the estimate of a waiting task.
   */
  open?(task: TaskRecord, accepted: boolean, estimate?: TaskEstimate): Answer;
  /** The task's lane and share, for the estimate of a task not at the semaphore yet. */
  owner?: SlotOwner;
  /** Whether the answer carries the `taskId` header; yes unless said otherwise. */
  taskIdHeader?: boolean;
}

/** The platform's answer for a task not ended: 200 when accepted (async), 202 when a sync wait ran out. */
export const openAnswer = (task: TaskRecord, accepted: boolean, estimate?: TaskEstimate): Answer => ({
  status: accepted ? 200 : 202,
  body: { status: task.status, taskId: task.taskId, ...estimate },
});

/** The estimate of a task that waits for its slot; none for one that runs or ended. */
const estimateOf = (deps: TaskDeps, task: TaskRecord, owner?: SlotOwner) =>
  task.status === 'waiting' ? deps.eta.estimate(task, owner) : Promise.resolve(undefined);

export async function answerTask(ctx: Context, deps: TaskDeps, task: TaskRecord, a: TaskAnswers): Promise<void> {
  if (a.taskIdHeader ?? true) ctx.set('taskId', task.taskId);
  const open = a.open ?? openAnswer;
  if (isAsync(ctx)) return send(ctx, open(task, true, await estimateOf(deps, task, a.owner)));
  const gone = clientGone(ctx);
  const done = await waitForTask(deps, task.taskId, a.waitMs, gone);
  if (gone.aborted) {
    deps.logger.info(
      { taskId: task.taskId, status: done.status },
      'the client went away: its wait ended, the task goes on',
    );
    return;
  }
  send(ctx, isFinal(done.status) ? await a.final(done) : open(done, false, await estimateOf(deps, done, a.owner)));
}

/** The platform routes' answer for a task that ended (the contract's status codes). */
export async function platformAnswer(deps: TaskDeps, task: TaskRecord): Promise<Answer> {
  switch (task.status) {
    case 'succeeded': {
      const view = await resultView(deps, task);
      return {
        status: 200,
        body: { status: task.status, taskId: task.taskId, images: view.images, ossUrl: view.ossUrl },
      };
    }
    case 'cancelled':
      return { status: 200, body: { status: task.status, taskId: task.taskId, message: task.message ?? 'cancelled' } };
    default:
      return {
        status: task.errorKind === 'bad_input' ? 422 : 500,
        body: { status: task.status, taskId: task.taskId, message: task.message ?? 'failed' },
      };
  }
}
