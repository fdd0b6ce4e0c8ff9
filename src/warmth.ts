import type { Client } from '@temporalio/client';
import type { Logger } from './logging.js';
import { everyPeriod } from './periodic.js';
import type { FunctionRuntime, RuntimeFunction } from './platform/functions/port.js';
import { warmthSignal } from './workflows/definitions.js';

// The worker tells the semaphore which checkpoints have an idle warm instance (docs/ARCHITECTURE.md, "The cap"): when
// fairness leaves a choice between tasks, a free slot goes to one that needs no instance start. Runtimes that do not
// list their instances (FC) report nothing, and the tie-break then never applies.

/** Idle instances per checkpoint, from the runtime's function list. */
export function idleInstances(functions: readonly RuntimeFunction[]): Record<string, number> {
  const idle: Record<string, number> = {};
  for (const fn of functions) {
    const count = (fn.instances ?? []).filter((i) => !i.busy).length;
    if (count > 0) idle[fn.model] = (idle[fn.model] ?? 0) + count;
  }
  return idle;
}

/**
 * Reports the idle instances every `periodS` (0: never), sending a signal only when they changed. Returns a stop
 * function. A failed read or signal is logged at debug level and tried again next period.
 */
export function reportWarmth(deps: {
  functions: FunctionRuntime;
  temporal: Client;
  semaphoreId: string;
  periodS: number;
  logger: Logger;
}): () => void {
  let last = '';
  return everyPeriod(
    deps.periodS,
    async () => {
      const idle = idleInstances(await deps.functions.listFunctions());
      const key = JSON.stringify(Object.entries(idle).sort(([a], [b]) => a.localeCompare(b)));
      if (key !== last) {
        await deps.temporal.workflow.getHandle(deps.semaphoreId).signal(warmthSignal, idle);
        last = key;
      }
    },
    (err) => deps.logger.debug({ err }, 'warm instances not reported this time'),
  );
}
