import type { AgentConfig } from '../config/index.js';
import { isJsonObject } from '../json.js';
import type { Logger } from '../logging.js';
import type { ObjectStore } from '../platform/object-store/port.js';
import type { AgentEvent } from '../protocol/events.js';
import { type InvokeDeps, InvokeFailure, InvokeRunner } from './invoke.js';
import { PassthroughRunner } from './passthrough.js';
import { checkpointMatches, SdClient, SdHttpError, SdUnavailableError } from './sd-client.js';

// The agent core: what serving one checkpoint on one SD takes, whoever hosts it. The agent server hosts it next to
// the SD backend it supervises, one per instance; the static GPU pool hosts one per request in the calling process,
// in front of a WebUI someone else runs. Both pin the checkpoint, apply the function's settings, read a caller's
// objects and run invokes through this, so they behave the same.

/** How long an agent waits for SD, and how often it polls a running job (the agent's and the static pool's). */
export type AgentTimings = Pick<
  AgentConfig,
  'sdStartTimeoutS' | 'generateTimeoutS' | 'progressPollMs' | 'interruptPollMs' | 'previewIntervalMs'
>;

/** An agent's SD client: quick reads, setting options (which may load a checkpoint), generations, passthrough. */
export function agentSdClient(baseUrl: () => string, timings: AgentTimings): SdClient {
  const startTimeoutMs = timings.sdStartTimeoutS * 1000;
  return new SdClient(baseUrl, {
    quickMs: 10_000,
    optionsMs: Math.max(startTimeoutMs, 60_000),
    // A backstop only: the caller's cancel (a closed connection, a deadline, a lost WebUI) normally ends a job.
    generateMs: timings.generateTimeoutS * 1000,
    passthroughMs: Math.max(startTimeoutMs, 600_000),
  });
}

export interface AgentCoreOptions {
  sd: SdClient;
  /** The SD behind `sd`, told when a call found it unreachable, so that nothing more is sent until it answers. */
  backend: { markUnreachable(reason: string): void };
  /** The object store invokes read inputs from and write images to. */
  store: () => Promise<ObjectStore>;
  /** The checkpoint served: pinned before a request, and the one every generation overrides to. */
  model: string;
  /** The function's WebUI settings, applied once before the checkpoint is pinned. */
  settings?: Record<string, unknown>;
  /** How often a running job is polled for progress, interrupts and previews. */
  timings: AgentTimings;
  logger: Logger;
  /**
   * Every call that could switch SD's checkpoint goes through this core (the agent started SD, and passes on what
   * others send it): once pinned, the checkpoint is not read again before each invoke, until SD restarts or a
   * passthrough other than a read may have changed it. Otherwise (a WebUI others use too) it is read every time.
   */
  soleClient?: boolean;
}

export class AgentCore {
  private settingsApplied = false;
  private checkpointPinned = false;
  private readonly generations: InvokeRunner;
  private readonly passthroughs: PassthroughRunner;

  constructor(private readonly options: AgentCoreOptions) {
    const { sd, store, model, timings, logger } = options;
    const deps: InvokeDeps = {
      sd,
      store,
      model,
      ensureCheckpoint: (onLoad) => this.ensureCheckpoint(onLoad),
      progressPollMs: timings.progressPollMs,
      interruptPollMs: timings.interruptPollMs,
      previewIntervalMs: timings.previewIntervalMs,
      logger,
    };
    this.generations = new InvokeRunner(deps);
    this.passthroughs = new PassthroughRunner(deps);
  }

  /** Whether SD held the checkpoint when last asked. */
  get pinned(): boolean {
    return this.checkpointPinned;
  }

  /** A (re)started SD may hold any checkpoint and none of the function's settings: both are applied again. */
  forgetSdState(): void {
    this.settingsApplied = false;
    this.checkpointPinned = false;
  }

  /**
   * Runs one invoke, a generation or a passthrough: progress events, then exactly one result or error event, unless
   * `cancel` fires.
   */
  invoke(body: unknown, emit: (event: AgentEvent) => void, cancel: AbortSignal): Promise<void> {
    const passthrough = isJsonObject(body) && body.kind === 'passthrough';
    if (!passthrough) return this.generations.run(body, emit, cancel);
    const read = isJsonObject(body.params) && body.params.method === 'GET';
    return this.passthroughs.run(body, emit, cancel).finally(() => {
      if (!read) this.forgetSdState();
    });
  }

  /** Loads the checkpoint unless SD already holds it, after the function's settings; `onLoad` announces a load. */
  async ensureCheckpoint(onLoad: () => void): Promise<void> {
    await this.applySettings();
    const { sd, model, logger } = this.options;
    if (this.checkpointPinned && this.options.soleClient) return;
    try {
      if (checkpointMatches((await sd.getOptions()).sd_model_checkpoint, model)) {
        this.checkpointPinned = true;
        return;
      }
      this.checkpointPinned = false;
      onLoad();
      const started = Date.now();
      await sd.setOptions({ sd_model_checkpoint: model });
      const loaded = (await sd.getOptions()).sd_model_checkpoint;
      if (!checkpointMatches(loaded, model)) {
        throw new InvokeFailure(
          'not_found',
          `SD did not load checkpoint ${model}; it reports ${String(loaded)}`,
          false,
        );
      }
      logger.info({ model, loadMs: Date.now() - started }, 'checkpoint loaded');
      this.checkpointPinned = true;
    } catch (err) {
      throw this.sdFailure(err, (detail) => `checkpoint ${model} cannot be loaded: ${detail}`, 'not_found');
    }
  }

  /** The function's WebUI settings, once until SD restarts; SD refusing them fails the request, with SD's reason. */
  private async applySettings(): Promise<void> {
    const { sd, settings, logger } = this.options;
    if (this.settingsApplied || !settings || Object.keys(settings).length === 0) return;
    try {
      await sd.setOptions(settings);
    } catch (err) {
      throw this.sdFailure(err, (detail) => `SD refused the function's settings: ${detail}`, 'internal');
    }
    this.settingsApplied = true;
    logger.info({ settings: Object.keys(settings) }, "applied the function's settings");
  }

  /**
   * What a failed call to SD becomes: SD's refusal (a 4xx) a final failure of `kind`, saying `refused` with SD's
   * reason; SD out of reach a retryable one, after the backend is told.
   */
  private sdFailure(err: unknown, refused: (detail: string) => string, kind: 'not_found' | 'internal'): unknown {
    if (err instanceof SdHttpError && err.status < 500) {
      return new InvokeFailure(kind, refused(err.detail), false, err.status);
    }
    if (err instanceof SdUnavailableError) this.options.backend.markUnreachable(err.message);
    return err;
  }
}
