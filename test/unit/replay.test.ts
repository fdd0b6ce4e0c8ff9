import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type History, historyFromJSON } from '@temporalio/common/lib/proto-utils.js';
import { bundleWorkflowCode, Worker, type WorkflowBundle } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import { beforeAll, describe, expect, inject, it } from 'vitest';

// Replay (docs/ARCHITECTURE.md, "Replay and versioning"): histories recorded from real runs (test/fixtures/histories,
// recorded by `npm run fixtures:record`, never regenerated here) must replay against the workflow bundle the workers
// run.
// A deliberately changed workflow must fail the same check, so a passing replay means something.

const FIXTURES = fileURLToPath(new URL('../fixtures/histories/', import.meta.url));
const CHANGED = fileURLToPath(new URL('../fixtures/changed-workflows/', import.meta.url));

type HistoryEvent = NonNullable<History['events']>[number];

/**
 * The fixtures replay must cover, with the workflow type each records and how its run closed: each version of the
 * workflows keeps its histories, as tasks an earlier version started may be in flight when a new one ships.
 */
const VERSIONS = ['v1', 'v2'];
const REQUIRED: Record<string, { type: string; closedBy: keyof HistoryEvent }> = Object.fromEntries(
  VERSIONS.flatMap((v) => [
    [`generation-${v}-success`, { type: 'generationWorkflow', closedBy: 'workflowExecutionCompletedEventAttributes' }],
    [
      `generation-${v}-cancel-running`,
      { type: 'generationWorkflow', closedBy: 'workflowExecutionCanceledEventAttributes' },
    ],
    [
      `generation-${v}-cancel-queued`,
      { type: 'generationWorkflow', closedBy: 'workflowExecutionCanceledEventAttributes' },
    ],
    [`generation-${v}-failure`, { type: 'generationWorkflow', closedBy: 'workflowExecutionFailedEventAttributes' }],
    [
      `semaphore-${v}-continue-as-new`,
      { type: 'semaphoreWorkflow', closedBy: 'workflowExecutionContinuedAsNewEventAttributes' },
    ],
  ]),
);

const fixtureNames = () =>
  readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort();
const generationFixtures = () => fixtureNames().filter((n) => n.startsWith('generation-'));

function load(name: string): History {
  return historyFromJSON(JSON.parse(readFileSync(join(FIXTURES, `${name}.json`), 'utf8')));
}

const scheduledActivities = (history: History) =>
  (history.events ?? []).map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name).filter(Boolean);

/** Replays the named fixtures against a bundle; the result maps each fixture to its replay error, if any. */
async function replay(workflowBundle: WorkflowBundle | { codePath: string }, names: string[]) {
  const histories = names.map((name) => ({ workflowId: name, history: load(name) }));
  const results = new Map<string, Error | undefined>();
  for await (const r of Worker.runReplayHistories({ workflowBundle }, histories)) results.set(r.workflowId, r.error);
  return results;
}

const quiet = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: console.error };

describe('replay of recorded histories', () => {
  it('the committed fixture set is complete and each fixture shows what its name says', () => {
    const names = fixtureNames();
    for (const [name, want] of Object.entries(REQUIRED)) {
      expect(names, `missing test/fixtures/histories/${name}.json`).toContain(name);
      const events = load(name).events ?? [];
      expect(events[0]?.workflowExecutionStartedEventAttributes?.workflowType?.name, name).toBe(want.type);
      expect(events.at(-1)?.[want.closedBy], `${name} closed by ${want.closedBy}`).toBeTruthy();
    }
    expect(scheduledActivities(load('generation-v1-cancel-queued'))).not.toContain('invokeFunction');
    expect(scheduledActivities(load('generation-v1-cancel-running'))).toContain('invokeFunction');
    // The second version runs the GPU part in one activity, cancelled while it waited for a slot or while it ran.
    for (const name of ['generation-v2-cancel-queued', 'generation-v2-cancel-running']) {
      expect(scheduledActivities(load(name)), name).toEqual(['runTask']);
      const events = load(name).events ?? [];
      expect(
        events.some((e) => e.activityTaskCancelRequestedEventAttributes),
        name,
      ).toBe(true);
    }
    // Histories stay small: payloads are object keys and numbers, never images.
    for (const name of names) expect(readFileSync(join(FIXTURES, `${name}.json`)).length, name).toBeLessThan(64 * 1024);
  });

  it('every fixture replays against the workers’ bundle without a determinism error', async () => {
    const bundlePath = inject('workflowBundlePath');
    expect(existsSync(bundlePath), `${bundlePath} is missing: run 'npm run build'`).toBe(true);
    const names = fixtureNames();
    const results = await replay({ codePath: bundlePath }, names);
    expect([...results.keys()].sort()).toEqual(names);
    for (const [name, error] of results) expect(error, `${name}: ${error?.message}`).toBeUndefined();
  });

  describe('against a deliberately changed generation workflow', () => {
    let unpatched: WorkflowBundle;
    let patched: WorkflowBundle;

    beforeAll(async () => {
      unpatched = await bundleWorkflowCode({ workflowsPath: join(CHANGED, 'unpatched.ts'), logger: quiet });
      patched = await bundleWorkflowCode({ workflowsPath: join(CHANGED, 'patched.ts'), logger: quiet });
    });

    it('every generation history fails replay with a DeterminismViolationError', async () => {
      const names = generationFixtures();
      expect(names.length).toBeGreaterThanOrEqual(4);
      const results = await replay(unpatched, names);
      expect([...results.keys()].sort()).toEqual(names);
      for (const [name, error] of results) {
        expect(error, name).toBeInstanceOf(DeterminismViolationError);
        // The mismatch is the new activity where the recorded history started the deadline timer.
        expect(error?.message, name).toMatch(/nondetermin/i);
      }
    });

    it('the unchanged workflows in that bundle still replay (the failure is the change, not the bundle)', async () => {
      const names = fixtureNames().filter((n) => !n.startsWith('generation-'));
      const results = await replay(unpatched, names);
      for (const [name, error] of results) expect(error, `${name}: ${error?.message}`).toBeUndefined();
    });

    it('the same change behind patched() replays every generation history', async () => {
      const results = await replay(patched, generationFixtures());
      for (const [name, error] of results) expect(error, `${name}: ${error?.message}`).toBeUndefined();
    });
  });
});
