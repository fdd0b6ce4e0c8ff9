import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Context } from 'koa';
import type { StatusEvent, TaskRecord } from '../records.js';
import { isFinal } from '../types.js';
import { clientGone } from './answers.js';
import { badRequest } from './errors.js';
import { progressView, resultView, type TaskDeps } from './tasks.js';

// GET /tasks/{id}/events: a task's events as Server-Sent Events, read from what every API replica reads, so any
// replica serves a stream and its reconnections alike.
//
// - `status` {status, phase, coldStart?, queuePosition?}: the task's status events from the meta store, each with its
//   id (1, 2, … per task). A waiting task's place in the queue, when it moves, comes as a `status` without an id.
// - `progress` {progress, etaRelative, state} and `preview` {currentImage, currentImageUrl}: the live progress, as
//   /progress reads it, when it changes; they carry no id.
// - `completed`: the result view, once the record is final; then the stream ends.
//
// Only status events carry ids, so `Last-Event-ID` names the last status event a client got: a reconnect gets every
// status event after it, then the latest progress and preview. A comment goes out when nothing else has for 15 s.

const HEARTBEAT_MS = 15_000;
/** How long a final record waits for its `finished` status event (appended right after it) before `completed`. */
const FINISHED_WAIT_MS = 5_000;

function lastEventId(ctx: Context): number {
  const header = ctx.get('Last-Event-ID').trim();
  if (!header) return 0;
  if (!/^\d{1,15}$/.test(header)) throw badRequest('Last-Event-ID header: must be the id of a status event');
  return Number(header);
}

const statusData = (e: StatusEvent) => ({
  status: e.status,
  phase: e.phase,
  ...(e.coldStart ? { coldStart: true } : {}),
});

/** Starts the stream of `task` as the answer of `ctx`; it runs until `completed`, or until the client goes away. */
export function streamTaskEvents(ctx: Context, deps: TaskDeps, task: TaskRecord): void {
  const afterId = lastEventId(ctx);
  const gone = clientGone(ctx);
  const out = new PassThrough();
  ctx.req.socket.setTimeout(0);
  ctx.req.socket.setNoDelay(true);
  ctx.status = 200;
  ctx.set({ 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
  ctx.type = 'text/event-stream';
  ctx.body = out;

  // A comment goes out whenever nothing else has for HEARTBEAT_MS, so that proxies keep the connection open.
  let heartbeat: NodeJS.Timeout | undefined;
  const write = (text: string) => {
    // Koa destroys the body when the client goes away; the loop notices at its next turn.
    if (!out.writable) return;
    out.write(text);
    clearTimeout(heartbeat);
    heartbeat = setTimeout(() => write(': heartbeat\n\n'), HEARTBEAT_MS);
  };
  out.once('close', () => clearTimeout(heartbeat));
  const send = (event: string, data: unknown, id?: number) =>
    write(`${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  // Sent at once, so that the client has the answer's headers before the first event.
  write(`: events of task ${task.taskId}\n\n`);

  follow(deps, task.taskId, afterId, send, gone)
    .catch((err) => deps.logger.warn({ err, taskId: task.taskId }, 'event stream ended by an error'))
    .finally(() => {
      clearTimeout(heartbeat);
      out.end();
    });
}

type Send = (event: string, data: unknown, id?: number) => void;

async function follow(deps: TaskDeps, taskId: string, afterId: number, send: Send, gone: AbortSignal) {
  const { meta } = deps;
  let lastId = afterId;
  // The last status event the client has: the live view goes with it (a place in the queue only while queued).
  let latest = afterId > 0 ? (await meta.listStatusEvents(taskId)).filter((e) => e.id <= afterId).at(-1) : undefined;
  let finalSince: number | undefined;
  const shown = { queuePosition: undefined as number | undefined, progress: '', preview: '' };
  while (!gone.aborted) {
    for (const event of await meta.listStatusEvents(taskId, lastId)) {
      send('status', statusData(event), event.id);
      lastId = event.id;
      latest = event;
    }
    const task = await meta.getTask(taskId);
    if (!task) return;
    if (isFinal(task.status)) {
      finalSince ??= Date.now();
      if (latest?.phase === 'finished' || Date.now() - finalSince >= FINISHED_WAIT_MS) {
        send('completed', await resultView(deps, task));
        return;
      }
    } else if (latest) {
      const live = await progressView(deps, task);
      const queuePosition = latest.phase === 'queued' && live.phase === 'queued' ? live.queuePosition : undefined;
      if (queuePosition !== undefined && queuePosition !== shown.queuePosition) {
        shown.queuePosition = queuePosition;
        send('status', { status: live.status, phase: live.phase, queuePosition });
      }
      const step = JSON.stringify([live.progress, live.state.sampling_step, live.state.job_no]);
      if (live.status === 'running' && live.phase !== 'starting' && step !== shown.progress) {
        shown.progress = step;
        send('progress', { progress: live.progress, etaRelative: live.etaRelative, state: live.state });
      }
      if (live.currentImage && live.currentImageUrl && live.currentImage !== shown.preview) {
        shown.preview = live.currentImage;
        send('preview', { currentImage: live.currentImage, currentImageUrl: live.currentImageUrl });
      }
    }
    await sleep(deps.config.api.eventsPollMs, undefined, { signal: gone }).catch(() => undefined);
  }
}
