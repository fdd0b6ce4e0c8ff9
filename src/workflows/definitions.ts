import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import {
  GENERATION,
  type LeaseRef,
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
export const releaseSignal = defineSignal<[LeaseRef]>(SEMAPHORE.releaseSignal);
export const setLimitSignal = defineSignal<[number]>(SEMAPHORE.setLimitSignal);
export const warmthSignal = defineSignal<[Record<string, number>]>(SEMAPHORE.warmthSignal);
export const semaphorePolicySignal = defineSignal<[{ priorityAgingS: number }]>(SEMAPHORE.policySignal);
export const semaphoreStateQuery = defineQuery<SemaphoreState>(SEMAPHORE.stateQuery);

export const webhookEventSignal = defineSignal<[WebhookEvent]>(WEBHOOK.eventSignal);
/** What the retention workflow deletes and how often it looks; null stops it (retention turned off). */
export interface RetentionSettings {
  maxAgeDays: number;
  periodS: number;
}
export const retentionSettingsSignal = defineSignal<[RetentionSettings | null]>('retentionSettings');
