import { ApplicationFailure } from '@temporalio/common';

// Reading the failures that workflows and activities end with. Workflow code and the API both import this file, so
// it imports nothing but @temporalio/common: no I/O, no Node built-ins.

/** The type of the first ApplicationFailure in an error's cause chain (e.g. BadInput from an activity), if any. */
export function failureType(err: unknown): string | undefined {
  let e = err as Error | undefined;
  while (e) {
    if (e instanceof ApplicationFailure && e.type) return e.type;
    e = e.cause as Error | undefined;
  }
  return undefined;
}
