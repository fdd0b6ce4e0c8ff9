import { createParser } from 'eventsource-parser';
import { api, apiFetch, errorOf } from './api';
import { isFinal, type ProgressView, type TaskResult } from './types';

// Following a task as it runs: Server-Sent Events from GET /tasks/{id}/events, read with fetch() so that the key
// travels in a header (EventSource cannot send one), and resumed with Last-Event-ID when the stream drops. An API
// without that route answers 404, and the task is polled at GET /tasks/{id}/progress instead.

/** Where a task stands; each event fills in part of it. */
export interface TaskUpdate {
  status?: string;
  phase?: string;
  queuePosition?: number;
  coldStart?: boolean;
  /** 0 to 1. */
  progress?: number;
  step?: number;
  steps?: number;
  previewUrl?: string;
}

const POLL_MS = 500;
/** Reconnects in a row that brought no event before the page gives up on the stream. */
const MAX_SILENT_RECONNECTS = 5;

/** The update with the fields an event left out kept from before. */
export function mergeUpdate(before: TaskUpdate, update: TaskUpdate): TaskUpdate {
  const defined = Object.entries(update).filter(([, value]) => value !== undefined);
  return { ...before, ...Object.fromEntries(defined) };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

/** One event of the stream as an update: `status`, `progress` (the step) and `preview` (a signed link). */
function updateOf(event: string | undefined, data: Record<string, unknown>): TaskUpdate {
  switch (event) {
    case 'status':
      return {
        status: data.status as string,
        phase: data.phase as string,
        queuePosition: data.queuePosition as number | undefined,
        coldStart: data.coldStart as boolean | undefined,
      };
    case 'progress':
      return { progress: data.progress as number, step: data.step as number, steps: data.steps as number };
    case 'preview':
      return { previewUrl: data.url as string };
    default:
      return {};
  }
}

async function pollTask(path: string, onUpdate: (u: TaskUpdate) => void, signal: AbortSignal): Promise<TaskResult> {
  for (;;) {
    const p = await api<ProgressView>(`${path}/progress`, { signal });
    onUpdate({
      status: p.status,
      phase: p.phase,
      queuePosition: p.queuePosition,
      progress: p.progress,
      step: p.state.sampling_step,
      steps: p.state.sampling_steps,
      previewUrl: p.currentImageUrl,
    });
    if (isFinal(p.status)) return api<TaskResult>(`${path}/result`, { signal });
    await sleep(POLL_MS, signal);
  }
}

/** Reports the task's updates until it ends, and answers its result (the `completed` event). */
export async function followTask(
  taskId: string,
  onUpdate: (u: TaskUpdate) => void,
  signal: AbortSignal,
): Promise<TaskResult> {
  const path = `/tasks/${encodeURIComponent(taskId)}`;
  let lastEventId: string | undefined;
  let retryMs = 1000;
  for (let silent = 0; ; ) {
    const headers: Record<string, string> = { Accept: 'text/event-stream' };
    if (lastEventId !== undefined) headers['Last-Event-ID'] = lastEventId;
    let result: TaskResult | undefined;
    let events = 0;
    try {
      const res = await apiFetch(`${path}/events`, { signal, headers });
      if (res.status === 404 && lastEventId === undefined) {
        await res.body?.cancel();
        return pollTask(path, onUpdate, signal);
      }
      if (!res.ok || !res.body) throw await errorOf(res);
      const parser = createParser({
        onEvent: (event) => {
          events++;
          if (event.id) lastEventId = event.id;
          const data = JSON.parse(event.data) as Record<string, unknown>;
          if (event.event === 'completed') result = data as unknown as TaskResult;
          else onUpdate(updateOf(event.event, data));
        },
        onRetry: (ms) => {
          retryMs = ms;
        },
      });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      while (result === undefined) {
        const { done, value } = await reader.read();
        if (done) break;
        parser.feed(value);
      }
      await reader.cancel();
    } catch (err) {
      // A dropped connection is resumed below; an answer the API gave, or the page's own abort, ends the wait.
      if (signal.aborted || !(err instanceof TypeError)) throw err;
    }
    if (result) return result;
    silent = events > 0 ? 0 : silent + 1;
    if (silent > MAX_SILENT_RECONNECTS) throw new Error(`lost the event stream of task ${taskId}`);
    await sleep(retryMs, signal);
  }
}
