import { LOADING_CHECKPOINT_JOB, type ProgressEvent } from '../protocol/events.js';
import type { TaskTimings } from '../types.js';

/**
 * Times the phases of a task's GPU part from its invoke's progress events, starting when the slot was granted. SD
 * counts as started at its first event past `starting`, which lags the real start by at most one progress poll.
 */
export function invokeTimer(grantedAt = Date.now()) {
  let coldStart = false;
  let checkpointLoad = false;
  let sdStartedAt: number | undefined;
  let sdReturnedAt: number | undefined;
  return {
    see(event: ProgressEvent, at = Date.now()): void {
      if (event.phase === 'starting') {
        if (event.state.job === LOADING_CHECKPOINT_JOB) checkpointLoad = true;
        else coldStart = true;
        return;
      }
      sdStartedAt ??= at;
      if (event.phase === 'uploading') sdReturnedAt ??= at;
    },
    timings(at = Date.now()): TaskTimings {
      const started = sdStartedAt ?? at;
      return { startMs: started - grantedAt, samplingMs: (sdReturnedAt ?? at) - started, coldStart, checkpointLoad };
    },
  };
}
