import { fileURLToPath } from 'node:url';
import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import { type LogLevel, type LogMetadata, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { createActivities } from './activities/index.js';
import type { Config } from './config/index.js';
import type { Logger } from './logging.js';
import { createFunctionRuntime, createMetaStore, createObjectStore } from './platform/index.js';
import { prewarmOnBursts } from './prewarm.js';
import {
  connectTemporal,
  generationInputFor,
  registrationWorkflowId,
  startGeneration,
  temporalConnectionOptions,
} from './temporal.js';
import { emptySemaphoreState } from './types.js';
import { reportWarmth } from './warmth.js';
import { webhookNotifier } from './webhooks/notify.js';
import { loadWebhookSecret, webhookKey } from './webhooks/signing.js';
import { TargetPolicy } from './webhooks/targets.js';
import {
  type RetentionSettings,
  retentionSettingsSignal,
  semaphorePolicySignal,
  setLimitSignal,
} from './workflows/definitions.js';
import type { reconcilerWorkflow } from './workflows/reconciler.js';
import type { retentionWorkflow } from './workflows/retention.js';
import type { semaphoreWorkflow } from './workflows/semaphore.js';

export interface WorkerOptions {
  /** The pre-built workflow bundle; defaults to dist/workflow-bundle.js beside this file. */
  workflowBundlePath?: string;
}

let runtimeInstalled = false;

/**
 * Temporal's core logs go to the process's pino logger, and its metrics to a Prometheus endpoint when a port is set;
 * shutdown is driven by sdflow, not by Temporal's handlers.
 */
function installRuntime(logger: Logger, metricsPort: number) {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  const forward = (level: LogLevel, message: string, meta?: LogMetadata) => {
    const method = ({ TRACE: 'trace', DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error' } as const)[level];
    logger[method](meta ?? {}, message);
  };
  Runtime.install({
    shutdownSignals: [],
    ...(metricsPort > 0
      ? { telemetryOptions: { metrics: { prometheus: { bindAddress: `127.0.0.1:${metricsPort}` } } } }
      : {}),
    logger: {
      log: forward,
      trace: (m, meta) => forward('TRACE', m, meta),
      debug: (m, meta) => forward('DEBUG', m, meta),
      info: (m, meta) => forward('INFO', m, meta),
      warn: (m, meta) => forward('WARN', m, meta),
      error: (m, meta) => forward('ERROR', m, meta),
    },
  });
}

/**
 * The semaphore's limit follows config at every worker start; the reconciler is started once per deployment, and
 * the retention workflow when retention is on.
 */
async function startSingletons(client: Client, config: Config): Promise<void> {
  await client.workflow.signalWithStart<typeof semaphoreWorkflow, [number]>('semaphoreWorkflow', {
    workflowId: config.semaphore.id,
    taskQueue: config.temporal.taskQueue,
    args: [
      {
        state: emptySemaphoreState(config.tasks.maxConcurrency),
        leaseCheckS: config.semaphore.leaseCheckS,
        continueAsNewAfterGrants: config.semaphore.continueAsNewAfterGrants,
        priorityAgingS: config.semaphore.priorityAgingS,
        breaker: config.semaphore.breaker,
      },
    ],
    signal: setLimitSignal,
    signalArgs: [config.tasks.maxConcurrency],
  });
  // A semaphore started by an earlier configuration takes this one's grant order settings too.
  await client.workflow.getHandle(config.semaphore.id).signal(semaphorePolicySignal, {
    priorityAgingS: config.semaphore.priorityAgingS,
    breaker: config.semaphore.breaker,
  });
  await client.workflow.start<typeof reconcilerWorkflow>('reconcilerWorkflow', {
    workflowId: config.reconciler.id,
    taskQueue: config.temporal.taskQueue,
    args: [{ periodS: config.reconciler.periodS, graceS: config.reconciler.graceS }],
    workflowIdConflictPolicy: 'USE_EXISTING',
  });
  await applyRetention(client, config);
}

/** Retention follows config at every worker start: its workflow gets the settings, or is stopped when it is off. */
async function applyRetention(client: Client, config: Config): Promise<void> {
  const { id, maxAgeDays, periodS } = config.retention;
  if (maxAgeDays === undefined) {
    try {
      await client.workflow.getHandle(id).signal(retentionSettingsSignal, null);
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
    }
    return;
  }
  const settings = { maxAgeDays, periodS };
  await client.workflow.signalWithStart<typeof retentionWorkflow, [RetentionSettings | null]>('retentionWorkflow', {
    workflowId: id,
    taskQueue: config.temporal.taskQueue,
    args: [settings],
    signal: retentionSettingsSignal,
    signalArgs: [settings],
  });
}

export async function startWorker(config: Config, logger: Logger, options: WorkerOptions = {}) {
  installRuntime(logger, config.worker.metricsPort);
  const webhookSecret = loadWebhookSecret(config.webhooks);
  const connection = await NativeConnection.connect(temporalConnectionOptions(config.temporal));
  const client = await connectTemporal(config.temporal);
  const meta = await createMetaStore(config);
  const functions = await createFunctionRuntime(config);
  const activities = createActivities({
    meta,
    store: await createObjectStore(config),
    functions,
    temporal: client,
    taskQueue: config.temporal.taskQueue,
    functionPrefix: config.functions.prefix,
    progressSignalMs: config.invoke.progressSignalMs,
    invokeIdleTimeoutS: config.invoke.idleTimeoutS,
    billingRates: config.billing.rates,
    // Tasks the reconciler starts were validated at submit, references included.
    startGeneration: (task) => startGeneration(client, config, generationInputFor(config, task, true)),
    registrationWorkflowId: (model) => registrationWorkflowId(config.deployment, model),
    uploadTimeoutS: config.reconciler.uploadTimeoutS,
    notifyWebhook: webhookNotifier(client, config),
    webhooks: {
      key: webhookKey(webhookSecret),
      targets: new TargetPolicy(config.webhooks.allow),
      timeoutS: config.webhooks.timeoutS,
      progressIntervalS: config.webhooks.progressIntervalS,
      urlTtlS: config.stores.urlTtlS,
    },
    logger,
  });
  const worker = await Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    workflowBundle: {
      codePath: options.workflowBundlePath ?? fileURLToPath(new URL('./workflow-bundle.js', import.meta.url)),
    },
    activities,
    maxConcurrentActivityTaskExecutions: config.worker.maxActivities,
    maxHeartbeatThrottleInterval: `${config.worker.maxHeartbeatThrottleS}s`,
    defaultHeartbeatThrottleInterval: `${config.worker.maxHeartbeatThrottleS}s`,
    shutdownGraceTime: `${config.worker.shutdownGraceS}s`,
  });
  await startSingletons(client, config);
  const stopWarmthReports = reportWarmth({
    functions,
    temporal: client,
    semaphoreId: config.semaphore.id,
    // FC lists no instances, and asking its API every few seconds would only cost requests.
    periodS: config.functions.backend === 'fc' ? 0 : config.semaphore.warmthReportS,
    logger,
  });
  const stopPrewarm = prewarmOnBursts({
    functions,
    meta,
    temporal: client,
    semaphoreId: config.semaphore.id,
    periodS: config.semaphore.prewarmCheckS,
    logger,
  });
  const running = worker.run();
  logger.info({ taskQueue: config.temporal.taskQueue, temporal: config.temporal.address }, 'worker running');

  return {
    port: 0,
    worker,
    async close() {
      stopWarmthReports();
      stopPrewarm();
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await connection.close();
      await client.connection.close();
      await meta.close();
    },
  };
}
