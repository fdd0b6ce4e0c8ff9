import type { BillingRate } from '../config/index.js';
import type { InvokeUsage } from '../protocol/events.js';
import type { TaskCost } from '../types.js';

// A task's cost (docs/ARCHITECTURE.md, "Cost"): its wait for a slot, and its invoke's part of its instance's time,
// priced by the instance's GPU type.

const DEFAULT_GPU_TYPE = 'default';

/** Seconds rounded to the millisecond, so that sums of stored costs stay exact to a millisecond per task. */
const ms = (seconds: number) => Math.round(seconds * 1000) / 1000;

/** The row of the billing table for a function's instance type: its own, else `default`. */
export function billingRateFor(
  rates: Readonly<Record<string, BillingRate>>,
  instanceType: unknown,
): { gpuType: string; rate: BillingRate } {
  if (typeof instanceType === 'string' && rates[instanceType])
    return { gpuType: instanceType, rate: rates[instanceType] };
  const rate = rates[DEFAULT_GPU_TYPE];
  if (!rate) throw new Error(`the billing rates have no "${DEFAULT_GPU_TYPE}" row`);
  return { gpuType: DEFAULT_GPU_TYPE, rate };
}

export interface CostInput {
  /** Epoch ms of the task's submission. */
  submittedAt: number;
  /** Epoch ms of the slot's grant. */
  grantedAt: number;
  usage: InvokeUsage;
  images: number;
  gpuType: string;
  rate: BillingRate;
}

/**
 * The task's cost. A starting instance is billed as active (Function Compute bills an instance from its start), so
 * billed GPU-seconds, in active-equivalent seconds, are the active and cold-start seconds plus the idle seconds at
 * the idle rate's share of the active one.
 */
export function taskCost(input: CostInput): TaskCost {
  const { usage, rate } = input;
  const coldStartS = ms(Math.max(0, usage.coldStartS));
  const gpuS = ms(Math.max(0, usage.activeS));
  const idleS = ms(Math.max(0, usage.idleS));
  return {
    queueS: ms(Math.max(0, input.grantedAt - input.submittedAt) / 1000),
    coldStartS,
    gpuS,
    idleS,
    billedGpuS: ms(gpuS + coldStartS + (idleS * rate.idlePerS) / rate.activePerS),
    gpuType: input.gpuType,
    images: input.images,
  };
}
