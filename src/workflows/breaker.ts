import type {
  BreakerPolicy,
  CheckpointBreaker,
  LeaseOutcome,
  LeaseRef,
  SemaphoreHolder,
  SemaphoreState,
} from '../types.js';

// A circuit breaker per checkpoint (docs/ARCHITECTURE.md, "The cap"), kept in the semaphore's state. Pure and
// deterministic: the semaphore workflow runs it on workflow time, and the API reads a checkpoint's health with it.
// - closed: instance failures (a crash, an out-of-memory error, a failed start) are counted; a success clears them;
// - `failures` of them in a row within `windowS` open it: the checkpoint is quarantined, its waiters stay queued
//   and are not granted, and the API refuses its new tasks with a 503;
// - after `cooldownS` it is half-open (probing): one waiter at a time is granted as the probe. Any success closes
//   it; the probe's failure opens it again from that moment; a probe released without an outcome lets another probe.

export const DEFAULT_BREAKER: BreakerPolicy = { failures: 3, windowS: 300, cooldownS: 60 };

export type Health = 'ok' | 'quarantined' | 'probing';

/** A checkpoint's health as users see it; `retryAfterMs` while quarantined: how long until a probe may run. */
export interface CheckpointHealth {
  health: Health;
  reason?: string;
  /** Epoch ms the current health began: the breaker opening, or its cooldown ending. */
  since?: number;
  retryAfterMs?: number;
}

/** The longest instance error message a breaker's reason quotes. */
const REASON_MESSAGE_CHARS = 300;

export const breakerPolicyOf = (state: Pick<SemaphoreState, 'breaker'>): BreakerPolicy =>
  state.breaker ?? DEFAULT_BREAKER;

const sameLease = (a: LeaseRef, b: LeaseRef) =>
  a.workflowId === b.workflowId && a.runId === b.runId && a.leaseId === b.leaseId;

const probeHeld = (breaker: CheckpointBreaker, holders: readonly SemaphoreHolder[]) => {
  const probe = breaker.open?.probe;
  return probe !== undefined && holders.some((h) => sameLease(h, probe));
};

/**
 * Whether a waiter for `model` must wait: its checkpoint is quarantined, or probing with the probe still running.
 * `holders` empty reads the order as if every slot were free (the API's queue positions).
 */
export function heldBack(state: SemaphoreState, model: string | undefined, now: number): boolean {
  const breaker = model === undefined ? undefined : state.breakers?.[model];
  if (!breaker?.open) return false;
  return now < breaker.open.probeAt || probeHeld(breaker, state.holders);
}

/** Records a grant: to a probing checkpoint, the grant is its probe. */
export function noteGrant(state: SemaphoreState, lease: LeaseRef & { model?: string }, now: number): void {
  const open = lease.model === undefined ? undefined : state.breakers?.[lease.model]?.open;
  if (open && now >= open.probeAt) {
    open.probe = { workflowId: lease.workflowId, runId: lease.runId, leaseId: lease.leaseId };
  }
}

/** What an instance failure was, as a breaker's reason quotes it: "crashed: <its message>". */
function faultText(outcome: Extract<LeaseOutcome, { ok: false }>): string {
  const what = { crash: 'crashed', oom: 'ran out of memory', start: 'failed to start' }[outcome.fault];
  const message =
    outcome.message.length > REASON_MESSAGE_CHARS
      ? `${outcome.message.slice(0, REASON_MESSAGE_CHARS)}…`
      : outcome.message;
  return `${what}: ${message}`;
}

/** Counts the outcome of a holder's run on `model`, opening, re-opening or closing its breaker. */
export function recordOutcome(
  state: SemaphoreState,
  model: string,
  lease: LeaseRef,
  outcome: LeaseOutcome,
  now: number,
): void {
  const policy = breakerPolicyOf(state);
  const breakers = { ...state.breakers };
  forgetExpired(breakers, now, policy);
  if (outcome.ok) {
    delete breakers[model];
  } else {
    const breaker = breakers[model] ?? { failures: [] };
    const failures = [...breaker.failures, now].slice(-Math.max(policy.failures, 1));
    const isProbe = breaker.open?.probe !== undefined && sameLease(breaker.open.probe, lease);
    let open = breaker.open;
    if (isProbe || (!open && failures.length >= policy.failures)) {
      const reason = isProbe
        ? `the probe's instance ${faultText(outcome)}`
        : `${failures.length} instance failures in a row within ${policy.windowS} s; the last one ${faultText(outcome)}`;
      open = { reason, since: now, probeAt: now + policy.cooldownS * 1000 };
    }
    breakers[model] = { failures, ...(open ? { open } : {}) };
  }
  state.breakers = breakers;
}

/** Drops failures older than the window, and the breakers left with none that are not open. */
function forgetExpired(breakers: Record<string, CheckpointBreaker>, now: number, policy: BreakerPolicy): void {
  const since = now - policy.windowS * 1000;
  for (const [model, breaker] of Object.entries(breakers)) {
    const failures = breaker.failures.filter((t) => t > since);
    if (failures.length === 0 && !breaker.open) delete breakers[model];
    else breakers[model] = { ...breaker, failures };
  }
}

/** An admin lifted the quarantine: the breaker closes, its count cleared. */
export function liftQuarantine(state: SemaphoreState, model: string): void {
  if (!state.breakers?.[model]) return;
  const { [model]: _lifted, ...rest } = state.breakers;
  state.breakers = rest;
}

/** When the earliest quarantine after `now` ends, so that the semaphore wakes to grant a probe; undefined: none. */
export function nextProbeAt(state: SemaphoreState, now: number): number | undefined {
  let earliest: number | undefined;
  for (const breaker of Object.values(state.breakers ?? {})) {
    const at = breaker.open?.probeAt;
    if (at !== undefined && at > now && (earliest === undefined || at < earliest)) earliest = at;
  }
  return earliest;
}

/** A checkpoint's health in `state` at `now`. */
export function healthOf(state: Pick<SemaphoreState, 'breakers'>, model: string, now: number): CheckpointHealth {
  const open = state.breakers?.[model]?.open;
  if (!open) return { health: 'ok' };
  if (now < open.probeAt) {
    return { health: 'quarantined', reason: open.reason, since: open.since, retryAfterMs: open.probeAt - now };
  }
  return { health: 'probing', reason: open.reason, since: open.probeAt };
}
