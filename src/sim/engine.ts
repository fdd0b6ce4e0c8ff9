import pino, { type Logger } from 'pino';
import { a1111OptionDefaults, settableOptions, unknownOptionKeys, unknownOptionsDetail } from '../a1111/options.js';
import { type Checkpoint, ModelCatalog, type ModelFile } from './catalog.js';
import { apiError, HttpError, validationError } from './errors.js';
import type { SimOptions } from './server.js';
import { JobQueue, SdState } from './state.js';
import { type JobKind, SimStats } from './stats.js';

// The simulator's core: the queue lock, the job state, the catalog, the options, and which checkpoint is loaded.
// Generation and extras live in their own modules and run through `withJob`.

/** What a job reports when it lets go of the lock, for the stats file and the log. */
export type JobOutcome = Record<string, unknown> & { interrupted?: boolean };

/** Special sd_vae values A1111 accepts besides VAE file names. */
const VAE_SPECIAL = new Set(['Automatic', 'None']);

export class Simulator {
  readonly state = new SdState();
  readonly queue = new JobQueue();
  readonly stats: SimStats;
  readonly catalog: ModelCatalog;
  readonly log: Logger;
  readonly options: Record<string, unknown> = a1111OptionDefaults();
  loaded: Checkpoint | null = null;

  constructor(readonly opts: SimOptions) {
    this.stats = new SimStats(opts.statsDir);
    this.catalog = new ModelCatalog(opts.modelsDir);
    this.log = opts.logger ?? pino({ level: 'silent' });
  }

  /**
   * Runs `fn` holding the queue lock, recorded as one busy interval of `kind`, with a log line when it ends.
   * `fn` fills `outcome` with what the end record should say.
   */
  withJob<T>(kind: JobKind, fn: (outcome: JobOutcome) => Promise<T>): Promise<T> {
    return this.queue.run(async () => {
      const job = this.stats.begin(kind);
      const started = Date.now();
      const outcome: JobOutcome = {};
      try {
        return await fn(outcome);
      } catch (err) {
        outcome.error = err instanceof Error ? err.message : String(err);
        throw err;
      } finally {
        this.stats.end(job, outcome);
        this.log.info({ job, kind, ms: Date.now() - started, ...outcome }, `sim ${kind} job done`);
      }
    });
  }

  /** The injected fault of a generation (SimOptions.fault), before it takes the lock: a crash, or A1111's OOM answer. */
  injectJobFault(): void {
    if (this.opts.fault === 'crash-at-job') {
      this.log.error('SDFLOW_SIM_FAULT=crash-at-job: the simulator exits');
      process.exit(1);
    }
    if (this.opts.fault === 'oom-at-job') {
      throw new HttpError(500, {
        error: 'OutOfMemoryError',
        detail: '',
        body: '',
        errors: 'CUDA out of memory. Tried to allocate 2.00 GiB (injected by SDFLOW_SIM_FAULT=oom-at-job)',
      });
    }
  }

  /** Runs `fn` holding the queue lock without counting it as work (refresh, unload). */
  withLock<T>(fn: () => Promise<T>): Promise<T> {
    return this.queue.run(fn);
  }

  /** Loads `ckpt` unless it is the loaded one, taking loadMs. The caller holds the lock. Returns whether it loaded. */
  async loadCheckpoint(ckpt: Checkpoint): Promise<boolean> {
    if (this.loaded && this.loaded.filename === ckpt.filename && this.loaded.sha256 === ckpt.sha256) return false;
    const started = Date.now();
    await SdState.sleep(this.opts.loadMs);
    this.loaded = ckpt;
    this.stats.modelLoaded(ckpt.title);
    this.log.info({ model: ckpt.title, ms: Date.now() - started }, 'sim checkpoint loaded');
    return true;
  }

  unloadCheckpoint(): void {
    this.loaded = null;
    this.stats.modelUnloaded();
  }

  /** A checkpoint named by a client, rescanning once if unknown; a 422 naming it otherwise. */
  async requireCheckpoint(ref: unknown, field: string): Promise<Checkpoint> {
    if (typeof ref !== 'string' || ref.trim() === '') throw apiError(422, `${field}: a checkpoint name is required`);
    const found = await this.catalog.resolveCheckpoint(ref);
    if (!found) throw apiError(422, `${field}: checkpoint '${ref}' not found among the checkpoints (stableDiffusion/)`);
    return found;
  }

  /** A VAE named by a client: 'Automatic', 'None', or a VAE file; a 422 naming it otherwise. */
  async requireVae(ref: unknown, field: string): Promise<{ name: string; file?: ModelFile }> {
    if (typeof ref !== 'string') throw apiError(422, `${field}: a VAE name is required`);
    if (VAE_SPECIAL.has(ref)) return { name: ref };
    const file = await this.catalog.resolveVae(ref);
    if (!file) throw apiError(422, `${field}: VAE '${ref}' not found among the VAEs (sdVae/)`);
    return { name: file.name, file };
  }

  /**
   * The checkpoint a request without an override uses: the sd_model_checkpoint option, else the loaded one, else
   * the first in the catalog. A 422 when there is none at all.
   */
  async defaultCheckpoint(): Promise<Checkpoint> {
    const option = this.options.sd_model_checkpoint;
    if (typeof option === 'string' && option) {
      const found = await this.catalog.resolveCheckpoint(option);
      if (found) return found;
    }
    if (this.loaded) return this.loaded;
    if (this.catalog.checkpoints.length === 0) await this.catalog.scan();
    const first = this.catalog.checkpoints[0];
    if (!first) throw apiError(422, 'no checkpoint available: stableDiffusion/ holds no model file');
    return first;
  }

  /** GET /sdapi/v1/options. */
  optionsView(): Record<string, unknown> {
    return {
      ...this.options,
      sd_model_checkpoint: this.options.sd_model_checkpoint ?? this.loaded?.title ?? null,
      sd_checkpoint_hash: this.loaded?.sha256 ?? this.options.sd_checkpoint_hash,
    };
  }

  /**
   * POST /sdapi/v1/options: merges the body. A new sd_model_checkpoint loads it under the lock, as A1111's queued
   * reload does; the answer comes once it is loaded. A key that is no A1111 setting is a 422 naming it, and nothing
   * is applied (A1111 1.10.1 itself fails with a 500 KeyError, after applying the keys before it). Settings the API
   * may not change, and the settings page's explanations, are ignored, as A1111 ignores them.
   */
  async setOptions(body: unknown): Promise<null> {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw validationError([{ loc: ['body'], msg: 'value is not a valid dict', type: 'type_error.dict' }]);
    }
    const unknown = unknownOptionKeys(body as Record<string, unknown>);
    if (unknown.length > 0) throw apiError(422, unknownOptionsDetail(unknown));
    const { sd_model_checkpoint: ckptRef, sd_vae: vaeRef, ...rest } = settableOptions(body as Record<string, unknown>);
    const ckpt =
      ckptRef === undefined || ckptRef === null
        ? undefined
        : await this.requireCheckpoint(ckptRef, 'sd_model_checkpoint');
    const vae = vaeRef === undefined || vaeRef === null ? undefined : await this.requireVae(vaeRef, 'sd_vae');
    Object.assign(this.options, rest);
    if (vae) this.options.sd_vae = vae.name;
    if (!ckpt) return null;
    this.options.sd_model_checkpoint = ckpt.title;
    if (this.isLoaded(ckpt)) return null;
    await this.withJob('load', async (outcome) => {
      outcome.model = ckpt.title;
      outcome.loaded = await this.loadCheckpoint(ckpt);
    });
    return null;
  }

  isLoaded(ckpt: Checkpoint): boolean {
    return this.loaded?.filename === ckpt.filename && this.loaded.sha256 === ckpt.sha256;
  }

  /** POST /sdapi/v1/reload-checkpoint: loads the selected checkpoint if none is loaded. */
  async reloadCheckpoint(): Promise<void> {
    if (this.loaded) return;
    const ckpt = await this.defaultCheckpoint();
    await this.withJob('load', async (outcome) => {
      outcome.model = ckpt.title;
      outcome.loaded = await this.loadCheckpoint(ckpt);
    });
  }
}
