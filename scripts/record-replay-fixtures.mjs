// Records the workflow histories that test/unit/replay.test.ts replays (docs/ARCHITECTURE.md, "Replay and versioning").
//
//   npm run fixtures:record        (= npm run build && node scripts/record-replay-fixtures.mjs)
//
// A plain Node script over the compiled code in dist/ (no TypeScript loader, no vitest), so it runs exactly the
// workflow bundle that workers run. It starts its own Temporal dev server on free ports and a whole stack of real
// processes (function runtime with the simulator, one worker, the API) with fast simulator timings, one GPU slot
// and a semaphore that continues as new after 3 grants; then it drives real tasks through the HTTP API:
//
//   generation-<v>-success.json          a small txt2img that succeeds
//   generation-<v>-cancel-queued.json    cancelled while waiting for the only slot (a blocker holds it)
//   generation-<v>-cancel-running.json   cancelled while sampling
//   generation-<v>-failure.json          SD rejects the input (a 422, non-retryable) -> failed
//   semaphore-<v>-continue-as-new.json   the semaphore's FIRST run, which ends in continue-as-new after 3 grants
//   reconciler.json                      the reconciler's run so far (a few rounds; still open, which replays fine)
//   webhook-v1-delivery.json             a task's webhook workflow: start, progress and completed, whose first
//                                        attempt the receiver answers 500 (still open, waiting for more events)
//   retention.json                       the retention workflow's run so far (a few rounds, nothing old enough yet)
//
// <v> is the version of the workflows recorded (VERSION below): each version's histories are kept beside the earlier
// versions', since tasks an earlier version started may still be in flight when a new one ships. A fixture already
// committed is never overwritten.
//
// Every run is checked (final record, how its workflow closed, which activities it scheduled) and the histories are
// replayed against dist/workflow-bundle.js before anything is written; the files are written all at once, so a
// failed recording leaves the committed set untouched. CI never runs this: the fixtures are committed and only
// re-recorded on purpose, when a workflow change is meant to be incompatible with old histories.
// SDFLOW_KEEP_TEST_DATA=1 keeps the data dir (process logs) for a look afterwards.

import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { DEMO_CHECKPOINTS, registerDemoCheckpoints } from '../dist/cli/demo-models.js';
import { spawnRole, waitForHttp, waitForOutput } from '../dist/cli/processes.js';
import { probeSearchAttributes, resolveTemporalCli, startDevServer } from '../dist/cli/temporal-server.js';
import { loadConfig } from '../dist/config/index.js';
import { freePort } from '../dist/http-util.js';
import { createMetaStore, createObjectStore } from '../dist/platform/index.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const OUT_DIR = join(ROOT, 'test', 'fixtures', 'histories');
const BUNDLE = join(ROOT, 'dist', 'workflow-bundle.js');
const MODEL = DEMO_CHECKPOINTS[0];
/** The workflows' version these recordings are of: the slot is taken by update, inside the runTask activity. */
const VERSION = 'v2';

const log = (msg) => console.log(`[fixtures] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function check(ok, message) {
  if (!ok) throw new Error(`recording check failed: ${message}`);
}

async function eventually(what, probe, ok, timeoutMs = 30_000) {
  const until = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await probe();
    if (ok(last)) return last;
    if (Date.now() > until) throw new Error(`${what}: not reached in ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
    await sleep(50);
  }
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'sdflow-fixtures-'));
  const cleanups = [];
  try {
    log('starting a Temporal dev server');
    const cli = await resolveTemporalCli();
    const server = await startDevServer({
      cli,
      ip: '127.0.0.1',
      port: await freePort(),
      uiPort: await freePort(),
      httpPort: await freePort(),
      metricsPort: await freePort(),
      namespace: 'default',
      logFile: join(dir, 'temporal.log'),
      headless: true,
    });
    cleanups.push(() => server.stop());
    const client = new Client({ connection: await Connection.connect({ address: server.address }) });
    cleanups.push(() => client.connection.close());
    await probeSearchAttributes(client);

    const apiPort = await freePort();
    const env = {
      ...process.env,
      SDFLOW_DATA_DIR: join(dir, 'data'),
      PORT: String(apiPort),
      SDFLOW_RUNTIME_PORT: String(await freePort()),
      TEMPORAL_ADDRESS: server.address,
      TEMPORAL_NAMESPACE: 'default',
      SDFLOW_TASK_QUEUE: 'sdflow-fixtures',
      SDFLOW_DEPLOYMENT: 'fixtures',
      SDFLOW_MAX_CONCURRENCY: '1',
      SDFLOW_SEMAPHORE_CAN_AFTER_GRANTS: '3',
      SDFLOW_SEMAPHORE_LEASE_CHECK_S: '1',
      SDFLOW_RECONCILE_PERIOD_S: '2',
      // Old enough that no task of the recording is deleted while it is checked; the rounds run all the same.
      SDFLOW_RETENTION_DAYS: '1',
      SDFLOW_RETENTION_PERIOD_S: '2',
      SDFLOW_PROGRESS_SIGNAL_MS: '250',
      SDFLOW_SIM_STEP_MS: '10',
      SDFLOW_SIM_LOAD_MS: '100',
      SDFLOW_SIM_VAE_MS: '5',
      SDFLOW_WORKER_SHUTDOWN_GRACE_S: '2',
      SDFLOW_LOG_LEVEL: 'info',
      SDFLOW_WEBHOOK_ALLOW: '127.0.0.1',
      SDFLOW_WEBHOOK_RETRY_INITIAL_S: '0.2',
      SDFLOW_WEBHOOK_PROGRESS_INTERVAL_S: '0.2',
    };
    const config = loadConfig(env);
    const meta = await createMetaStore(config);
    await registerDemoCheckpoints(await createObjectStore(config), meta);
    await meta.close();

    log('starting runtime, worker and API');
    const logs = join(dir, 'logs');
    const runtime = spawnRole('runtime', ['runtime'], { env, logFile: join(logs, 'runtime.log') });
    cleanups.push(() => runtime.stop(10_000));
    await waitForHttp(`${config.runtime.url}/healthz`, 30_000, runtime);
    const worker = spawnRole('worker', ['worker'], { env, logFile: join(logs, 'worker.log') });
    cleanups.push(() => worker.stop(10_000));
    await waitForOutput(worker, /"msg":"worker running"/, 60_000);
    const api = spawnRole('api', ['api'], { env, logFile: join(logs, 'api.log') });
    cleanups.push(() => api.stop(5000));
    const base = `http://127.0.0.1:${apiPort}`;
    await waitForHttp(`${base}/healthz`, 60_000, api);

    const call = async (method, path, body, headers = {}) => {
      const res = await fetch(base + path, {
        method,
        headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      try {
        return { status: res.status, json: JSON.parse(text) };
      } catch {
        return { status: res.status, json: text };
      }
    };
    const submit = async (taskId, body) => {
      const r = await call(
        'POST',
        '/txt2img',
        { stable_diffusion_model: MODEL, ...body },
        {
          'Request-Type': 'async',
          taskId,
        },
      );
      check(r.status === 200, `submit ${taskId}: ${r.status} ${JSON.stringify(r.json)}`);
      return taskId;
    };
    const progress = async (taskId) => (await call('GET', `/tasks/${taskId}/progress`)).json;
    const final = (taskId) =>
      eventually(
        `${taskId} final`,
        async () => (await call('GET', `/tasks/${taskId}/result`)).json,
        (r) => ['succeeded', 'failed', 'cancelled'].includes(r?.status),
        60_000,
      );
    const closed = async (workflowId, runId) => {
      const d = await eventually(
        `${workflowId} closed`,
        () => client.workflow.getHandle(workflowId, runId).describe(),
        (x) => x.status.name !== 'RUNNING',
      );
      return d.status.name;
    };
    const cancel = async (taskId) => {
      const r = await call('POST', `/tasks/${taskId}/cancellation`);
      check(r.status === 200, `cancel ${taskId}: ${r.status} ${JSON.stringify(r.json)}`);
    };
    const semaphore = client.workflow.getHandle(config.semaphore.id);
    const semaphoreRunId = (await semaphore.describe()).runId;

    log('success');
    await submit('fixture-success', { prompt: 'replay fixture: success', steps: 3, width: 64, height: 64, seed: 42 });
    check((await final('fixture-success')).status === 'succeeded', 'success task succeeded');
    check((await closed('fixture-success')) === 'COMPLETED', 'success workflow completed');

    log('cancel while queued (a blocker holds the only slot)');
    await submit('fixture-blocker', { prompt: 'replay fixture: blocker', steps: 300, width: 512, height: 512 });
    await eventually(
      'blocker running',
      () => progress('fixture-blocker'),
      (p) => p.status === 'running',
    );
    await submit('fixture-cancel-queued', { prompt: 'replay fixture: queued', steps: 2, width: 64, height: 64 });
    // Queued means the acquire reached the semaphore and the workflow waits for its grant.
    await eventually(
      'queued task in the semaphore queue',
      () => semaphore.query('state'),
      (s) => s.queue.some((w) => w.workflowId === 'fixture-cancel-queued'),
    );
    check((await progress('fixture-cancel-queued')).status === 'waiting', 'queued task is waiting');
    await cancel('fixture-cancel-queued');
    check((await final('fixture-cancel-queued')).status === 'cancelled', 'queued task cancelled');
    check((await closed('fixture-cancel-queued')) === 'CANCELLED', 'queued workflow cancelled');
    check((await final('fixture-blocker')).status === 'succeeded', 'blocker succeeded');
    check((await closed('fixture-blocker')) === 'COMPLETED', 'blocker workflow completed');

    log('cancel while running (this third grant makes the semaphore continue as new)');
    await submit('fixture-cancel-running', { prompt: 'replay fixture: running', steps: 500, width: 512, height: 512 });
    await eventually(
      'sampling',
      () => progress('fixture-cancel-running'),
      (p) => p.status === 'running' && p.state?.sampling_step > 2,
    );
    await cancel('fixture-cancel-running');
    check((await final('fixture-cancel-running')).status === 'cancelled', 'running task cancelled');
    check((await closed('fixture-cancel-running')) === 'CANCELLED', 'running workflow cancelled');

    log('failure (SD rejects a field the API passes through unchecked)');
    await submit('fixture-failure', {
      prompt: 'replay fixture: failure',
      steps: 2,
      width: 64,
      height: 64,
      eta: 'fast',
    });
    const failed = await final('fixture-failure');
    check(failed.status === 'failed', `failure task failed: ${JSON.stringify(failed)}`);
    check((await closed('fixture-failure')) === 'FAILED', 'failure workflow failed');

    log('webhook (start, progress, completed; the first attempt of completed is answered 500)');
    const deliveries = [];
    const receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => {
        body += chunk;
      });
      req.on('end', () => {
        const { type } = JSON.parse(body);
        deliveries.push(type);
        const first = type === 'completed' && deliveries.filter((t) => t === 'completed').length === 1;
        res.writeHead(first ? 500 : 200).end();
      });
    });
    await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => receiver.close(resolve)));
    await submit('fixture-webhook', {
      prompt: 'replay fixture: webhook',
      steps: 100,
      width: 512,
      height: 512,
      webhook: `http://127.0.0.1:${receiver.address().port}/hook`,
      webhook_events_filter: ['start', 'progress', 'completed'],
    });
    check((await final('fixture-webhook')).status === 'succeeded', 'webhook task succeeded');
    await eventually(
      'completed delivered on its second attempt',
      () => deliveries,
      (d) => d.filter((t) => t === 'completed').length === 2,
    );
    check(deliveries[0] === 'start' && deliveries.includes('progress'), `deliveries: ${deliveries.join(', ')}`);

    check((await closed(config.semaphore.id, semaphoreRunId)) === 'CONTINUED_AS_NEW', 'semaphore continued as new');

    await eventually(
      'two reconciler rounds',
      async () => {
        const { events } = await client.workflow.getHandle(config.reconciler.id).fetchHistory();
        return events.filter((e) => e.activityTaskCompletedEventAttributes).length;
      },
      (n) => n >= 2,
    );
    await eventually(
      'two retention rounds',
      async () => {
        const { events } = await client.workflow.getHandle(config.retention.id).fetchHistory();
        return events.filter((e) => e.activityTaskCompletedEventAttributes).length;
      },
      (n) => n >= 2,
    );

    log('stopping the stack');
    await api.stop(5000);
    await worker.stop(10_000);

    const history = async (workflowId, runId) => client.workflow.getHandle(workflowId, runId).fetchHistory();
    const recorded = {
      [`generation-${VERSION}-success`]: await history('fixture-success'),
      [`generation-${VERSION}-cancel-queued`]: await history('fixture-cancel-queued'),
      [`generation-${VERSION}-cancel-running`]: await history('fixture-cancel-running'),
      [`generation-${VERSION}-failure`]: await history('fixture-failure'),
      [`semaphore-${VERSION}-continue-as-new`]: await history(config.semaphore.id, semaphoreRunId),
      reconciler: await history(config.reconciler.id),
      'webhook-v1-delivery': await history('sdflow-webhook-fixture-webhook'),
      retention: await history(config.retention.id),
    };
    checkHistories(recorded);

    log('replaying the recorded histories against dist/workflow-bundle.js');
    Runtime.install({ logger: new DefaultLogger('WARN') });
    const histories = Object.entries(recorded).map(([workflowId, h]) => ({ workflowId, history: h }));
    for await (const result of Worker.runReplayHistories({ workflowBundle: { codePath: BUNDLE } }, histories)) {
      if (result.error) throw new Error(`${result.workflowId} does not replay: ${result.error}`);
    }

    mkdirSync(OUT_DIR, { recursive: true });
    for (const [name, h] of Object.entries(recorded)) {
      if (existsSync(join(OUT_DIR, `${name}.json`))) {
        log(`kept ${name}.json: it is committed already`);
        continue;
      }
      const text = `${JSON.stringify(JSON.parse(historyToJSON(h)), null, 1)}\n`;
      writeFileSync(join(OUT_DIR, `${name}.json`), text);
      log(`wrote ${name}.json: ${h.events.length} events, ${(text.length / 1024).toFixed(1)} KiB`);
    }
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch((err) => console.warn(String(err)));
    if (process.env.SDFLOW_KEEP_TEST_DATA) log(`data kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

/** What each fixture must show, so a recording that went another way is never committed. */
function checkHistories(h) {
  const scheduled = (history) =>
    history.events.map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name).filter(Boolean);
  const last = (history) => history.events[history.events.length - 1];
  const has = (history, attributes) => history.events.some((e) => e[attributes]);
  const fixture = (name) => h[`generation-${VERSION}-${name}`];

  check(last(fixture('success')).workflowExecutionCompletedEventAttributes, 'success ends completed');
  check(scheduled(fixture('success')).includes('runTask'), 'success ran its task');

  const queued = fixture('cancel-queued');
  check(last(queued).workflowExecutionCanceledEventAttributes, 'cancel-queued ends cancelled');
  check(has(queued, 'activityTaskCancelRequestedEventAttributes'), 'cancel-queued cancelled its waiting task');
  check(!has(queued, 'activityTaskCompletedEventAttributes'), 'cancel-queued never completed a task');

  const running = fixture('cancel-running');
  check(last(running).workflowExecutionCanceledEventAttributes, 'cancel-running ends cancelled');
  check(has(running, 'activityTaskCancelRequestedEventAttributes'), 'cancel-running cancelled its running task');

  const failure = last(fixture('failure')).workflowExecutionFailedEventAttributes;
  check(failure, 'failure ends failed');
  check(
    failure.failure?.applicationFailureInfo?.type === 'bad_input',
    `failure is bad_input: ${failure.failure?.message}`,
  );

  const sem = h[`semaphore-${VERSION}-continue-as-new`];
  check(last(sem).workflowExecutionContinuedAsNewEventAttributes, 'semaphore run ends in continue-as-new');
  check(
    sem.events.filter((e) => e.workflowExecutionUpdateCompletedEventAttributes).length >= 3,
    'semaphore run granted 3 slots by update',
  );
  check(scheduled(sem).includes('findClosedWorkflows'), 'semaphore ran a lease check');
  const releases = sem.events.filter((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'release');
  check(releases.length >= 3, 'semaphore saw the releases');

  check(scheduled(h.reconciler).includes('reconcileOpenTasks'), 'reconciler ran a round');

  const webhook = h['webhook-v1-delivery'];
  const signals = webhook.events.filter(
    (e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'webhookEvent',
  );
  check(signals.length >= 3, 'webhook workflow got start, progress and completed');
  check(scheduled(webhook).filter((a) => a === 'deliverWebhook').length >= 3, 'webhook workflow delivered each');
  check(
    webhook.events.some((e) => (e.activityTaskStartedEventAttributes?.attempt ?? 0) >= 2),
    'webhook workflow retried completed',
  );
  check(scheduled(h.retention).includes('deleteOldTasks'), 'retention ran a round');
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
