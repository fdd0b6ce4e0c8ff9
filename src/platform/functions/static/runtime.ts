import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { ConfigError, type StaticPoolConfig } from '../../../config/index.js';
import { AgentCore, agentSdClient } from '../../../gpu-agent/core.js';
import { toErrorEvent } from '../../../gpu-agent/invoke.js';
import { errorMessage } from '../../../http-util.js';
import type { Logger } from '../../../logging.js';
import { type AgentEvent, InvokeStreamError, invokeEvents, startingEvent } from '../../../protocol/events.js';
import type { InvokeRequest } from '../../../protocol/invoke.js';
import type { MetaStore } from '../../meta-store/port.js';
import type { ObjectStore } from '../../object-store/port.js';
import { functionNameFor } from '../naming.js';
import {
  CheckpointNotServedError,
  FunctionNotFoundError,
  type FunctionRuntime,
  type FunctionSpec,
  FunctionUnavailableError,
  type InvokeOptions,
  type PassthroughRequest,
  type PassthroughResponse,
  type RuntimeFunction,
} from '../port.js';
import { type Lease, WebUiPool } from './pool.js';
import { readPoolFile } from './pool-file.js';

// The static GPU pool (SDFLOW_FUNCTIONS=static), for self-hosters: a file maps checkpoints to SD WebUI instances
// that already run (A1111 with --api), one URL per instance. There is no agent next to those WebUIs, so this runtime
// hosts the agent core in the calling process, in front of the WebUI it picks: the same NDJSON events, the
// checkpoint pinned and overridden per request, a cancel that interrupts that WebUI, images uploaded to the object
// store. The functions are the file's checkpoints, named by the naming module; sdflow neither creates nor deletes
// them. Every process (API, each worker) runs such a runtime; they share one WebUI at a time through leases in the
// meta store (see pool.ts), so a WebUI never gets two jobs from one deployment.

/** How often a request waiting for a free WebUI reports that it is still waiting. */
const WAITING_EVERY_MS = 1000;

export interface StaticPoolDeps {
  /** Opens the object store invokes read inputs from and upload images to; called once, at first use. */
  store: () => Promise<ObjectStore>;
  /**
   * Opens the meta store that keeps the WebUIs' leases for the deployment: at first use, again after a failed
   * opening; closed by close().
   */
  meta: () => Promise<MetaStore>;
  logger: Logger;
}

/** Events from a running invoke to the generator that yields them. */
class EventChannel {
  private readonly items: AgentEvent[] = [];
  private closed = false;
  private wake?: () => void;

  push(event: AgentEvent): void {
    if (this.closed) return;
    this.items.push(event);
    this.wake?.();
  }

  close(): void {
    this.closed = true;
    this.wake?.();
  }

  /** The events as they come, until the channel is closed and drained. */
  async *[Symbol.asyncIterator](): AsyncGenerator<AgentEvent> {
    for (;;) {
      while (this.items.length === 0 && !this.closed) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = undefined;
      }
      const event = this.items.shift();
      if (event === undefined) return;
      yield event;
    }
  }
}

export class StaticPoolRuntime implements FunctionRuntime {
  private readonly poolFile: string;
  /** Function name → checkpoint. */
  private readonly models = new Map<string, string>();
  private readonly pool: WebUiPool;
  private readonly logger: Logger;
  private store?: Promise<ObjectStore>;
  private meta?: Promise<MetaStore>;

  constructor(
    private readonly config: StaticPoolConfig,
    private readonly deps: StaticPoolDeps,
  ) {
    const poolFile = config.poolFile;
    if (!poolFile) {
      throw new ConfigError(
        'the static GPU pool (SDFLOW_FUNCTIONS=static) needs SDFLOW_STATIC_POOL_FILE: a JSON file mapping checkpoints ' +
          'to WebUI URLs',
      );
    }
    this.poolFile = poolFile;
    const file = readPoolFile(poolFile);
    for (const model of Object.keys(file.checkpoints)) {
      this.models.set(functionNameFor(model, config.functionPrefix), model);
    }
    // Names this process in the leases it takes, readably for an operator looking at who holds a WebUI.
    const holder = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.logger = deps.logger.child({ poolFile, holder });
    this.pool = new WebUiPool({
      checkpoints: file.checkpoints,
      healthCheckMs: file.healthCheckS * 1000,
      healthTimeoutMs: file.healthTimeoutS * 1000,
      queueTimeoutMs: config.queueTimeoutS * 1000,
      leases: () => this.metaStore(),
      holder,
      leaseTtlMs: config.leaseTtlS * 1000,
      logger: this.logger,
    });
    this.pool.start();
  }

  /**
   * Stops the health checks and lease renewals, fails the requests still waiting for a WebUI, and closes the meta
   * store once the lease operations under way are done.
   */
  async close(): Promise<void> {
    this.pool.close();
    await this.pool.settled();
    // A failed opening left nothing to close (and was reported by the lease operation that needed it).
    const meta = await this.meta?.catch(() => undefined);
    await meta?.close();
  }

  private modelOf(functionName: string): string {
    const model = this.models.get(functionName);
    if (model === undefined) throw new FunctionNotFoundError(functionName);
    return model;
  }

  private metaStore(): Promise<MetaStore> {
    if (!this.meta) {
      const opening = Promise.resolve().then(() => this.deps.meta());
      this.meta = opening;
      // Forgotten when it fails, so that the next lease operation tries again.
      opening.catch(() => {
        if (this.meta === opening) this.meta = undefined;
      });
    }
    return this.meta;
  }

  private objectStore(): Promise<ObjectStore> {
    this.store ??= Promise.resolve().then(() => this.deps.store());
    return this.store;
  }

  /**
   * The agent core for one request on one WebUI. The pool applies no function resources (whoever runs the WebUIs
   * configures them), so there are no function settings. A WebUI a call found unreachable is health-checked at once:
   * out of rotation until it answers again.
   */
  private agentCore(url: string, model: string, logger: Logger): AgentCore {
    return new AgentCore({
      sd: agentSdClient(() => url, this.config),
      backend: { markUnreachable: () => void this.pool.check(url) },
      store: () => this.objectStore(),
      model,
      timings: this.config,
      logger,
    });
  }

  async ensureFunction(spec: FunctionSpec): Promise<void> {
    const expected = functionNameFor(spec.model, this.config.functionPrefix);
    if (!this.models.has(expected)) {
      throw new CheckpointNotServedError(
        `no GPU serves checkpoint ${spec.model}: the static pool file ${this.poolFile} maps no WebUI to it`,
      );
    }
    if (spec.functionName !== expected) {
      throw new Error(`function ${spec.functionName} is not checkpoint ${spec.model}'s (that is ${expected})`);
    }
    const ignored = Object.keys(spec.resources ?? {});
    if (ignored.length > 0) {
      this.logger.info(
        { functionName: spec.functionName, ignored },
        'the static GPU pool does not apply function resources; configure the WebUIs themselves',
      );
    }
  }

  async *invoke(functionName: string, request: InvokeRequest, options: InvokeOptions): AsyncIterable<AgentEvent> {
    const model = this.modelOf(functionName);
    const { signal } = options;
    // Ends a wait or a run the caller walked away from without aborting its signal.
    const stop = new AbortController();
    const acquiring = this.pool.acquire(model, AbortSignal.any([signal, stop.signal]));
    let lease: Lease | undefined;
    let run: Promise<void> | undefined;
    let failed = false;
    try {
      let waitFailure: unknown;
      acquiring.then(
        (l) => {
          lease = l;
        },
        (err) => {
          waitFailure = err;
        },
      );
      for (;;) {
        let tick: NodeJS.Timeout | undefined;
        await Promise.race([
          acquiring.catch(() => undefined),
          new Promise((resolve) => {
            tick = setTimeout(resolve, WAITING_EVERY_MS);
          }),
        ]);
        clearTimeout(tick);
        if (lease || waitFailure !== undefined) break;
        yield startingEvent();
      }
      if (signal.aborted) throw signal.reason;
      if (!lease) {
        if (!(waitFailure instanceof FunctionUnavailableError)) throw waitFailure;
        yield { type: 'error', kind: 'internal', message: waitFailure.message, retryable: true };
        return;
      }

      const held = lease;
      const log = this.logger.child({ functionName, url: held.url, taskId: request.taskId });
      const core = this.agentCore(held.url, model, log);
      const channel = new EventChannel();
      const cancel = AbortSignal.any([signal, held.lost, stop.signal]);
      cancel.addEventListener('abort', () => channel.close(), { once: true });
      run = core
        .invoke(request, (event) => channel.push(event), cancel)
        .catch((err) => channel.push(toErrorEvent(err)))
        .finally(() => channel.close());

      try {
        for await (const event of invokeEvents(channel)) {
          if (event.type === 'error' && event.retryable) failed = true;
          yield event;
        }
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        if (!(err instanceof InvokeStreamError)) throw err;
        // Only a cancel ends a run without a result or error event: the WebUI failed its health check mid-request.
        // The request ends retryably, and runs again elsewhere.
        failed = true;
        const reason = held.lost.aborted ? errorMessage(held.lost.reason) : `WebUI ${held.url} ended the request`;
        yield { type: 'error', kind: 'sd_error', message: reason, retryable: true, fault: 'crash' };
      }
    } finally {
      stop.abort();
      if (lease) {
        const held = lease;
        // The WebUI (and its lease) is given back once SD has returned (a cancel interrupts it first), and after a
        // failure only once a health check has said whether it is still fit to serve.
        void (run ?? Promise.resolve())
          .then(() => (failed ? this.pool.check(held.url) : undefined))
          .finally(() => held.release());
      } else {
        void acquiring.then(
          (l) => l.release(),
          () => undefined,
        );
      }
    }
  }

  async passthrough(functionName: string, request: PassthroughRequest): Promise<PassthroughResponse> {
    const model = this.modelOf(functionName);
    const caller = request.signal ?? new AbortController().signal;
    const lease = await this.pool.acquire(model, caller);
    try {
      const path = request.path.startsWith('/') ? request.path : `/${request.path}`;
      const contentType = Object.entries(request.headers ?? {}).find(([k]) => k.toLowerCase() === 'content-type')?.[1];
      const answer = await agentSdClient(() => lease.url, this.config).passthrough(
        request.method,
        path,
        contentType,
        request.body,
        AbortSignal.any([caller, lease.lost]),
      );
      return {
        status: answer.status,
        headers: answer.contentType ? { 'content-type': answer.contentType } : {},
        body: answer.body,
      };
    } catch (err) {
      if (caller.aborted) throw err;
      await this.pool.check(lease.url);
      const reason = lease.lost.aborted ? errorMessage(lease.lost.reason) : errorMessage(err);
      throw new FunctionUnavailableError(`WebUI ${lease.url} failed: ${reason}`);
    } finally {
      lease.release();
    }
  }

  async listFunctions(): Promise<RuntimeFunction[]> {
    return [...this.models].map(([functionName, model]) => ({
      functionName,
      model,
      resources: {},
      instances: this.pool.describe(model),
    }));
  }

  async deleteFunction(functionName: string): Promise<void> {
    const model = this.models.get(functionName);
    // A function the pool does not have is already in the wanted state: there is no such function.
    if (model === undefined) return;
    throw new Error(
      `the static GPU pool cannot delete ${functionName}: it is checkpoint ${model} of ${this.poolFile}; remove it ` +
        'from that file and restart the API and workers',
    );
  }

  /** sdflow does not run the pool's WebUIs, so it cannot restart them: it checks their health again instead. */
  async restartInstances(functionName?: string): Promise<void> {
    const urls =
      functionName === undefined ? undefined : this.pool.describe(this.modelOf(functionName)).map((webUi) => webUi.id);
    this.logger.info(
      { functionName: functionName ?? 'all' },
      'the static GPU pool cannot restart WebUIs it does not run; checking their health instead',
    );
    await this.pool.checkAll(urls);
  }

  /** Nothing to start: the pool's WebUIs run all the time, outside sdflow, each with its checkpoint loaded. */
  async prewarm(_functionName: string, _instances: number): Promise<void> {}
}
