import { setTimeout as sleep } from 'node:timers/promises';
import { EMPTY_SD_STATE, isFinal } from '../../types.js';
import {
  ApiError,
  ConnectionError,
  type ProgressAnswer,
  type SdflowClient,
  type TaskEvent,
  type TaskResult,
} from './api.js';
import { EXIT_INTERRUPTED } from './options.js';
import { note, progressBar } from './output.js';

// Following a task to its end: reads its event stream (GET /tasks/{id}/events), draws a cli-progress bar on a
// terminal (or prints a line per change of status or phase when stderr is not one), and ends with the result the
// stream's `completed` carries. A broken stream is resumed after the last status event received. The first Ctrl-C
// cancels the task and keeps waiting for its final status; a second one exits at once.

/** How long the API may be unreachable (or answer 5xx) in a row before following gives up. */
const TOLERATE_OUTAGE_MS = 30_000;
const RECONNECT_MS = 800;

/** What the bar and the lines show: the task's progress, as its events have told it. */
export interface FollowedProgress extends ProgressAnswer {
  coldStart?: boolean;
}

export interface FollowOptions {
  /** Machine output: no status lines, only the bar when stderr is a terminal. */
  json: boolean;
  /** The first Ctrl-C cancels the task (commands that submitted it); otherwise Ctrl-C stops waiting. */
  interruptCancels: boolean;
}

export interface Followed {
  result: TaskResult;
  /** The user pressed Ctrl-C and the task was asked to cancel. */
  interrupted: boolean;
}

/** One line describing where the task is: `running · sampling · step 12/20 · ETA 3.1 s`. */
export function describeProgress(p: FollowedProgress): string {
  const parts: string[] = [p.status];
  if (p.status === 'waiting' && p.queuePosition !== undefined) parts.push(`#${p.queuePosition} in queue`);
  if (p.status === 'running') {
    if (p.phase) parts.push(p.phase === 'starting' && p.coldStart ? 'starting (cold start)' : p.phase);
    const s = p.state;
    if (s && s.sampling_steps > 0) parts.push(`step ${s.sampling_step}/${s.sampling_steps}`);
    if (s && s.job_count > 1) parts.push(`job ${Math.min(s.job_no + 1, s.job_count)}/${s.job_count}`);
    if (p.etaRelative > 0) parts.push(`ETA ${p.etaRelative.toFixed(1)} s`);
  }
  return parts.join(' · ');
}

interface View {
  update(p: FollowedProgress): void;
  /** Shows a condition next to the progress: `cancelling`, or why a cancel failed. */
  flag(text: string): void;
  stop(): void;
}

function barView(taskId: string): View {
  const bar = progressBar(`${taskId} {bar} {percentage}% | {detail}`);
  let started = false;
  let prefix = '';
  let last = '';
  return {
    update(p) {
      last = describeProgress(p);
      const value = Math.round(p.progress * 1000) / 10;
      // Started on the first answer, so a task that cannot be read leaves no empty bar behind.
      if (!started) bar.start(100, value, { detail: prefix + last });
      else bar.update(value, { detail: prefix + last });
      started = true;
    },
    flag(text) {
      prefix = `${text} · `;
      if (started) bar.update({ detail: prefix + last });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

/** Without a terminal: one line whenever the status or phase changes. */
function lineView(taskId: string): View {
  let last = '';
  return {
    update(p) {
      const phase = p.phase === 'starting' && p.coldStart ? 'starting, cold start' : p.phase;
      const key = `${p.status}/${phase}`;
      if (key === last) return;
      last = key;
      note(`task ${taskId}: ${p.status}${p.status === 'running' && phase ? ` (${phase})` : ''}`);
    },
    flag: (text) => note(`task ${taskId}: ${text}`),
    stop() {},
  };
}

const silentView: View = { update() {}, flag() {}, stop() {} };

const transient = (err: unknown) =>
  err instanceof ConnectionError || (err instanceof ApiError && (err.status >= 500 || err.status === 429));

/** The progress after one event of the stream. */
function apply(p: FollowedProgress, e: TaskEvent): FollowedProgress {
  switch (e.event) {
    case 'status': {
      const { status, phase, coldStart, queuePosition } = e.data;
      const progress = isFinal(status) ? 1 : p.progress;
      return { ...p, status, phase, progress, coldStart: phase === 'starting' && coldStart, queuePosition };
    }
    case 'progress':
      return { ...p, ...e.data };
    case 'preview':
      return { ...p, currentImage: e.data.currentImage };
    case 'completed':
      return { ...p, status: e.data.status, phase: 'finished', progress: 1 };
  }
}

export async function followTask(client: SdflowClient, taskId: string, options: FollowOptions): Promise<Followed> {
  const view = process.stderr.isTTY ? barView(taskId) : options.json ? silentView : lineView(taskId);
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts === 1 && options.interruptCancels) {
      view.flag('cancelling (Ctrl-C again to stop waiting)');
      client.cancel(taskId).catch((err: unknown) => {
        // 409: it had already finished, which the stream shows.
        if (err instanceof ApiError && err.status === 409) return;
        view.flag(`could not cancel: ${(err as Error).message}`);
      });
      return;
    }
    view.stop();
    const state = interrupts > 1 ? 'was asked to cancel' : 'keeps running';
    note(`stopped waiting; task ${taskId} ${state}. See: sdflow tasks result ${taskId}`);
    process.exit(EXIT_INTERRUPTED);
  };
  process.on('SIGINT', onSigint);
  let progress: FollowedProgress = {
    taskId,
    status: 'waiting',
    progress: 0,
    etaRelative: 0,
    state: EMPTY_SD_STATE,
    phase: 'queued',
    currentImage: null,
  };
  let result: TaskResult | undefined;
  try {
    let lastEventId: string | undefined;
    let failingSince: number | undefined;
    while (!result) {
      try {
        for await (const event of client.events(taskId, lastEventId)) {
          failingSince = undefined;
          if (event.id !== undefined) lastEventId = event.id;
          progress = apply(progress, event);
          view.update(progress);
          if (event.event === 'completed') result = event.data;
        }
        // Ended without the result: the connection closed early (an API replica stopped). Resume.
        if (!result) throw new ConnectionError(`the event stream of task ${taskId} ended early`);
      } catch (err) {
        if (!transient(err)) throw err;
        failingSince ??= performance.now();
        if (performance.now() - failingSince > TOLERATE_OUTAGE_MS) throw err;
        await sleep(RECONNECT_MS);
      }
    }
  } finally {
    view.stop();
    process.off('SIGINT', onSigint);
  }
  return { result, interrupted: interrupts > 0 };
}
