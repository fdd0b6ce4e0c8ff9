import type { Client } from '@temporalio/client';
import type { Context, Next } from 'koa';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { sharedMetrics } from '../metrics.js';
import type { MetaStore, TaskCount } from '../platform/meta-store/port.js';
import type { TaskRecord } from '../records.js';
import { isFinal, type SemaphoreState } from '../types.js';
import { semaphoreStateQuery } from '../workflows/definitions.js';

// GET /metrics (Prometheus). Every replica answers sensibly because each number comes from where it is shared:
// - task counts by status and checkpoint: the meta store, counted at most once per `maxAgeMs`;
// - queue depth, slots in use and the limit: the semaphore's state query, read at most once per `maxAgeMs`;
// - cold starts, checkpoint loads and the timing histograms: the final task records this replica reads (a result,
//   a progress, a listing, a sync wait). Each task that finished while the replica runs is observed once per
//   replica, so any one replica's histograms describe the tasks its clients followed; summing replicas counts a task
//   once for every replica that read it;
// - HTTP requests: this replica's, by route template and status;
// - process metrics: this replica's.

/** Buckets for task phases, in seconds: from a fast sampling run to a long wait in the queue. */
const TASK_SECONDS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800];
const HTTP_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
/** How many task ids a replica remembers as observed: far more than finish between two reads of one task. */
const OBSERVED_IDS = 100_000;

/** One read answers every caller for `maxAgeMs`; a failed read answers undefined for that period. */
function cached<T>(load: () => Promise<T>, maxAgeMs: number): () => Promise<T | undefined> {
  let last: { at: number; value: Promise<T | undefined> } | undefined;
  return () => {
    const now = Date.now();
    if (!last || now - last.at >= maxAgeMs) last = { at: now, value: load().catch(() => undefined) };
    return last.value;
  };
}

const seconds = (from: string, to: string) => Math.max(0, (Date.parse(to) - Date.parse(from)) / 1000);

export interface ApiMetricsDeps {
  meta: MetaStore;
  temporal: Client;
  semaphoreId: string;
  maxAgeMs: number;
  queryTimeoutMs: number;
  /** Passthrough prefixes, each ending in `/`: their requests are labelled `<prefix>{path}`. */
  passthroughPrefixes: string[];
}

export function apiMetrics(deps: ApiMetricsDeps) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const countTasks = cached(() => deps.meta.countTasks(), deps.maxAgeMs);
  const semaphoreState = cached(
    () =>
      deps.temporal.connection.withDeadline(Date.now() + deps.queryTimeoutMs, () =>
        deps.temporal.workflow.getHandle(deps.semaphoreId).query(semaphoreStateQuery),
      ),
    deps.maxAgeMs,
  );

  new Gauge({
    name: 'sdflow_tasks',
    help: 'Task records by status and checkpoint, from the meta store.',
    labelNames: ['status', 'model'],
    registers,
    async collect() {
      const counts: TaskCount[] | undefined = await countTasks();
      this.reset();
      for (const c of counts ?? []) this.set({ status: c.status, model: c.model }, c.count);
    },
  });
  // Labelled by the semaphore's workflow id: a label-less gauge always shows a value, and a semaphore that did not
  // answer must show none rather than a wrong 0.
  const fromSemaphore = (name: string, help: string, value: (s: SemaphoreState) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['semaphore'],
      registers,
      async collect() {
        const state = await semaphoreState();
        this.reset();
        if (state) this.set({ semaphore: deps.semaphoreId }, value(state));
      },
    });
  fromSemaphore(
    'sdflow_queue_depth',
    'Tasks waiting for a GPU slot.',
    (s) => new Set(s.queue.map((w) => w.workflowId)).size,
  );
  fromSemaphore('sdflow_slots_in_use', 'GPU slots held.', (s) => s.holders.length);
  fromSemaphore('sdflow_slots_limit', 'GPU slots in all (SDFLOW_MAX_CONCURRENCY).', (s) => s.limit);

  const coldStarts = new Counter({
    name: 'sdflow_cold_starts_total',
    help: 'Finished tasks whose invoke waited for an instance of its function (one starting, or every one busy).',
    labelNames: ['model'],
    registers,
  });
  const checkpointLoads = new Counter({
    name: 'sdflow_checkpoint_loads_total',
    help: 'Finished tasks whose agent loaded the checkpoint before the job.',
    labelNames: ['model'],
    registers,
  });
  const histogram = (name: string, help: string, labelNames: string[]) =>
    new Histogram({ name, help, labelNames, buckets: TASK_SECONDS, registers });
  const queueWait = histogram(
    'sdflow_queue_wait_seconds',
    'From a task being accepted to its GPU slot (tasks that got one).',
    ['model'],
  );
  const coldStart = histogram(
    'sdflow_cold_start_seconds',
    'From the slot to SD starting the job, for tasks that waited for an instance or a checkpoint load.',
    ['model'],
  );
  const sampling = histogram('sdflow_sampling_seconds', 'From SD starting the job to SD returning.', ['model']);
  const endToEnd = histogram('sdflow_end_to_end_seconds', 'From a task being accepted to its final record.', [
    'model',
    'status',
  ]);

  const httpRequests = new Counter({
    name: 'sdflow_http_requests_total',
    help: 'HTTP requests by method, route template and status.',
    labelNames: ['method', 'route', 'status'],
    registers,
  });
  const httpSeconds = new Histogram({
    name: 'sdflow_http_request_duration_seconds',
    help: 'HTTP request durations by method and route template (a sync submit waits for its task).',
    labelNames: ['method', 'route'],
    buckets: HTTP_SECONDS,
    registers,
  });

  const startedAt = new Date().toISOString();
  const observed = new Set<string>();

  /** Observes a final task once, if it finished while this replica runs. */
  function observeTask(task: TaskRecord): void {
    if (!isFinal(task.status) || !task.finishedAt || task.finishedAt < startedAt || observed.has(task.taskId)) return;
    observed.add(task.taskId);
    // A Set iterates in insertion order: the first id is the oldest.
    if (observed.size > OBSERVED_IDS) observed.delete(observed.values().next().value!);
    const model = task.model;
    endToEnd.observe({ model, status: task.status }, seconds(task.createdAt, task.finishedAt));
    if (task.startedAt) queueWait.observe({ model }, seconds(task.createdAt, task.startedAt));
    const t = task.timings;
    if (!t) return;
    sampling.observe({ model }, t.samplingMs / 1000);
    if (t.coldStart || t.checkpointLoad) coldStart.observe({ model }, t.startMs / 1000);
    if (t.coldStart) coldStarts.inc({ model });
    if (t.checkpointLoad) checkpointLoads.inc({ model });
  }

  /** The route a request took, as a template: never the raw path, so the label's values stay few. */
  function routeOf(ctx: Context): string {
    const matched = (ctx as { _matchedRoute?: unknown })._matchedRoute;
    if (typeof matched === 'string') return matched.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    if (ctx.path === '/healthz' || ctx.path === '/docs') return ctx.path;
    for (const prefix of ['/files/', '/docs/', ...deps.passthroughPrefixes]) {
      if (ctx.path.startsWith(prefix)) return `${prefix}{path}`;
    }
    return 'other';
  }

  return {
    observeTask,

    /** A meta store whose task reads feed observeTask: every way the API reads a final record passes here. */
    observing(meta: MetaStore): MetaStore {
      return new Proxy(meta, {
        get(target, property, receiver) {
          if (property === 'getTask') {
            return async (taskId: string) => {
              const task = await target.getTask(taskId);
              if (task) observeTask(task);
              return task;
            };
          }
          if (property === 'listTasks') {
            return async (query: Parameters<MetaStore['listTasks']>[0]) => {
              const page = await target.listTasks(query);
              for (const task of page.items) observeTask(task);
              return page;
            };
          }
          const value = Reflect.get(target, property, receiver);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
    },

    /** Counts and times every request; outermost, so it sees the status the client gets. */
    httpMiddleware() {
      return async (ctx: Context, next: Next) => {
        const stop = httpSeconds.startTimer();
        try {
          await next();
        } finally {
          const labels = { method: ctx.method, route: routeOf(ctx) };
          stop(labels);
          httpRequests.inc({ ...labels, status: String(ctx.status) });
        }
      };
    },

    async scrape(): Promise<{ contentType: string; body: string }> {
      const merged = Registry.merge([registry, sharedMetrics]);
      return { contentType: merged.contentType, body: await merged.metrics() };
    },
  };
}

export type ApiMetrics = ReturnType<typeof apiMetrics>;
