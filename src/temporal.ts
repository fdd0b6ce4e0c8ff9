import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  Client,
  Connection,
  defaultGrpcRetryOptions,
  type GrpcRetryOptions,
  makeGrpcRetryInterceptor,
  type TLSConfig,
  WorkflowExecutionAlreadyStartedError,
} from '@temporalio/client';
import temporalProto from '@temporalio/proto';
import type { Config, TemporalConfig } from './config/index.js';
import type { TaskRecord } from './records.js';
import { type GenerationInput, SEARCH_ATTRIBUTES, type TaskPolicy } from './types.js';
import type { generationWorkflow } from './workflows/generation.js';

// How sdflow talks to Temporal as a client: the connection, and the one way a generation workflow is started
// (used by the API at submit and by the reconciler for accepted tasks that never started).

/**
 * Where and how to reach Temporal, for the client connection and the worker's native one alike: plain for the dev
 * server, TLS for a secured cluster, mTLS or an API key for Temporal Cloud.
 */
export function temporalConnectionOptions(t: TemporalConfig) {
  const read = (file: string, setting: string) => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new Error(`${setting}: cannot read ${file}: ${(err as Error).message}`);
    }
  };
  const tls: TLSConfig | undefined = t.tls
    ? {
        ...(t.tlsServerName ? { serverNameOverride: t.tlsServerName } : {}),
        ...(t.tlsCaFile ? { serverRootCACertificate: read(t.tlsCaFile, 'TEMPORAL_TLS_CA') } : {}),
        ...(t.tlsCertFile && t.tlsKeyFile
          ? {
              clientCertPair: {
                crt: read(t.tlsCertFile, 'TEMPORAL_TLS_CERT'),
                key: read(t.tlsKeyFile, 'TEMPORAL_TLS_KEY'),
              },
            }
          : {}),
      }
    : undefined;
  return { address: t.address, ...(tls ? { tls } : {}), ...(t.apiKey ? { apiKey: t.apiKey } : {}) };
}

/** One workflow id per model and deployment, so two registrations of a model never run at once. */
export function registrationWorkflowId(deployment: string, name: string): string {
  return `sdflow-model-${deployment}-${createHash('sha256').update(name).digest('hex').slice(0, 16)}`;
}

type GrpcStatus = Parameters<GrpcRetryOptions['delayFunction']>[1];
const RESOURCE_EXHAUSTED = 8;
const BUSY_WORKFLOW = temporalProto.temporal.api.enums.v1.ResourceExhaustedCause.RESOURCE_EXHAUSTED_CAUSE_BUSY_WORKFLOW;
const RESOURCE_EXHAUSTED_FAILURE = 'temporal.api.errordetails.v1.ResourceExhaustedFailure';

/** Whether Temporal refused a call because its workflow was busy, read from the status's details. */
export function isBusyWorkflow(status: GrpcStatus): boolean {
  if (status.code !== RESOURCE_EXHAUSTED) return false;
  try {
    const [bin] = status.metadata?.get('grpc-status-details-bin') ?? [];
    if (!(bin instanceof Uint8Array)) return false;
    const { details } = temporalProto.google.rpc.Status.decode(bin);
    return details.some(
      (any) =>
        any.type_url?.endsWith(RESOURCE_EXHAUSTED_FAILURE) &&
        any.value &&
        temporalProto.temporal.api.errordetails.v1.ResourceExhaustedFailure.decode(any.value).cause === BUSY_WORKFLOW,
    );
  } catch {
    return false;
  }
}

/**
 * The SDK's retries of a refused call (100 ms, 1 s for RESOURCE_EXHAUSTED, 1.7× per attempt), except for a busy
 * workflow: that lasts one workflow task (an update that reaches the semaphore while its run closes to continue as
 * new), and the SDK's rate-limit second stalled every task that met it (docs/BENCHMARKS.md, "Slots, 2026-12-07").
 */
export function temporalRetryOptions(busyRetryMs: number): GrpcRetryOptions {
  return defaultGrpcRetryOptions({
    initialIntervalMs: (status) =>
      status.code !== RESOURCE_EXHAUSTED ? 100 : isBusyWorkflow(status) ? busyRetryMs : 1000,
  });
}

export async function connectTemporal(temporal: TemporalConfig): Promise<Client> {
  const connection = await Connection.connect({
    ...temporalConnectionOptions(temporal),
    connectTimeout: 10_000,
    interceptors: [makeGrpcRetryInterceptor(temporalRetryOptions(temporal.busyRetryMs))],
  });
  return new Client({ connection, namespace: temporal.namespace });
}

/** The groups a task's policy comes from. */
type TaskSettings = Pick<Config, 'tasks' | 'invoke' | 'worker' | 'semaphore'>;

export function taskPolicy(config: TaskSettings): TaskPolicy {
  return {
    invokeHeartbeatTimeoutS: config.invoke.heartbeatTimeoutS,
    invokeMaxAttempts: config.invoke.maxAttempts,
    invokeRetryInitialS: config.invoke.retryInitialS,
    activityMaxAttempts: config.worker.activityMaxAttempts,
    modelBusyRetryS: config.tasks.modelBusyRetryS,
    semaphore: {
      leaseCheckS: config.semaphore.leaseCheckS,
      continueAsNewAfterGrants: config.semaphore.continueAsNewAfterGrants,
      initialLimit: config.tasks.maxConcurrency,
      priorityAgingS: config.semaphore.priorityAgingS,
      breaker: config.semaphore.breaker,
    },
  };
}

type TaskToStart = Pick<
  TaskRecord,
  'taskId' | 'user' | 'kind' | 'model' | 'params' | 'retryOf' | 'createdAt' | 'scheduling'
>;

/** The workflow input of a stored task: its lane, share and deadline come from its row, whoever starts it. */
export function generationInputFor(config: TaskSettings, task: TaskToStart, admin: boolean): GenerationInput {
  const { scheduling } = task;
  return {
    taskId: task.taskId,
    user: task.user,
    kind: task.kind,
    model: task.model,
    params: task.params,
    submittedAt: task.createdAt,
    admin,
    deadlineS: config.tasks.deadlineS,
    semaphoreId: config.semaphore.id,
    policy: taskPolicy(config),
    ...(task.retryOf ? { retryOf: task.retryOf } : {}),
    ...(scheduling ? { owner: scheduling.owner } : {}),
    ...(scheduling?.deadlineAt !== undefined ? { deadlineAt: scheduling.deadlineAt } : {}),
  };
}

/** A short summary for the Web UI's memo: never the whole prompt, never images. */
function promptSummary(params: Record<string, unknown>): string {
  const prompt = typeof params.prompt === 'string' ? params.prompt : '';
  return prompt.length > 200 ? `${prompt.slice(0, 197)}...` : prompt;
}

/** The prompt's first `words` words, for the Web UI: never the whole prompt. */
export function promptStart(params: Record<string, unknown>, words: number): string {
  const all = (typeof params.prompt === 'string' ? params.prompt : '').trim().split(/\s+/).filter(Boolean);
  return all.length > words ? `${all.slice(0, words).join(' ')}…` : all.join(' ');
}

/** The Web UI's one-line summary of a task's workflow: kind, checkpoint, the prompt's first words. */
export function taskSummaryLine(input: Pick<GenerationInput, 'kind' | 'model' | 'params'>): string {
  const prompt = promptStart(input.params, 8);
  return [input.kind, input.model, ...(prompt ? [`"${prompt}"`] : [])].join(' · ');
}

/** The Web UI's details of a task's workflow (Markdown): what it is, and whose. */
export function taskDetails(input: GenerationInput): string {
  const prompt = promptStart(input.params, 40);
  return [
    `**${input.kind}** on \`${input.model}\` for user \`${input.user}\``,
    ...(prompt ? [`prompt: ${prompt}`] : []),
    ...(input.retryOf ? [`retry of \`${input.retryOf}\``] : []),
  ].join('\n\n');
}

/** Starts the task's workflow (id = taskId). Starting one that already exists is not an error. */
export async function startGeneration(
  client: Client,
  config: Pick<Config, 'temporal' | 'tasks'>,
  input: GenerationInput,
): Promise<void> {
  try {
    await client.workflow.start<typeof generationWorkflow>('generationWorkflow', {
      workflowId: input.taskId,
      taskQueue: config.temporal.taskQueue,
      args: [input],
      workflowExecutionTimeout: `${config.tasks.executionTimeoutS}s`,
      staticSummary: taskSummaryLine(input),
      staticDetails: taskDetails(input),
      typedSearchAttributes: [
        { key: SEARCH_ATTRIBUTES.model, value: input.model },
        { key: SEARCH_ATTRIBUTES.status, value: 'waiting' },
        { key: SEARCH_ATTRIBUTES.user, value: input.user },
      ],
      memo: {
        kind: input.kind,
        prompt: promptSummary(input.params),
        ...(input.retryOf ? { retryOf: input.retryOf } : {}),
      },
    });
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
  }
}
