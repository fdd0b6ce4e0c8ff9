import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { loadConfig } from '../../config/index.js';
import { modelsDir } from '../../data-dir.js';
import { SdflowClient } from '../client/api.js';
import type { Stack } from '../stack.js';
import { resolveTemporalCli, startDevServerOnFreePorts } from '../temporal-server.js';
import { runColdstart } from './coldstart.js';
import { keepOneWarm, runCost, SDFLOW_COST_SETTINGS } from './cost.js';
import { runFairness } from './fairness.js';
import { runMultimodel } from './multimodel.js';
import { runOverhead } from './overhead.js';
import type { ScenarioName } from './report.js';
import { a1111Body, TINY_JOB, timedDirect, warmUp } from './requests.js';
import type { BenchOptions, RunContext } from './run.js';
import { describeError, type Scenarios } from './scenarios.js';
import { runSemaphore } from './semaphore.js';
import { runSlots } from './slots.js';
import {
  A10_TIMINGS,
  BENCH_CHECKPOINTS,
  type BenchPlace,
  type OwnedSim,
  startBenchSim,
  startBenchStack,
} from './stacks.js';
import { runSubmit } from './submit.js';
import { runThroughput } from './throughput.js';

// Without --url the benchmark starts its own Temporal server and, per group of scenarios that share their settings,
// the processes they need on it:
//   a10:   the simulator's A10 timings, cap 4, one instance per checkpoint, four checkpoints: overhead (against a
//          simulator of the same timings), coldstart, and multimodel, whose baseline is a second stack on the static
//          pool: four simulators, each serving every checkpoint; eta is measured on multimodel's sdflow side;
//   slots: A10 timings, cap 8, eight instances of one checkpoint;
//   fast:  a simulator that takes no time, cap 32, eight instances: throughput (and footprint), semaphore, submit;
//   fairness: A10 timings, cap 2, two instances, API keys for two users: fairness.
// cost runs last in the a10 group, on its stack (scaled to zero, with a keep-alive), the switching stack, and a third
// stack of the a10 settings whose functions keep one instance warm each (the always-on baseline).
// Each group's instances are started and warmed before its first scenario is timed.

/** A group started and warmed: its scenarios run with measure(). */
interface StartedGroup {
  measure(): Promise<void>;
  stop(): Promise<void>;
}

interface Group {
  name: string;
  scenarios: ScenarioName[];
  start(): Promise<StartedGroup>;
}

const [MODEL] = BENCH_CHECKPOINTS;

/** The baseline's WebUIs: every simulator is listed for every checkpoint, so it loads the one a job asks for. */
async function startSwitching(place: BenchPlace) {
  const dataDir = join(place.root, 'switching');
  const statsDir = join(dataDir, 'sim-stats');
  const sims = await Promise.all(
    [1, 2, 3, 4].map((n) =>
      startBenchSim(place, `sim-switching-${n}`, { timings: A10_TIMINGS, modelsDir: modelsDir(dataDir), statsDir }),
    ),
  );
  const stopSims = () => Promise.all(sims.map((sim) => sim.stop())).then(() => undefined);
  const poolFile = join(place.root, 'switching-pool.json');
  const urls = sims.map((sim) => sim.url);
  const checkpoints = Object.fromEntries(BENCH_CHECKPOINTS.map((name) => [name, urls]));
  writeFileSync(poolFile, JSON.stringify({ checkpoints, healthCheckS: 2, healthTimeoutS: 2 }));
  try {
    const { stack, stop } = await startBenchStack(place, 'switching', {
      env: { SDFLOW_FUNCTIONS: 'static', SDFLOW_STATIC_POOL_FILE: poolFile, SDFLOW_MAX_CONCURRENCY: '4' },
      checkpoints: BENCH_CHECKPOINTS,
      runtime: false,
    });
    return { api: new SdflowClient(stack.url), statsDir, simUrls: urls, stop: () => stop().then(stopSims) };
  } catch (err) {
    await stopSims();
    throw err;
  }
}

function a10Group(place: BenchPlace, temporal: Client, o: BenchOptions, s: Scenarios): Group {
  return {
    name: 'a10',
    scenarios: ['overhead', 'coldstart', 'multimodel', 'eta', 'cost'],
    async start() {
      const env = { ...A10_TIMINGS, SDFLOW_MAX_CONCURRENCY: '4', SDFLOW_FUNCTION_MAX_INSTANCES: '1' };
      // cost's always-on baseline: the a10 stack's settings, with one instance per checkpoint kept warm.
      const startAlwaysOn = async () => {
        const started = await startBenchStack(place, 'always-on', { env, checkpoints: BENCH_CHECKPOINTS });
        const side = {
          api: new SdflowClient(started.stack.url),
          runtimeUrl: loadConfig(started.stack.env).runtime.url,
        };
        return { ...started, side };
      };
      const [a10, switching] = await Promise.allSettled([
        startBenchStack(place, 'a10', { env, checkpoints: BENCH_CHECKPOINTS }),
        s.selected('multimodel', 'cost') ? startSwitching(place) : Promise.resolve(undefined),
      ]);
      // Started while multimodel runs (its 20-step jobs leave the cores mostly idle), not beside overhead and
      // coldstart, whose figures a starting stack's CPU would disturb.
      let alwaysOn: Promise<PromiseSettledResult<Awaited<ReturnType<typeof startAlwaysOn>>>> | undefined;
      const startAlwaysOnWarm = () => {
        alwaysOn ??= Promise.allSettled([
          startAlwaysOn().then(async (started) => {
            await keepOneWarm(started.side, BENCH_CHECKPOINTS).catch(async (err) => {
              await started.stop();
              throw err;
            });
            return started;
          }),
        ]).then(([settled]) => settled);
        return alwaysOn;
      };
      let direct: OwnedSim | undefined;
      const stopAll = async () => {
        const started = alwaysOn ? await alwaysOn : undefined;
        await Promise.all([
          ...[a10, switching, started].map((one) => (one?.status === 'fulfilled' ? one.value?.stop() : undefined)),
          direct?.stop(),
        ]);
      };
      if (a10.status === 'rejected') {
        await stopAll();
        throw a10.reason;
      }
      const { stack } = a10.value;
      const api = new SdflowClient(stack.url);
      // Every instance the scenarios use is started and holds its checkpoint before the first one is timed.
      const models = s.selected('multimodel', 'eta') ? BENCH_CHECKPOINTS : [MODEL];
      const tiny = (model: string) => ({ model, job: TINY_JOB });
      try {
        await Promise.all([
          warmUp(api, models.map(tiny)),
          switching.status === 'fulfilled' && switching.value
            ? warmUp(switching.value.api, BENCH_CHECKPOINTS.map(tiny))
            : undefined,
          s.selected('overhead')
            ? startBenchSim(place, 'sim-direct', { timings: A10_TIMINGS, modelsDir: modelsDir(stack.dataDir) }).then(
                async (sim) => {
                  direct = sim;
                  const loaded = await timedDirect(sim.url, a1111Body(MODEL, TINY_JOB, 0, 'sdflow bench warm-up'));
                  if (!loaded.ok) throw new Error(`the direct simulator's warm-up failed: ${loaded.error}`);
                },
              )
            : undefined,
        ]);
      } catch (err) {
        await stopAll();
        throw err;
      }
      return {
        async measure() {
          if (direct) {
            const directUrl = direct.url;
            await s.run('overhead', () =>
              runOverhead({ api, directUrl, model: MODEL, pairs: o.settings.overhead_pairs }),
            );
          }
          const runtimeUrl = loadConfig(stack.env).runtime.url;
          await s.run('coldstart', () =>
            runColdstart({ api, runtimeUrl, model: MODEL, runs: o.settings.coldstart_runs }),
          );
          // eta is measured on the sdflow side of the multimodel workload, in the same run when both are selected.
          if (switching.status === 'rejected') {
            s.failed(
              ['multimodel'],
              new Error(`the switching stack did not start: ${describeError(switching.reason)}`),
            );
          }
          const baseline = switching.status === 'fulfilled' ? switching.value : undefined;
          if (s.selected('cost')) void startAlwaysOnWarm();
          const names = baseline ? (['multimodel', 'eta'] as const) : (['eta'] as const);
          await s.runTogether(names, () =>
            runMultimodel({
              sdflow: { api, statsDir: stack.statsDir },
              switching: baseline,
              temporal,
              models: BENCH_CHECKPOINTS,
              ratePerS: o.settings.multimodel_rate_per_s,
              durationS: o.settings.multimodel_s,
              drainS: Math.min(20, Math.max(2, o.settings.multimodel_s / 12)),
            }),
          );
          // cost runs last: it sets the a10 functions' keep-alive and scales them to zero.
          if (!s.selected('cost')) return;
          const alwaysOnStarted = await startAlwaysOnWarm();
          if (alwaysOnStarted.status === 'rejected') {
            const reason = describeError(alwaysOnStarted.reason);
            s.failed(['cost'], new Error(`the always-on stack did not start: ${reason}`));
          } else if (switching.status === 'rejected') {
            s.failed(['cost'], new Error(`the switching stack did not start: ${describeError(switching.reason)}`));
          } else if (baseline) {
            const sides = { alwaysOn: alwaysOnStarted.value.side, switching: baseline };
            await s.run('cost', () =>
              runCost({
                sdflow: { api, runtimeUrl },
                ...sides,
                temporal,
                models: BENCH_CHECKPOINTS,
                bursts: o.settings.cost_bursts,
                jobsPerCheckpoint: o.settings.cost_jobs,
                gapS: o.settings.cost_gap_s,
                ...SDFLOW_COST_SETTINGS,
              }),
            );
          }
        },
        stop: stopAll,
      };
    },
  };
}

/** The pids of a stack's processes and of the Temporal server, by name (agents and simulators are the runtime's). */
function stackProcesses(place: BenchPlace, stack: Stack): Record<string, number> {
  const named = {
    temporal: place.temporalPid,
    worker: stack.workers[0]?.child.pid,
    api: stack.api.child.pid,
    runtime: stack.runtime?.child.pid,
  };
  return Object.fromEntries(Object.entries(named).filter((entry): entry is [string, number] => entry[1] !== undefined));
}

function slotsGroup(place: BenchPlace, temporal: Client, o: BenchOptions, s: Scenarios): Group {
  const cap = 8;
  return {
    name: 'slots',
    scenarios: ['slots'],
    async start() {
      const env = { ...A10_TIMINGS, SDFLOW_MAX_CONCURRENCY: String(cap), SDFLOW_FUNCTION_MAX_INSTANCES: String(cap) };
      const { stack, stop } = await startBenchStack(place, 'slots', { env });
      const api = new SdflowClient(stack.url);
      try {
        // As wide as the cap: every instance a burst needs is started, and holds its checkpoint.
        await warmUp(
          api,
          Array.from({ length: cap }, () => ({ model: MODEL, job: TINY_JOB })),
        );
      } catch (err) {
        await stop();
        throw err;
      }
      return {
        async measure() {
          const semaphoreId = loadConfig(stack.env).semaphore.id;
          const { slots_bursts: bursts, slots_burst_tasks: burstTasks } = o.settings;
          const processes = stackProcesses(place, stack);
          await s.run('slots', () =>
            runSlots({
              api,
              temporal,
              semaphoreId,
              statsDir: stack.statsDir,
              model: MODEL,
              bursts,
              burstTasks,
              processes,
            }),
          );
        },
        stop,
      };
    },
  };
}

function fastGroup(place: BenchPlace, temporal: Client, o: BenchOptions, s: Scenarios): Group {
  const instances = 8;
  return {
    name: 'fast',
    scenarios: ['throughput', 'footprint', 'semaphore', 'submit'],
    async start() {
      const { stack, stop } = await startBenchStack(place, 'fast', {
        env: {
          SDFLOW_SIM_STEP_MS: '0',
          SDFLOW_SIM_VAE_MS: '0',
          SDFLOW_SIM_LOAD_MS: '0',
          SDFLOW_MAX_CONCURRENCY: '32',
          SDFLOW_FUNCTION_MAX_INSTANCES: String(instances),
        },
      });
      const api = new SdflowClient(stack.url);
      try {
        // Twice: the first round starts the instances, the second finds them all ready.
        for (let round = 0; round < 2; round++) {
          await warmUp(
            api,
            Array.from({ length: instances }, () => ({ model: MODEL, job: TINY_JOB })),
          );
        }
      } catch (err) {
        await stop();
        throw err;
      }
      return {
        async measure() {
          await s.runTogether(['throughput', 'footprint'], () =>
            runThroughput({
              api,
              temporal,
              model: MODEL,
              durationS: o.settings.throughput_s,
              concurrency: 64,
              pids: { api: stack.api.child.pid!, worker: stack.workers[0].child.pid! },
            }),
          );
          const taskQueue = loadConfig(stack.env).temporal.taskQueue;
          const durationS = o.settings.semaphore_s;
          await s.run('semaphore', () => runSemaphore({ temporal, taskQueue, limit: 8, loops: 24, durationS }));
          await s.run('submit', () =>
            runSubmit({ api, model: MODEL, ratePerS: o.settings.submit_rate_per_s, durationS: o.settings.submit_s }),
          );
        },
        stop,
      };
    },
  };
}

/** Fair share: two users with keys of their own (and an admin to list their tasks), under a small cap. */
function fairnessGroup(place: BenchPlace, o: BenchOptions, s: Scenarios): Group {
  const cap = 2;
  const secondUserTasks = 5;
  return {
    name: 'fairness',
    scenarios: ['fairness'],
    async start() {
      // Secrets of this run only: the stack is on loopback and stops with the run.
      const secret = (user: string) => `bench-${user}-${randomBytes(12).toString('hex')}`;
      const secrets = { admin: secret('admin'), first: secret('first'), second: secret('second') };
      const { stack, stop } = await startBenchStack(place, 'fairness', {
        env: {
          ...A10_TIMINGS,
          SDFLOW_MAX_CONCURRENCY: String(cap),
          SDFLOW_FUNCTION_MAX_INSTANCES: String(cap),
          SDFLOW_API_KEYS: Object.entries(secrets)
            .map(([user, key]) => `${user}:${user === 'admin' ? 'admin' : 'user'}:${key}`)
            .join(','),
          // The flood and the second user's tasks, all under the first user's key on the FIFO side.
          SDFLOW_KEY_MAX_QUEUED: String(o.settings.fairness_flood + secondUserTasks),
          SDFLOW_KEY_RATE_PER_MIN: '0',
        },
      });
      const clients = {
        admin: new SdflowClient(stack.url, secrets.admin),
        first: new SdflowClient(stack.url, secrets.first),
        second: new SdflowClient(stack.url, secrets.second),
      };
      try {
        await warmUp(
          clients.admin,
          Array.from({ length: cap }, () => ({ model: MODEL, job: TINY_JOB })),
        );
      } catch (err) {
        await stop();
        throw err;
      }
      return {
        async measure() {
          await s.run('fairness', () =>
            runFairness({ clients, model: MODEL, flood: o.settings.fairness_flood, secondUserTasks, cap }),
          );
        },
        stop,
      };
    },
  };
}

type Started = { ok: true; group: StartedGroup } | { ok: false; err: unknown };

export async function onOwnStacks(o: BenchOptions, s: Scenarios, ctx: RunContext): Promise<void> {
  ctx.say(`starting a Temporal dev server (data and logs under ${ctx.root})`);
  const server = await startDevServerOnFreePorts({
    cli: await resolveTemporalCli(),
    namespace: 'default',
    logDir: ctx.root,
    headless: true,
    exitWithParent: true,
  });
  ctx.owned.add('temporal', () => server.stop());
  const connection = await Connection.connect({ address: server.address });
  ctx.owned.add('temporal client', () => connection.close());
  const temporal = new Client({ connection, namespace: 'default' });
  const place: BenchPlace = {
    temporal: { address: server.address, namespace: 'default' },
    temporalPid: server.process.pid,
    root: ctx.root,
    owned: ctx.owned,
  };

  const groups = [
    a10Group(place, temporal, o, s),
    slotsGroup(place, temporal, o, s),
    fastGroup(place, temporal, o, s),
    fairnessGroup(place, o, s),
  ].filter((g) => s.selected(...g.scenarios));
  const start = (g: Group): Promise<Started> => {
    ctx.say(`${g.name}: starting its stack`);
    const t0 = performance.now();
    return g.start().then(
      (group) => {
        ctx.say(`${g.name}: started and warm in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
        return { ok: true, group };
      },
      (err) => ({ ok: false, err }),
    );
  };
  // --quick starts every group at once, so that their starts and warm-ups overlap; the others idle until measured
  // (a warm idle stack costs a few percent of a core). The full run starts the next group while the previous one
  // stops, so that nothing else runs while a group is measured.
  const starting: Promise<Started>[] = [];
  const startUpTo = (count: number) => {
    for (let i = starting.length; i < Math.min(count, groups.length); i++) starting.push(start(groups[i]));
  };
  startUpTo(o.quick ? groups.length : 1);
  for (const [i, g] of groups.entries()) {
    const started = await starting[i];
    if (!started.ok) {
      s.failed(g.scenarios, new Error(`the ${g.name} stack did not start: ${describeError(started.err)}`));
      startUpTo(i + 2);
      continue;
    }
    await started.group.measure();
    startUpTo(i + 2);
    await started.group.stop();
  }
}
