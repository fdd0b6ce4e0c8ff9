import { ApplicationFailure } from '@temporalio/workflow';

/** The type of the first ApplicationFailure in an error's cause chain (e.g. BadInput from an activity), if any. */
export function failureType(err: unknown): string | undefined {
  let e = err as Error | undefined;
  while (e) {
    if (e instanceof ApplicationFailure && e.type) return e.type;
    e = e.cause as Error | undefined;
  }
  return undefined;
}
