import { LANES, type Lane, type SemaphoreHolder, type SemaphoreState, type SemaphoreWaiter } from '../types.js';
import { heldBack } from './breaker.js';

// The order in which the semaphore grants its slots (docs/ARCHITECTURE.md, "The cap"). Pure and deterministic, so
// the semaphore workflow decides with it and the API answers queue positions with the same rule:
// 1. lanes: a higher lane first; a low waiter counts as normal once it has waited `agingMs`, so it never starves
//    (aging stops at normal: old normal tasks outranking fresh ones would undo the fair share under a backlog);
// 2. fair share within a lane: the user with the least service so far, service being grants over the key's weight
//    (a user who arrives starts at the lane's current level, neither owed a backlog nor behind everyone);
// 3. a user never holds more than their key's `maxSlots`;
// 4. when fairness leaves a choice, a task whose checkpoint has an idle warm instance;
// 5. within one user and one lane, arrival order.
// A waiter whose deadline has passed is never granted: the semaphore drops it first. A waiter whose checkpoint is
// quarantined (breaker.ts) waits where it is, and is not granted until its checkpoint may run a probe.

export interface GrantPolicy {
  /** How long a waiter waits in one lane before it counts as the next lane up. */
  agingMs: number;
}

/** The policy a semaphore's state carries (its aging setting, from the worker's config). */
export const grantPolicyOf = (state: Pick<SemaphoreState, 'priorityAgingS'>): GrantPolicy => ({
  agingMs: (state.priorityAgingS ?? 0) * 1000,
});

const DEFAULT_LANE: Lane = 'normal';
const laneRank = (lane: string | undefined) => {
  const rank = LANES.indexOf((lane ?? DEFAULT_LANE) as Lane);
  return rank < 0 ? LANES.indexOf(DEFAULT_LANE) : rank;
};

/** The lane a waiter counts in now: its own, or normal for a low one that has waited an aging period. */
export function effectiveLane(waiter: SemaphoreWaiter, now: number, policy: GrantPolicy): number {
  const rank = laneRank(waiter.lane);
  const normal = laneRank(DEFAULT_LANE);
  if (rank <= normal || policy.agingMs <= 0 || now - waiter.requestedAt < policy.agingMs) return rank;
  return normal;
}

const userOf = (entry: { user?: string }) => entry.user ?? '';

/** The lowest service among the users with something queued or held, but `except`: where a newcomer starts. */
function serviceFloor(state: SemaphoreState, except: string): number {
  const service = state.service ?? {};
  let floor: number | undefined;
  for (const entry of [...state.queue, ...state.holders]) {
    const user = userOf(entry);
    const s = service[user];
    if (user !== except && s !== undefined && (floor === undefined || s < floor)) floor = s;
  }
  return floor ?? 0;
}

/** Where a user's service stands; one not admitted yet (a state from before fair share) counts at the floor. */
const serviceOf = (state: SemaphoreState, user: string) => state.service?.[user] ?? serviceFloor(state, user);

/**
 * Admits a user who has nothing queued or held: they start at the lowest service among the active users, so that a
 * newcomer is neither owed the past nor behind everyone. Called when a waiter joins the queue.
 */
export function admitUser(state: SemaphoreState, user: string | undefined): void {
  const key = user ?? '';
  if (state.service?.[key] === undefined) state.service = { ...state.service, [key]: serviceFloor(state, key) };
}

const holdsOf = (holders: readonly SemaphoreHolder[], user: string) =>
  holders.reduce((n, h) => n + (userOf(h) === user ? 1 : 0), 0);

/** The index in `state.queue` of the waiter granted next, or -1 when none may be (empty, or every user at their cap). */
export function nextWaiter(state: SemaphoreState, now: number, policy: GrantPolicy): number {
  const eligible: number[] = [];
  for (let i = 0; i < state.queue.length; i++) {
    const waiter = state.queue[i];
    if (waiter.maxSlots !== undefined && holdsOf(state.holders, userOf(waiter)) >= waiter.maxSlots) continue;
    if (heldBack(state, waiter.model, now)) continue;
    eligible.push(i);
  }
  if (eligible.length === 0) return -1;
  const bestLane = Math.min(...eligible.map((i) => effectiveLane(state.queue[i], now, policy)));
  // Each user's earliest waiter in the best lane: submission order within a user and a lane.
  const heads = new Map<string, number>();
  for (const i of eligible) {
    if (effectiveLane(state.queue[i], now, policy) !== bestLane) continue;
    const user = userOf(state.queue[i]);
    const head = heads.get(user);
    if (head === undefined || state.queue[i].requestedAt < state.queue[head].requestedAt) heads.set(user, i);
  }
  const warm = state.warm ?? {};
  let best = -1;
  let bestKey: [number, number, number] | undefined;
  for (const [user, i] of heads) {
    const waiter = state.queue[i];
    const key: [number, number, number] = [
      serviceOf(state, user),
      (warm[waiter.model ?? ''] ?? 0) > 0 ? 0 : 1,
      waiter.requestedAt,
    ];
    if (
      !bestKey ||
      key[0] < bestKey[0] ||
      (key[0] === bestKey[0] && (key[1] < bestKey[1] || (key[1] === bestKey[1] && key[2] < bestKey[2])))
    ) {
      best = i;
      bestKey = key;
    }
  }
  return best;
}

/** Counts a grant against its user's share. */
export function chargeGrant(state: SemaphoreState, waiter: SemaphoreWaiter): void {
  const user = userOf(waiter);
  state.service = { ...state.service, [user]: serviceOf(state, user) + 1 / Math.max(waiter.weight ?? 1, 0.001) };
}

/** Forgets the service of users with nothing queued or held, so the state stays small; they start afresh later. */
export function forgetIdleUsers(state: SemaphoreState): void {
  if (!state.service) return;
  const active = new Set([...state.queue.map(userOf), ...state.holders.map(userOf)]);
  for (const user of Object.keys(state.service)) if (!active.has(user)) delete state.service[user];
}

/**
 * Every waiter's place in the grant order (1 = next), if no one arrived or left meanwhile and slots freed one by one:
 * what the API answers as a waiting task's `queuePosition`. Waiters of a quarantined checkpoint come last, in arrival
 * order: they are next once it is healthy again.
 */
export function grantOrder(state: SemaphoreState, now: number, policy: GrantPolicy): SemaphoreWaiter[] {
  const copy: SemaphoreState = {
    ...state,
    queue: [...state.queue],
    // Caps do not hold up the order: a user at their cap is next as soon as one of their slots frees.
    holders: [],
    service: { ...state.service },
  };
  const order: SemaphoreWaiter[] = [];
  while (copy.queue.length > 0) {
    const i = nextWaiter(copy, now, policy);
    if (i < 0) break;
    const [next] = copy.queue.splice(i, 1);
    chargeGrant(copy, next);
    order.push(next);
  }
  order.push(...copy.queue.sort((a, b) => a.requestedAt - b.requestedAt));
  return order;
}
