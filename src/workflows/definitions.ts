import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import {
  type BreakerPolicy,
  GENERATION,
  type LeaseRef,
  type LeaseRelease,
  type ProgressSnapshot,
  SEMAPHORE,
  type SemaphoreState,
  type SlotAnswer,
  type SlotGrant,
  type SlotRequest,
  type TaskProgress,
  WEBHOOK,
  type WebhookEvent,
} from '../types.js';

// Signal, update and query definitions, shared by workflows, activities and the API.

export const progressSignal = defineSignal<[ProgressSnapshot]>(GENERATION.progressSignal);
export const slotGrantedSignal = defineSignal<[SlotGrant]>(GENERATION.slotGrantedSignal);
export const progressQuery = defineQuery<TaskProgress>(GENERATION.progressQuery);

export const acquireUpdate = defineUpdate<SlotAnswer, [SlotRequest]>(SEMAPHORE.acquireUpdate);
export const acquireSignal = defineSignal<[LeaseRef]>(SEMAPHORE.acquireSignal);
export const releaseSignal = defineSignal<[LeaseRelease]>(SEMAPHORE.releaseSignal);
export const setLimitSignal = defineSignal<[number]>(SEMAPHORE.setLimitSignal);
export const warmthSignal = defineSignal<[Record<string, number>]>(SEMAPHORE.warmthSignal);
/** The grant order's settings; `breaker` is absent from workers of versions before the circuit breakers. */
export const semaphorePolicySignal = defineSignal<[{ priorityAgingS: number; breaker?: BreakerPolicy }]>(
  SEMAPHORE.policySignal,
);
/** Closes the named checkpoint's circuit breaker (an admin's DELETE /models/{name}/quarantine). */
export const liftQuarantineSignal = defineSignal<[string]>(SEMAPHORE.liftQuarantineSignal);
export const semaphoreStateQuery = defineQuery<SemaphoreState>(SEMAPHORE.stateQuery);

export const webhookEventSignal = defineSignal<[WebhookEvent]>(WEBHOOK.eventSignal);
/** What the retention workflow deletes and how often it looks; null stops it (retention turned off). */
export interface RetentionSettings {
  maxAgeDays: number;
  periodS: number;
}
export const retentionSettingsSignal = defineSignal<[RetentionSettings | null]>('retentionSettings');
