import type { Client } from '@temporalio/client';
import { errorMessage } from './http-util.js';
import type { Logger } from './logging.js';
import { everyPeriod } from './periodic.js';
import type { FunctionRuntime } from './platform/functions/port.js';
import type { MetaStore } from './platform/meta-store/port.js';
import type { FunctionRecord } from './records.js';
import type { SemaphoreState } from './types.js';
import { semaphoreStateQuery } from './workflows/definitions.js';

// Pre-warm on bursts (docs/ARCHITECTURE.md, "Keep-warm and pre-warm"): each worker reads the semaphore's state every
// period and, for a checkpoint whose function sets prewarmQueueDepth and has at least that many tasks waiting, asks
// the runtime for as many warm instances as the checkpoint's tasks can use of the cap, so that the instances start
// while the slots are still busy rather than after each grant. Asking is idempotent (N asked when N run starts none),
// so every worker may do it; each asks only when its answer for a function changed, and asks for the function's
// minInstances again once the burst is over (FC then releases the provisioned instances it added).

/** What a checkpoint asks of the cap: the slots its tasks hold and the tasks still waiting for one. */
export interface Demand {
  held: number;
  waiting: number;
}

/** Per checkpoint, the slots held and the tasks waiting (holders and waiters that name no checkpoint are left out). */
export function demandByModel(state: Pick<SemaphoreState, 'holders' | 'queue'>): Map<string, Demand> {
  const demand = new Map<string, Demand>();
  const of = (model: string) => {
    let entry = demand.get(model);
    if (!entry) {
      entry = { held: 0, waiting: 0 };
      demand.set(model, entry);
    }
    return entry;
  };
  for (const holder of state.holders) if (holder.model) of(holder.model).held++;
  for (const waiter of state.queue) if (waiter.model) of(waiter.model).waiting++;
  return demand;
}

/**
 * The slots a checkpoint's tasks can expect to use: the cap minus the slots other checkpoints' waiting tasks want,
 * and at least its fair part (the cap split evenly between the checkpoints with waiting tasks, at least 1). Slots
 * held now do not count against it: every holder releases, and its slot then goes to a waiter.
 */
export function shareOfCap(limit: number, demand: ReadonlyMap<string, Demand>, model: string): number {
  let othersWaiting = 0;
  let checkpointsWaiting = 0;
  for (const [other, { waiting }] of demand) {
    if (waiting === 0) continue;
    checkpointsWaiting++;
    if (other !== model) othersWaiting += waiting;
  }
  const fair = Math.max(1, Math.floor(limit / Math.max(1, checkpointsWaiting)));
  return Math.min(limit, Math.max(limit - othersWaiting, fair));
}

/** A function's keep-warm settings, from its record's resources. */
export interface WarmthPolicy {
  functionName: string;
  model: string;
  minInstances: number;
  maxInstances?: number;
  prewarmQueueDepth?: number;
}

const countOf = (value: unknown, min: number) =>
  typeof value === 'number' && Number.isInteger(value) && value >= min ? value : undefined;

export function warmthPolicyOf(record: FunctionRecord): WarmthPolicy {
  const { resources } = record;
  return {
    functionName: record.functionName,
    model: record.model,
    minInstances: countOf(resources.minInstances, 0) ?? 0,
    maxInstances: countOf(resources.maxInstances, 1),
    prewarmQueueDepth: countOf(resources.prewarmQueueDepth, 1),
  };
}

/**
 * The warm instances each function with a prewarmQueueDepth wants now: during a burst (at least that many of its
 * checkpoint's tasks waiting), its tasks held and waiting, within the checkpoint's share of the cap and its
 * maxInstances; otherwise, and never less than, its minInstances.
 */
export function prewarmTargets(
  state: Pick<SemaphoreState, 'limit' | 'holders' | 'queue'>,
  policies: readonly WarmthPolicy[],
): Map<string, number> {
  const demand = demandByModel(state);
  const targets = new Map<string, number>();
  for (const policy of policies) {
    if (policy.prewarmQueueDepth === undefined) continue;
    const mine = demand.get(policy.model) ?? { held: 0, waiting: 0 };
    let wanted = 0;
    if (mine.waiting >= policy.prewarmQueueDepth) {
      wanted = Math.min(
        mine.held + mine.waiting,
        shareOfCap(state.limit, demand, policy.model),
        policy.maxInstances ?? Number.POSITIVE_INFINITY,
      );
    }
    targets.set(policy.functionName, Math.max(wanted, policy.minInstances));
  }
  return targets;
}

/**
 * Looks for bursts every `periodS` (0: never) and asks the runtime for the instances they want. Returns a stop
 * function. A failed read or ask is logged and tried again next period.
 */
export function prewarmOnBursts(deps: {
  functions: FunctionRuntime;
  meta: MetaStore;
  temporal: Client;
  semaphoreId: string;
  periodS: number;
  logger: Logger;
}): () => void {
  /** What this worker last asked for, per function. */
  const asked = new Map<string, number>();
  return everyPeriod(
    deps.periodS,
    async () => {
      const policies = (await deps.meta.listFunctions())
        .map(warmthPolicyOf)
        .filter((p) => p.prewarmQueueDepth !== undefined);
      if (policies.length === 0) return;
      const state = await deps.temporal.workflow.getHandle(deps.semaphoreId).query(semaphoreStateQuery);
      for (const [functionName, instances] of prewarmTargets(state, policies)) {
        if (asked.get(functionName) === instances) continue;
        await deps.functions.prewarm(functionName, instances);
        asked.set(functionName, instances);
        deps.logger.debug({ functionName, instances }, 'asked for warm instances');
      }
    },
    (err) => deps.logger.debug({ err: errorMessage(err) }, 'bursts not checked this time'),
  );
}
