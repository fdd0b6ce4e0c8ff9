import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import { type Health, healthOf } from '../workflows/breaker.js';
import { liftQuarantineSignal } from '../workflows/definitions.js';
import { HttpError } from './errors.js';
import type { SemaphoreStateOf } from './queue-positions.js';

// A checkpoint's health as the API shows and enforces it: its circuit breaker in the semaphore's state
// (src/workflows/breaker.ts), from the API's last read of that state. That read may be a moment old (at most
// SDFLOW_QUEUE_POSITION_MAX_AGE_MS, plus the query), so a task submitted just as a breaker opens may still be accepted
// (it then waits at the semaphore), and one just after a quarantine lifts may still get a 503.

/** The health fields of a checkpoint's model view; absent when the semaphore could not be read. */
export interface HealthView {
  health: Health;
  healthReason: string | null;
  /** ISO instant the current health began (null while ok). */
  healthSince: string | null;
}

export interface CheckpointHealth {
  of(model: string): Promise<HealthView | undefined>;
  /** Refuses a new task for a quarantined checkpoint: 503, Retry-After until a probe may run, and the reason. */
  assertAccepting(model: string): Promise<void>;
  /** Closes the checkpoint's breaker (an admin's DELETE /models/{name}/quarantine). */
  lift(model: string): Promise<void>;
}

export function checkpointHealth(temporal: Client, semaphoreId: string, stateOf: SemaphoreStateOf): CheckpointHealth {
  /** The checkpoint's health, or undefined when the semaphore's state cannot be read: the semaphore still holds back. */
  const current = async (model: string) => {
    try {
      const state = await stateOf.latest();
      return state ? healthOf(state, model, Date.now()) : undefined;
    } catch {
      return undefined;
    }
  };
  return {
    async of(model) {
      const h = await current(model);
      if (!h) return undefined;
      return {
        health: h.health,
        healthReason: h.reason ?? null,
        healthSince: h.since !== undefined ? new Date(h.since).toISOString() : null,
      };
    },
    async assertAccepting(model) {
      const h = await current(model);
      if (h?.health !== 'quarantined') return;
      const retryAfterS = Math.max(1, Math.ceil((h.retryAfterMs ?? 0) / 1000));
      throw new HttpError(
        503,
        `checkpoint ${model} is quarantined: ${h.reason}; a probe task may run in ${retryAfterS} s`,
        { model, health: h.health },
        { 'Retry-After': String(retryAfterS) },
      );
    },
    async lift(model) {
      try {
        await temporal.workflow.getHandle(semaphoreId).signal(liftQuarantineSignal, model);
      } catch (err) {
        // No semaphore running: no breaker is open.
        if (!(err instanceof WorkflowNotFoundError)) throw err;
      }
    },
  };
}
