import { type InvokeUsage, LOADING_CHECKPOINT_JOB, type ProgressEvent } from '../protocol/events.js';
import type { TaskTimings } from '../types.js';

/**
 * Times the phases of a task's GPU part from its invoke's progress events, starting when the slot was granted. SD
 * counts as started at its first event past `starting`, which lags the real start by at most one progress poll.
 */
export function invokeTimer(grantedAt = Date.now()) {
  let coldStart = false;
  let checkpointLoad = false;
  /** The first event from an instance (anything but a runtime's `starting` while it waits for one). */
  let instanceAt: number | undefined;
  let sdStartedAt: number | undefined;
  let sdReturnedAt: number | undefined;
  return {
    grantedAt,
    see(event: ProgressEvent, at = Date.now()): void {
      if (event.phase === 'starting') {
        if (event.state.job === LOADING_CHECKPOINT_JOB) {
          checkpointLoad = true;
          instanceAt ??= at;
        } else coldStart = true;
        return;
      }
      instanceAt ??= at;
      sdStartedAt ??= at;
      if (event.phase === 'uploading') sdReturnedAt ??= at;
    },
    timings(at = Date.now()): TaskTimings {
      const started = sdStartedAt ?? at;
      return { startMs: started - grantedAt, samplingMs: (sdReturnedAt ?? at) - started, coldStart, checkpointLoad };
    },
    /**
     * The invoke's usage as the worker saw it, for runtimes that report none (FC, the static pool): the wait for an
     * instance is its cold start, the rest up to the result its active time, and no idle time is known.
     */
    usage(at = Date.now()): InvokeUsage {
      const instanceFrom = coldStart ? (instanceAt ?? at) : grantedAt;
      return { coldStartS: (instanceFrom - grantedAt) / 1000, activeS: (at - instanceFrom) / 1000, idleS: 0 };
    },
  };
}
