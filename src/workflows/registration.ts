import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  isCancellation,
  log,
  proxyActivities,
  rootCause,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { failureType } from '../failures.js';
import type { ModelStatus, ModelType } from '../records.js';
import { NON_RETRYABLE, SEARCH_ATTRIBUTES } from '../types.js';

// One model registration, asynchronous and traceable: the API inserts the row as `registering` and starts
// this workflow, whose id is derived from the model's name, so two registrations of one model never run at once.
// registering → (stage and check the file) → loading → (a checkpoint's function is created and warmed) → loaded.
// Any failure ends as `failed` with the reason.

export interface ModelRegistrationInput {
  name: string;
  type: ModelType;
  /** Where the file is: its canonical key `models/<type>/<name>`, or another object to copy there. */
  source: string;
  /**
   * A model of this name existed before (an update, or a name registered again after a delete): instances may
   * hold its old weights, so a checkpoint's are recycled, and for a VAE every function's.
   */
  replacing: boolean;
  /** The file of the previous registration when it lived at another key (its type changed); removed once loaded. */
  previousKey?: string;
  /** Longest wait for the warmed instance: its start, and its turn when the function's instances are all busy. */
  warmTimeoutS: number;
}

export interface ModelRegistrationResult {
  name: string;
  /** `abandoned`: the model was deleted while it registered, so its row was left alone. */
  status: 'loaded' | 'abandoned';
  etag?: string;
}

function activitiesFor(input: ModelRegistrationInput) {
  const bookkeeping = proxyActivities<Activities>({
    startToCloseTimeout: '30s',
    retry: { initialInterval: '1s', maximumInterval: '10s', maximumAttempts: 5 },
  });
  // A copy of many gigabytes may take long; heartbeats, not the overall timeout, tell a stuck one. A delete waits
  // for the copy to stop, so a re-registration of the name never races a stale copy.
  const { stageModel } = proxyActivities<Activities>({
    startToCloseTimeout: '4h',
    heartbeatTimeout: '30s',
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: {
      initialInterval: '2s',
      maximumInterval: '30s',
      maximumAttempts: 3,
      nonRetryableErrorTypes: [NON_RETRYABLE.badInput],
    },
  });
  const { warmFunction } = proxyActivities<Activities>({
    startToCloseTimeout: `${input.warmTimeoutS}s`,
    heartbeatTimeout: '30s',
    retry: { initialInterval: '2s', maximumAttempts: 2 },
  });
  const { setModelStatus, prepareCheckpointFunction, recycleInstances, retireModelFile } = bookkeeping;
  return { stageModel, warmFunction, setModelStatus, prepareCheckpointFunction, recycleInstances, retireModelFile };
}

export async function modelRegistrationWorkflow(input: ModelRegistrationInput): Promise<ModelRegistrationResult> {
  const { name } = input;
  const acts = activitiesFor(input);
  const showStatus = (status: ModelStatus) =>
    upsertSearchAttributes([{ key: SEARCH_ATTRIBUTES.status, value: status }]);
  const abandoned: ModelRegistrationResult = { name, status: 'abandoned' };

  try {
    const staged = await acts.stageModel({ name, type: input.type, source: input.source });
    if (!(await acts.setModelStatus({ name, from: ['registering'], to: 'loading', etag: staged.etag }))) {
      return abandoned;
    }
    showStatus('loading');
    if (input.type === 'stableDiffusion') {
      const { functionName } = await acts.prepareCheckpointFunction({ model: name });
      // Before the warm-up, so the instance it starts is a fresh one with the new weights.
      if (input.replacing) await acts.recycleInstances({ functionName });
      await acts.warmFunction({ functionName });
    } else if (input.type === 'sdVae' && input.replacing) {
      await acts.recycleInstances({});
    }
    if (!(await acts.setModelStatus({ name, from: ['loading'], to: 'loaded' }))) return abandoned;
    showStatus('loaded');
    if (input.previousKey) {
      // The model is loaded whatever happens here: a file left behind under the old type is only clutter.
      await acts.retireModelFile({ key: input.previousKey }).catch((err) => {
        log.warn('old model file not removed', { key: input.previousKey, error: String(err) });
      });
    }
    return { name, status: 'loaded', etag: staged.etag };
  } catch (err) {
    const reason = rootCause(err as Error) ?? String(err);
    // Not cancellable: a cancelled registration must still settle its row (a deleted one stays deleted).
    const settled = await CancellationScope.nonCancellable(() =>
      acts.setModelStatus({ name, from: ['registering', 'loading'], to: 'failed', message: reason }),
    );
    if (settled) showStatus('failed');
    if (isCancellation(err)) throw err;
    throw ApplicationFailure.create({
      message: reason,
      type: failureType(err) ?? 'RegistrationFailed',
      nonRetryable: true,
    });
  }
}
