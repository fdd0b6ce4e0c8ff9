import { ActivityCancellationType, type ActivityOptions, rootCause, sleep } from '@temporalio/workflow';
import { failureType } from '../failures.js';
import { type ErrorKind, type GenerationInput, NON_RETRYABLE, type SdParams, type TaskOutcome } from '../types.js';

// Steps every version of the generation workflow takes the same way.

/** `-1` (or no seed) becomes a concrete seed here, deterministically, so a retried attempt renders the same images. */
/** The options of a task's GPU activity (runTask, or the first version's invokeFunction), from its policy. */
export function gpuActivityOptions(input: GenerationInput): ActivityOptions {
  const p = input.policy;
  return {
    startToCloseTimeout: `${input.deadlineS}s`,
    heartbeatTimeout: `${p.invokeHeartbeatTimeoutS}s`,
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: {
      initialInterval: `${p.invokeRetryInitialS}s`,
      backoffCoefficient: 2,
      maximumAttempts: p.invokeMaxAttempts,
      nonRetryableErrorTypes: Object.values(NON_RETRYABLE),
    },
  };
}

export function resolveSeeds(kind: GenerationInput['kind'], params: SdParams): SdParams {
  if (kind === 'extra') return params;
  const concrete = (v: unknown) =>
    typeof v === 'number' && v >= 0 ? Math.floor(v) : Math.floor(Math.random() * 4294967295);
  return { ...params, seed: concrete(params.seed), subseed: concrete(params.subseed) };
}

const DEFAULT_MODEL_BUSY_RETRY_S = 5;

/**
 * Asks for the checkpoint's function until the checkpoint is not being re-registered: a task accepted before an
 * update runs with the new weights once they are loaded, rather than failing. The deadline still bounds the wait.
 */
export async function whenModelReady<T>(ensure: () => Promise<T>, retryS = DEFAULT_MODEL_BUSY_RETRY_S): Promise<T> {
  for (;;) {
    try {
      return await ensure();
    } catch (err) {
      if (failureType(err) !== NON_RETRYABLE.modelBusy) throw err;
      await sleep(retryS * 1000);
    }
  }
}

export function failed(taskId: string, errorKind: ErrorKind, message: string): TaskOutcome {
  return { taskId, status: 'failed', images: [], message, errorKind };
}

/** Turns an activity failure into the reason a user reads: the root cause's message and its kind. */
export function failureOutcome(taskId: string, err: unknown): TaskOutcome {
  const cause = rootCause(err as Error) ?? String(err);
  const type = failureType(err);
  const kinds: Record<string, ErrorKind> = {
    [NON_RETRYABLE.badInput]: 'bad_input',
    [NON_RETRYABLE.modelNotFound]: 'not_found',
    [NON_RETRYABLE.taskDeadline]: 'task_deadline',
  };
  const kind: ErrorKind = (type && kinds[type]) || 'internal';
  return failed(taskId, kind, cause);
}
