import type { TaskWebhook } from '../records.js';
import type { ProgressSnapshot, TaskPhase, TaskStatus } from '../types.js';
import type { ActivityDeps } from './index.js';

// What a running task tells the outside while runTask runs it, without ever waiting for it: a status event whenever
// its phase changes (the event stream every API replica serves), and the `start` and `progress` webhooks its filter
// asks for, handed to its webhook workflow.

export interface TaskReporter {
  /** Waiting for a slot. */
  queued(): void;
  /** The slot is granted: the task runs. */
  started(progress: ProgressSnapshot): void;
  /** An event of the invoke. */
  progressed(progress: ProgressSnapshot): void;
  /** Resolves once the status events recorded so far are stored, so that the final one comes after them. */
  flushed(): Promise<void>;
}

export function taskReporter(
  deps: Pick<ActivityDeps, 'meta' | 'notifyWebhook' | 'webhooks' | 'logger'>,
  taskId: string,
  webhook: Promise<TaskWebhook | undefined>,
  options: { sendStart: boolean },
): TaskReporter {
  const { meta, notifyWebhook, logger } = deps;
  const warn = (what: string) => (err: unknown) => logger.warn({ err, taskId }, what);

  // Appends run one after another, after a read of the last stored event: a task run again (a retried attempt, a
  // wait for new weights) goes on from where its log stands, and repeats no status it already has.
  let last: { phase: TaskPhase; coldStart: boolean } | undefined;
  let appends: Promise<void> = meta
    .listStatusEvents(taskId)
    .then((events) => {
      const stored = events.at(-1);
      if (stored) last = { phase: stored.phase, coldStart: stored.coldStart === true };
    })
    .catch(warn('could not read the status events'));
  const record = (status: TaskStatus, phase: TaskPhase, coldStart = false) => {
    appends = appends.then(async () => {
      if (last?.phase === phase && last.coldStart === coldStart) return;
      last = { phase, coldStart };
      await meta
        .appendStatusEvent(taskId, { status, phase, ...(coldStart ? { coldStart } : {}) })
        .catch(warn('could not record a status event'));
    });
  };

  const send = (type: 'start' | 'progress', progress: ProgressSnapshot) => {
    void webhook
      .then((hook) => {
        if (hook?.events.includes(type)) return notifyWebhook(taskId, { type, progress });
      })
      .catch(warn(`could not hand the ${type} webhook to its workflow`));
  };
  let lastProgressSentAt = 0;

  return {
    queued: () => record('waiting', 'queued'),
    started(progress) {
      record('running', 'starting');
      lastProgressSentAt = Date.now();
      if (options.sendStart) send('start', progress);
    },
    progressed(progress) {
      // An invoke that reports `starting` is waiting for an instance or a checkpoint to start.
      record('running', progress.phase, progress.phase === 'starting');
      const now = Date.now();
      if (now - lastProgressSentAt >= deps.webhooks.progressIntervalS * 1000) {
        lastProgressSentAt = now;
        send('progress', progress);
      }
    },
    flushed: () => appends,
  };
}
