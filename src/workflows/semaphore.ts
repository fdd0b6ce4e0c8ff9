import {
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import {
  type LeaseRef,
  RECENT_LEASES,
  type SemaphoreHolder,
  type SemaphoreInput,
  type SemaphoreState,
} from '../types.js';
import { liftQuarantine, nextProbeAt, noteGrant, recordOutcome } from './breaker.js';
import {
  acquireSignal,
  acquireUpdate,
  liftQuarantineSignal,
  releaseSignal,
  semaphorePolicySignal,
  semaphoreStateQuery,
  setLimitSignal,
  slotGrantedSignal,
  warmthSignal,
} from './definitions.js';
import { admitUser, chargeGrant, forgetIdleUsers, grantPolicyOf, nextWaiter } from './grant-order.js';

// The deployment's one global semaphore (docs/ARCHITECTURE.md, "The cap"): never more grants than the limit, in the
// order grant-order.ts decides (lanes, fair share, caps, then arrival), leases keyed by (workflowId, runId, leaseId),
// idempotent release, and a slot freed only by its holder's release or by the holder's workflow being found closed.
// A waiter whose deadline passes is dropped, never granted. A release may carry its run's outcome on the checkpoint,
// which the checkpoint's circuit breaker counts (breaker.ts). Its state crosses continue-as-new intact.
//
// A lease is asked for by update (`acquireSlot`): the update answers in the very workflow task that grants it, so a
// freed slot reaches the next waiter in one round trip. The first version's signal protocol (acquire by signal, grant
// by a `slotGranted` signal) is still served for tasks started before the update existed.

const leaseCheckOptions = {
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', maximumInterval: '10s', maximumAttempts: 3 },
} as const;
const leaseCheck = proxyActivities<Activities>(leaseCheckOptions);
// Tasks waiting for a slot hold the worker's activity slots (their runTask waits on the acquire update), so a lease
// check queued as an ordinary activity can wait behind them forever. As a local activity it needs none of them.
const localLeaseCheck = proxyLocalActivities<Activities>(leaseCheckOptions);
/** Runs that started after this patch check their leases beside the granting, never instead of it. */
const LEASE_CHECK_BESIDE_GRANTS = 'lease-check-beside-grants';

const sameLease = (a: LeaseRef, b: LeaseRef) =>
  a.workflowId === b.workflowId && a.runId === b.runId && a.leaseId === b.leaseId;

export async function semaphoreWorkflow(input: SemaphoreInput): Promise<void> {
  const state: SemaphoreState = { recent: [], ...input.state, grantsThisRun: 0 };
  let changed = true;
  let grantsInFlight = 0;
  /** Set once this run hands over to its successor: waiting updates answer "ask again". */
  let handingOver = false;
  state.priorityAgingS ??= input.priorityAgingS;
  if (input.breaker) state.breaker ??= input.breaker;
  const policy = () => grantPolicyOf(state);
  /** Leases dropped because their deadline passed, for their waiting update's answer. */
  const expired = new Set<string>();
  const leaseKey = (lease: LeaseRef) => `${lease.workflowId}/${lease.runId}/${lease.leaseId}`;

  const isHolder = (lease: LeaseRef) => state.holders.some((h) => sameLease(h, lease));
  const isQueued = (lease: LeaseRef) => state.queue.some((w) => sameLease(w, lease));

  setHandler(acquireUpdate, async ({ lease, submittedAt, ...owner }) => {
    if (!isHolder(lease) && !isQueued(lease) && !handingOver && !expired.has(leaseKey(lease))) {
      admitUser(state, owner.user);
      state.queue.push({ ...lease, ...owner, requestedAt: submittedAt ?? Date.now(), byUpdate: true });
      changed = true;
    }
    await condition(() => isHolder(lease) || handingOver || !isQueued(lease));
    if (isHolder(lease)) return { granted: true };
    return expired.has(leaseKey(lease)) ? { granted: false, expired: true } : { granted: false };
  });
  setHandler(acquireSignal, (lease) => {
    if (!isHolder(lease) && !isQueued(lease)) state.queue.push({ ...lease, requestedAt: Date.now() });
    changed = true;
  });
  setHandler(releaseSignal, ({ outcome, ...lease }) => {
    const held = state.holders.find((h) => sameLease(h, lease));
    // Only a holder's outcome counts, once: a late or repeated release finds no holder.
    if (held?.model !== undefined && outcome) recordOutcome(state, held.model, lease, outcome, Date.now());
    if (held) {
      state.recent?.push({
        workflowId: held.workflowId,
        leaseId: held.leaseId,
        grantedAt: held.grantedAt,
        releasedAt: Date.now(),
      });
      if (state.recent && state.recent.length > RECENT_LEASES)
        state.recent.splice(0, state.recent.length - RECENT_LEASES);
    }
    state.holders = state.holders.filter((h) => !sameLease(h, lease));
    state.queue = state.queue.filter((w) => !sameLease(w, lease));
    changed = true;
  });
  setHandler(warmthSignal, (warm) => {
    state.warm = warm;
    changed = true;
  });
  setHandler(semaphorePolicySignal, ({ priorityAgingS, breaker }) => {
    if (Number.isFinite(priorityAgingS) && priorityAgingS >= 0) state.priorityAgingS = priorityAgingS;
    if (breaker && breaker.failures >= 1 && breaker.windowS > 0 && breaker.cooldownS >= 0) state.breaker = breaker;
    changed = true;
  });
  setHandler(liftQuarantineSignal, (model) => {
    liftQuarantine(state, model);
    changed = true;
  });
  setHandler(setLimitSignal, (limit) => {
    if (Number.isInteger(limit) && limit >= 1) state.limit = limit;
    changed = true;
  });
  setHandler(semaphoreStateQuery, () => state);

  /** Signals the grant of a signal-era lease; a holder that cannot receive it (closed, not found) has released. */
  const sendGrant = async (holder: SemaphoreHolder) => {
    grantsInFlight++;
    try {
      await getExternalWorkflowHandle(holder.workflowId, holder.runId).signal(slotGrantedSignal, {
        leaseId: holder.leaseId,
      });
    } catch (err) {
      log.warn('grant not delivered; slot freed', { workflowId: holder.workflowId, error: String(err) });
      state.holders = state.holders.filter((h) => !sameLease(h, holder));
      changed = true;
    } finally {
      grantsInFlight--;
    }
  };

  /** Drops the waiters whose deadline has passed: they must never start. */
  const dropExpired = () => {
    const now = Date.now();
    const [late, onTime] = partition(state.queue, (w) => w.deadlineAt !== undefined && w.deadlineAt <= now);
    if (late.length === 0) return;
    for (const w of late) expired.add(leaseKey(w));
    state.queue = onTime;
  };

  const grantWhilePossible = () => {
    dropExpired();
    while (state.holders.length < state.limit) {
      const index = nextWaiter(state, Date.now(), policy());
      if (index < 0) break;
      const [next] = state.queue.splice(index, 1);
      chargeGrant(state, next);
      const { requestedAt: _requestedAt, deadlineAt: _deadlineAt, ...lease } = next;
      const holder: SemaphoreHolder = { ...lease, grantedAt: Date.now() };
      noteGrant(state, holder, holder.grantedAt);
      state.holders.push(holder);
      state.totalGrants++;
      state.grantsThisRun++;
      // An update waiting for this lease sees it granted when this activation ends; a signal-era one is told.
      if (!holder.byUpdate) void sendGrant(holder);
    }
    forgetIdleUsers(state);
  };

  // One timer for the earliest deadline among the waiters, so a deadline drops its waiter even when nothing else
  // happens meanwhile.
  let deadlineTimerAt: number | undefined;
  const armDeadline = () => {
    const earliest = Math.min(...state.queue.map((w) => w.deadlineAt ?? Number.POSITIVE_INFINITY));
    if (!Number.isFinite(earliest) || (deadlineTimerAt !== undefined && deadlineTimerAt <= earliest)) return;
    deadlineTimerAt = earliest;
    void sleep(Math.max(1, earliest - Date.now())).then(() => {
      if (deadlineTimerAt === earliest) deadlineTimerAt = undefined;
      changed = true;
    });
  };

  // One timer for the earliest end of a quarantine, so that the probe is granted when the cooldown ends.
  let probeTimerAt: number | undefined;
  const armProbe = () => {
    const earliest = nextProbeAt(state, Date.now());
    if (earliest === undefined || (probeTimerAt !== undefined && probeTimerAt <= earliest)) return;
    probeTimerAt = earliest;
    void sleep(Math.max(1, earliest - Date.now())).then(() => {
      if (probeTimerAt === earliest) probeTimerAt = undefined;
      changed = true;
    });
  };

  const shouldContinueAsNew = () =>
    workflowInfo().continueAsNewSuggested || state.grantsThisRun >= input.continueAsNewAfterGrants;

  // One standing timer per lease-check period: a steady stream of signals neither postpones the check nor adds a
  // timer to the history at every wake-up.
  let leaseCheckDue = false;
  let leaseTimerArmed = false;
  let checking = false;
  const checkBesideGrants = patched(LEASE_CHECK_BESIDE_GRANTS);
  const armLeaseCheck = () => {
    if (leaseTimerArmed) return;
    leaseTimerArmed = true;
    void sleep(input.leaseCheckS * 1000).then(() => {
      leaseTimerArmed = false;
      leaseCheckDue = true;
    });
  };

  while (!shouldContinueAsNew()) {
    changed = false;
    grantWhilePossible();
    if (shouldContinueAsNew()) break;
    if (state.holders.length > 0) armLeaseCheck();
    armDeadline();
    armProbe();
    await condition(() => changed || (leaseCheckDue && !checking));
    if (!leaseCheckDue || checking) continue;
    leaseCheckDue = false;
    if (state.holders.length === 0) continue;
    if (!checkBesideGrants) {
      await freeSlotsOfClosedHolders(state, leaseCheck.findClosedWorkflows);
      continue;
    }
    checking = true;
    void freeSlotsOfClosedHolders(state, localLeaseCheck.findClosedWorkflows).finally(() => {
      checking = false;
      changed = true;
    });
  }

  // Waiting updates answer "ask again" (their leases stay queued in the state handed over), outstanding grant signals
  // settle (a failed one frees its slot), and only then does the state move on.
  handingOver = true;
  await condition(() => grantsInFlight === 0 && !checking && allHandlersFinished());
  await continueAsNew<typeof semaphoreWorkflow>({ ...input, state });
}

function partition<T>(items: readonly T[], test: (item: T) => boolean): [T[], T[]] {
  const yes: T[] = [];
  const no: T[] = [];
  for (const item of items) (test(item) ? yes : no).push(item);
  return [yes, no];
}

/** Time alone never frees a slot; a holder whose workflow is closed (terminated, timed out) does. */
async function freeSlotsOfClosedHolders(
  state: SemaphoreState,
  findClosedWorkflows: Activities['findClosedWorkflows'],
): Promise<void> {
  const checked = state.holders.map(({ workflowId, runId, leaseId }) => ({ workflowId, runId, leaseId }));
  let closed: LeaseRef[];
  try {
    closed = await findClosedWorkflows(checked);
  } catch (err) {
    // Not knowing is not a reason to free anything: keep the slots and check again next period.
    log.warn('lease check failed; holders kept', { error: String(err) });
    return;
  }
  if (closed.length === 0) return;
  log.info('freeing slots of closed holders', { closed: closed.map((c) => c.workflowId) });
  state.holders = state.holders.filter((h) => !closed.some((c) => sameLease(c, h)));
}
