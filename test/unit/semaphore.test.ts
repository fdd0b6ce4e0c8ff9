import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ActivityDeps } from '../../src/activities/index.js';
import { acquireSlot, createSlotActivities, releaseSlot } from '../../src/activities/slots.js';
import type { LeaseOutcome, LeaseRef, SemaphoreState } from '../../src/types.js';
import {
  liftQuarantineSignal,
  releaseSignal,
  semaphorePolicySignal,
  semaphoreStateQuery,
  setLimitSignal,
} from '../../src/workflows/definitions.js';

// The semaphore on a real Temporal dev server. Holders are workflows of a type no worker serves: they stay open
// until terminated, and their histories show every grant signal they received.

const taskQueue = `semaphore-test-${randomUUID()}`;
const holderQueue = `${taskQueue}-holders`;
let client: Client;
let worker: Worker;
let running: Promise<void>;
let slots: ReturnType<typeof createSlotActivities>;

beforeAll(async () => {
  const address = inject('temporalAddress');
  client = new Client({ connection: await Connection.connect({ address }) });
  slots = createSlotActivities({ temporal: client, taskQueue } as unknown as ActivityDeps);
  worker = await Worker.create({
    connection: await NativeConnection.connect({ address }),
    taskQueue,
    workflowBundle: { codePath: inject('workflowBundlePath') },
    activities: slots,
  });
  running = worker.run();
});

afterAll(async () => {
  worker?.shutdown();
  await running;
  await client?.connection.close();
});

const LEASE_CHECK_S = 1;

function semaphore(limit: number, continueAsNewAfterGrants = 3) {
  const id = `sem-${randomUUID()}`;
  const policy = { leaseCheckS: LEASE_CHECK_S, continueAsNewAfterGrants, initialLimit: limit };
  const handle = () => client.workflow.getHandle(id);
  return {
    id,
    acquire: (lease: LeaseRef) => slots.requestSlot({ semaphoreId: id, lease, policy }),
    release: (lease: LeaseRef) => handle().signal(releaseSignal, lease),
    setLimit: (n: number) => handle().signal(setLimitSignal, n),
    state: () => handle().query(semaphoreStateQuery) as Promise<SemaphoreState>,
    runId: async () => (await handle().describe()).runId,
  };
}

async function holder(): Promise<LeaseRef> {
  const workflowId = `holder-${randomUUID()}`;
  const h = await client.workflow.start('sdflowTestHolder', { taskQueue: holderQueue, workflowId });
  return { workflowId, runId: h.firstExecutionRunId, leaseId: randomUUID() };
}

/** The leaseIds a holder was granted, from its own history. */
async function grantsInHistory(lease: LeaseRef): Promise<string[]> {
  const history = await client.workflow.getHandle(lease.workflowId, lease.runId).fetchHistory();
  const converter = (await import('@temporalio/common')).defaultPayloadConverter;
  return (history.events ?? [])
    .filter((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'slotGranted')
    .map((e) => {
      const payload = e.workflowExecutionSignaledEventAttributes?.input?.payloads?.[0];
      return (converter.fromPayload(payload!) as { leaseId: string }).leaseId;
    });
}

/** The grants a holder ends up with; a grant signal lands in its history a moment after the state shows it. */
async function grantsReceived(lease: LeaseRef, expected: number): Promise<string[]> {
  return eventually(
    () => grantsInHistory(lease),
    (g) => g.length >= expected,
  );
}

async function eventually<T>(probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: T;
  do {
    last = await probe();
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  } while (Date.now() < until);
  throw new Error(`condition not met in ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
}

const ids = (leases: LeaseRef[]) => leases.map((l) => l.workflowId);

describe('semaphore', () => {
  it('grants in FIFO order, never more than the limit', async () => {
    const sem = semaphore(2, 1000);
    const leases = [await holder(), await holder(), await holder(), await holder()];
    for (const l of leases) await sem.acquire(l);
    let s = await eventually(sem.state, (st) => st.holders.length === 2 && st.queue.length === 2);
    expect(ids(s.holders)).toEqual(ids(leases.slice(0, 2)));
    expect(ids(s.queue)).toEqual(ids(leases.slice(2)));

    await sem.release(leases[0]);
    s = await eventually(sem.state, (st) => st.queue.length === 1);
    expect(ids(s.holders)).toEqual(ids([leases[1], leases[2]]));
    await sem.release(leases[1]);
    s = await eventually(sem.state, (st) => st.queue.length === 0);
    expect(ids(s.holders)).toEqual(ids([leases[2], leases[3]]));
    for (const l of leases) expect(await grantsReceived(l, 1)).toEqual([l.leaseId]);
  });

  it('release is idempotent and never frees another lease; a duplicate acquire is ignored', async () => {
    const sem = semaphore(1, 1000);
    const [a, b] = [await holder(), await holder()];
    await sem.acquire(a);
    await sem.acquire(a);
    await sem.acquire(b);
    await eventually(sem.state, (st) => st.holders.length === 1 && st.queue.length === 1);
    // A release with a's workflow but another leaseId (a late release of an older lease) frees nothing.
    await sem.release({ ...a, leaseId: randomUUID() });
    await sem.release({ ...b, runId: 'another-run' });
    let s = await sem.state();
    expect(ids(s.holders)).toEqual([a.workflowId]);
    expect(ids(s.queue)).toEqual([b.workflowId]);

    await sem.release(a);
    await sem.release(a);
    s = await eventually(sem.state, (st) => st.holders.length === 1 && st.holders[0].workflowId === b.workflowId);
    expect(s.queue).toEqual([]);
    expect(await grantsReceived(a, 1)).toEqual([a.leaseId]);
  });

  it('a waiter that withdraws is never granted', async () => {
    const sem = semaphore(1, 1000);
    const [a, b, c] = [await holder(), await holder(), await holder()];
    for (const l of [a, b, c]) await sem.acquire(l);
    await eventually(sem.state, (st) => st.queue.length === 2);
    await sem.release(b);
    await sem.release(a);
    const s = await eventually(sem.state, (st) => st.holders[0]?.workflowId === c.workflowId);
    expect(s.queue).toEqual([]);
    expect(await grantsInHistory(b)).toEqual([]);
  });

  it('a grant to a closed workflow counts as released at once', async () => {
    const sem = semaphore(1, 1000);
    const [a, b, c] = [await holder(), await holder(), await holder()];
    for (const l of [a, b, c]) await sem.acquire(l);
    await eventually(sem.state, (st) => st.queue.length === 2);
    await client.workflow.getHandle(b.workflowId).terminate('closed while queued');
    await sem.release(a);
    const s = await eventually(sem.state, (st) => st.holders[0]?.workflowId === c.workflowId);
    expect(s.holders).toHaveLength(1);
    expect(await grantsReceived(c, 1)).toEqual([c.leaseId]);
  });

  it('frees the slot of a holder found closed, but keeps an open (stalled) holder', async () => {
    const sem = semaphore(2, 1000);
    const [stalled, doomed, waiting] = [await holder(), await holder(), await holder()];
    for (const l of [stalled, doomed, waiting]) await sem.acquire(l);
    await eventually(sem.state, (st) => st.holders.length === 2);
    await client.workflow.getHandle(doomed.workflowId).terminate('terminated without releasing');
    const s = await eventually(sem.state, (st) => st.holders.some((h) => h.workflowId === waiting.workflowId));
    expect(ids(s.holders).sort()).toEqual([stalled.workflowId, waiting.workflowId].sort());
    // Several lease checks later the open holder still holds: time alone never frees a slot.
    await new Promise((r) => setTimeout(r, LEASE_CHECK_S * 3000));
    expect(ids((await sem.state()).holders)).toContain(stalled.workflowId);
  });

  it('takes a new limit by signal', async () => {
    const sem = semaphore(1, 1000);
    const leases = [await holder(), await holder(), await holder()];
    for (const l of leases) await sem.acquire(l);
    await eventually(sem.state, (st) => st.holders.length === 1 && st.queue.length === 2);
    await sem.setLimit(3);
    const s = await eventually(sem.state, (st) => st.holders.length === 3);
    expect(s.limit).toBe(3);
    await sem.setLimit(1);
    await sem.release(leases[0]);
    const after = await eventually(sem.state, (st) => st.holders.length === 2);
    expect(after.queue).toEqual([]);
  });

  it('carries holders and queue across continue-as-new (threshold 3)', async () => {
    const sem = semaphore(2, 3);
    const leases = await Promise.all(Array.from({ length: 6 }, () => holder()));
    for (const l of leases) await sem.acquire(l);
    const firstRun = await sem.runId();
    await eventually(sem.state, (st) => st.holders.length === 2 && st.queue.length === 4);
    // Each lease is released once it holds: a release that arrives while it is still queued is a withdrawal.
    for (const l of leases.slice(0, 3)) {
      await eventually(sem.state, (st) => st.holders.some((h) => h.leaseId === l.leaseId));
      await sem.release(l);
    }
    const s = await eventually(sem.state, (st) => st.totalGrants === 5);
    expect(await sem.runId()).not.toBe(firstRun);
    expect(ids(s.holders)).toEqual(ids(leases.slice(3, 5)));
    expect(ids(s.queue)).toEqual(ids(leases.slice(5)));
    await sem.release(leases[3]);
    const last = await eventually(sem.state, (st) => st.totalGrants === 6);
    expect(ids(last.holders)).toEqual(ids(leases.slice(4)));
    for (const l of leases) expect(await grantsReceived(l, 1)).toEqual([l.leaseId]);
  });

  it('takes a burst of 200 acquires at once and never grants more than the limit', async () => {
    const limit = 5;
    const sem = semaphore(limit, 50);
    const leases = await Promise.all(Array.from({ length: 200 }, () => holder()));
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const s = await sem.state().catch(() => undefined);
        if (s) peak = Math.max(peak, s.holders.length);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await Promise.all(leases.map((l) => sem.acquire(l)));
    await eventually(sem.state, (st) => st.holders.length + st.queue.length === 200, 60_000);
    const granted: LeaseRef[] = [];
    while (granted.length < 200) {
      const s = await eventually(sem.state, (st) => st.holders.length > 0, 30_000);
      expect(s.holders.length).toBeLessThanOrEqual(limit);
      for (const h of s.holders) {
        granted.push(h);
        await sem.release(h);
      }
      await eventually(
        sem.state,
        (st) => st.holders.every((h) => !granted.some((g) => g.leaseId === h.leaseId)),
        30_000,
      );
    }
    sampling = false;
    await sampler;
    expect(peak).toBeLessThanOrEqual(limit);
    expect(new Set(granted.map((g) => g.leaseId)).size).toBe(200);
    const final = await sem.state();
    expect(final.totalGrants).toBe(200);
    expect(final.queue).toEqual([]);
  }, 180_000);
});

describe('semaphore: acquire by update', () => {
  function updateSemaphore(limit: number, continueAsNewAfterGrants = 1000) {
    const sem = semaphore(limit, continueAsNewAfterGrants);
    const ref = {
      id: sem.id,
      taskQueue,
      policy: { leaseCheckS: LEASE_CHECK_S, continueAsNewAfterGrants, initialLimit: limit },
    };
    return {
      ...sem,
      /** Resolves once the lease is granted; aborting the signal gives up waiting. */
      take: (lease: LeaseRef, signal = new AbortController().signal, model?: string) =>
        acquireSlot(client, ref, { lease, ...(model ? { model } : {}) }, signal),
      give: (lease: LeaseRef, outcome?: LeaseOutcome) => releaseSlot(client, sem.id, lease, outcome),
    };
  }

  it('answers at once when a slot is free, and when the lease already holds one (a retried attempt)', async () => {
    const sem = updateSemaphore(1);
    const a = await holder();
    await sem.take(a); // starts the semaphore too: it was not running
    await sem.take(a);
    const s = await sem.state();
    expect(ids(s.holders)).toEqual([a.workflowId]);
    expect(s.totalGrants).toBe(1);
    // Granted by the answer, not by a signal.
    expect(await grantsInHistory(a)).toEqual([]);
  });

  it('a waiting acquire answers when a slot frees, in arrival order, never above the limit', async () => {
    const sem = updateSemaphore(2);
    const leases = await Promise.all(Array.from({ length: 5 }, () => holder()));
    const order: string[] = [];
    await sem.take(leases[0]);
    await sem.take(leases[1]);
    const waiting = leases.slice(2).map((l, i) =>
      (async () => {
        // Queued one after the other, so that arrival order is known.
        await new Promise((r) => setTimeout(r, i * 300));
        await sem.take(l);
        order.push(l.workflowId);
      })(),
    );
    await eventually(sem.state, (st) => st.queue.length === 3);
    for (const l of leases) {
      await sem.give(l);
      const s = await sem.state();
      expect(s.holders.length).toBeLessThanOrEqual(2);
    }
    await Promise.all(waiting);
    expect(order).toEqual(ids(leases.slice(2)));
    const s = await eventually(sem.state, (st) => st.holders.length === 0);
    // Every ended lease is recorded with when it was granted and released.
    expect(s.recent?.map((r) => r.leaseId).sort()).toEqual(leases.map((l) => l.leaseId).sort());
    for (const r of s.recent ?? []) expect(r.releasedAt).toBeGreaterThanOrEqual(r.grantedAt);
  });

  it('a waiter that gives up and releases is withdrawn, never granted', async () => {
    const sem = updateSemaphore(1);
    const [a, b, c] = [await holder(), await holder(), await holder()];
    await sem.take(a);
    const giveUp = new AbortController();
    const bWaits = sem.take(b, giveUp.signal);
    const cWaits = sem.take(c);
    await eventually(sem.state, (st) => st.queue.length === 2);
    giveUp.abort();
    await expect(bWaits).rejects.toThrow();
    await sem.give(b);
    await sem.give(a);
    await cWaits;
    const s = await sem.state();
    expect(ids(s.holders)).toEqual([c.workflowId]);
    expect(s.recent?.map((r) => r.leaseId)).not.toContain(b.leaseId);
  });

  it('waiters keep their place across continue-as-new: the handed-over run grants them', async () => {
    const sem = updateSemaphore(1, 3);
    const leases = await Promise.all(Array.from({ length: 6 }, () => holder()));
    const firstRun = (await (async () => {
      await sem.take(leases[0]);
      return sem.runId();
    })()) as string;
    const granted: string[] = [];
    const waiting = leases.slice(1).map((l, i) =>
      (async () => {
        await new Promise((r) => setTimeout(r, i * 200));
        await sem.take(l);
        granted.push(l.workflowId);
      })(),
    );
    await eventually(sem.state, (st) => st.queue.length === 5);
    for (const l of leases) {
      await eventually(sem.state, (st) => st.holders.some((h) => h.leaseId === l.leaseId), 30_000);
      await sem.give(l);
    }
    await Promise.all(waiting);
    expect(granted).toEqual(ids(leases.slice(1)));
    expect(await sem.runId()).not.toBe(firstRun);
    expect((await sem.state()).totalGrants).toBe(6);
  });

  it("a checkpoint's instance failures quarantine it: its waiters wait, a probe after the cooldown closes it", async () => {
    const sem = updateSemaphore(2);
    const [a1, a2, a3, b1] = await Promise.all([holder(), holder(), holder(), holder()]);
    const crash: LeaseOutcome = { ok: false, fault: 'crash', message: 'instance failed mid-request' };
    await sem.take(a1, undefined, 'a');
    await client.workflow
      .getHandle(sem.id)
      .signal(semaphorePolicySignal, { priorityAgingS: 0, breaker: { failures: 2, windowS: 60, cooldownS: 5 } });
    await sem.take(a2, undefined, 'a');
    await sem.give(a1, crash);
    await sem.give(a2, crash);
    const open = await eventually(sem.state, (st) => st.breakers?.a?.open !== undefined);
    expect(open.breakers?.a?.open?.reason).toContain('crashed: instance failed mid-request');
    // Both slots are free, yet only the other checkpoint's waiter is granted; a3 waits until the cooldown ends.
    let a3Granted = false;
    const a3Waits = sem.take(a3, undefined, 'a').then(() => {
      a3Granted = true;
    });
    await sem.take(b1, undefined, 'b');
    const held = await sem.state();
    expect(ids(held.holders)).toEqual([b1.workflowId]);
    expect(a3Granted).toBe(false);
    // The probe is granted without anything else happening (the semaphore's own timer), and its success closes it.
    await a3Waits;
    expect((await sem.state()).breakers?.a?.open?.probe?.leaseId).toBe(a3.leaseId);
    await sem.give(a3, { ok: true });
    const closed = await eventually(sem.state, (st) => st.breakers?.a === undefined);
    expect(closed.holders.map((h) => h.leaseId)).toEqual([b1.leaseId]);
  });

  it('an admin lifts a quarantine by signal', async () => {
    const sem = updateSemaphore(1);
    const [a1, a2] = await Promise.all([holder(), holder()]);
    const oom: LeaseOutcome = { ok: false, fault: 'oom', message: 'CUDA out of memory' };
    await sem.take(a1, undefined, 'a');
    await client.workflow
      .getHandle(sem.id)
      .signal(semaphorePolicySignal, { priorityAgingS: 0, breaker: { failures: 1, windowS: 60, cooldownS: 600 } });
    await sem.give(a1, oom);
    await eventually(sem.state, (st) => st.breakers?.a?.open !== undefined);
    const a2Waits = sem.take(a2, undefined, 'a');
    await eventually(sem.state, (st) => st.queue.length === 1);
    await client.workflow.getHandle(sem.id).signal(liftQuarantineSignal, 'a');
    await a2Waits;
    expect((await sem.state()).breakers?.a).toBeUndefined();
  });

  it('takes a burst of 100 acquires at once and never grants more than the limit', async () => {
    const limit = 4;
    const sem = updateSemaphore(limit, 40);
    const leases = await Promise.all(Array.from({ length: 100 }, () => holder()));
    let inside = 0;
    let peak = 0;
    await Promise.all(
      leases.map(async (l) => {
        await sem.take(l);
        inside++;
        peak = Math.max(peak, inside);
        await new Promise((r) => setTimeout(r, 10));
        inside--;
        await sem.give(l);
      }),
    );
    expect(peak).toBeLessThanOrEqual(limit);
    const s = await sem.state();
    expect(s.totalGrants).toBe(100);
    expect(s.holders).toEqual([]);
    expect(s.queue).toEqual([]);
  }, 180_000);
});
