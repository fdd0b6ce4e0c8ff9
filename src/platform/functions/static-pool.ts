import { checkpointMatches } from '../../gpu-agent/sd-client.js';
import type { Logger } from '../../logging.js';
import { FunctionUnavailableError } from './port.js';

// The WebUIs of a static GPU pool and who holds them. Each WebUI runs one request at a time: a request waits, FIFO,
// for a free healthy WebUI of its checkpoint. Every WebUI is health-checked periodically (GET /sdapi/v1/options);
// one that fails leaves the rotation (a request holding it loses it) and returns once it answers again.

export type WebUiState = 'unknown' | 'idle' | 'busy' | 'down';

/** One request's exclusive hold on a WebUI. */
export interface Lease {
  readonly url: string;
  /** Aborted when the WebUI fails a health check while the lease holds it. */
  readonly lost: AbortSignal;
  /** Gives the WebUI back (idempotent). */
  release(): void;
}

export interface WebUiView {
  /** The WebUI's URL: the pool's instances are its WebUIs. */
  id: string;
  busy: boolean;
  /** When the WebUI last entered or left the rotation (or was first listed). */
  startedAt: string;
  state: WebUiState;
  lastError?: string;
}

export interface WebUiPoolOptions {
  /** Checkpoint name → the URLs of the WebUIs that serve it. */
  checkpoints: Record<string, string[]>;
  healthCheckMs: number;
  healthTimeoutMs: number;
  /** How long a request may wait for a free WebUI. */
  queueTimeoutMs: number;
  logger: Logger;
}

interface WebUi {
  url: string;
  /** Undefined until the first health check has answered. */
  healthy?: boolean;
  lease?: LeaseImpl;
  since: number;
  /** When the WebUI was last given back, to share work across WebUIs. */
  freedAt: number;
  /** The checkpoint it was last seen holding; preferred for the same checkpoint, so it need not switch. */
  holds?: string;
  lastError?: string;
  probing?: Promise<void>;
}

interface Waiter {
  model: string;
  resolve: (lease: Lease) => void;
  reject: (err: unknown) => void;
  cleanup: () => void;
}

class LeaseImpl implements Lease {
  private readonly controller = new AbortController();
  private released = false;

  constructor(
    readonly url: string,
    readonly model: string,
    private readonly onRelease: (lease: LeaseImpl) => void,
  ) {}

  get lost(): AbortSignal {
    return this.controller.signal;
  }

  lose(reason: string): void {
    if (!this.controller.signal.aborted) this.controller.abort(new Error(reason));
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.onRelease(this);
  }
}

/** Why a fetch failed, in a few words: a timeout, or the socket error's code. */
function failureOf(err: unknown, timeoutMs: number): string {
  if ((err as Error).name === 'TimeoutError') return `no answer within ${timeoutMs / 1000} s`;
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message;
}

export class WebUiPool {
  private readonly webUis = new Map<string, WebUi>();
  private waiters: Waiter[] = [];
  private timer?: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly o: WebUiPoolOptions) {
    const now = Date.now();
    for (const urls of Object.values(o.checkpoints)) {
      for (const url of urls) if (!this.webUis.has(url)) this.webUis.set(url, { url, since: now, freedAt: 0 });
    }
  }

  /** Checks every WebUI now, then every healthCheckMs. The timer does not keep the process alive. */
  start(): void {
    void this.checkAll();
    this.timer = setInterval(() => void this.checkAll(), this.o.healthCheckMs);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    for (const waiter of [...this.waiters]) {
      this.drop(waiter);
      waiter.reject(new FunctionUnavailableError('the static GPU pool is closing'));
    }
  }

  /** Health-checks the WebUIs (all, or these) now; resolves when every check has answered. */
  async checkAll(urls: Iterable<string> = this.webUis.keys()): Promise<void> {
    await Promise.all([...urls].map((url) => this.check(url)));
  }

  /** One health check of one WebUI; concurrent calls share it. */
  check(url: string): Promise<void> {
    const ui = this.webUis.get(url);
    if (!ui) return Promise.resolve();
    ui.probing ??= this.probe(ui).finally(() => {
      ui.probing = undefined;
    });
    return ui.probing;
  }

  private async probe(ui: WebUi): Promise<void> {
    let checkpoint: unknown;
    let failure: string | undefined;
    try {
      const res = await fetch(`${ui.url}/sdapi/v1/options`, { signal: AbortSignal.timeout(this.o.healthTimeoutMs) });
      const text = await res.text();
      if (!res.ok) failure = `answered HTTP ${res.status}`;
      else {
        try {
          checkpoint = (JSON.parse(text) as { sd_model_checkpoint?: unknown }).sd_model_checkpoint;
        } catch {
          failure = 'answered /sdapi/v1/options with something other than JSON (is it an A1111 WebUI with --api?)';
        }
      }
    } catch (err) {
      failure = failureOf(err, this.o.healthTimeoutMs);
    }
    if (this.closed) return;
    if (failure === undefined) this.markHealthy(ui, checkpoint);
    else this.markDown(ui, failure);
  }

  private markHealthy(ui: WebUi, checkpoint: unknown): void {
    // Only a WebUI nobody holds reports what it holds for certain: a request may be switching it.
    if (!ui.lease) ui.holds = this.servedBy(ui.url).find((model) => checkpointMatches(checkpoint, model));
    if (ui.healthy === true) return;
    const back = ui.healthy === false;
    ui.healthy = true;
    ui.since = Date.now();
    ui.lastError = undefined;
    this.o.logger.info({ url: ui.url }, back ? 'WebUI back in rotation' : 'WebUI in rotation');
    this.pump();
  }

  private markDown(ui: WebUi, reason: string): void {
    ui.lastError = reason;
    ui.lease?.lose(`WebUI ${ui.url} failed its health check: ${reason}`);
    if (ui.healthy === false) return;
    ui.healthy = false;
    ui.since = Date.now();
    this.o.logger.warn({ url: ui.url, reason, busy: ui.lease !== undefined }, 'WebUI taken out of rotation');
  }

  private servedBy(url: string): string[] {
    return Object.entries(this.o.checkpoints)
      .filter(([, urls]) => urls.includes(url))
      .map(([model]) => model);
  }

  /**
   * Takes a WebUI of the checkpoint exclusively, waiting FIFO behind earlier requests. Rejects with
   * FunctionUnavailableError when none becomes free within the queue timeout, or with the signal's reason.
   */
  acquire(model: string, signal: AbortSignal): Promise<Lease> {
    if (this.closed) return Promise.reject(new FunctionUnavailableError('the static GPU pool is closing'));
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<Lease>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.drop(waiter);
        reject(
          new FunctionUnavailableError(
            `no WebUI serving ${model} became free within ${this.o.queueTimeoutMs / 1000} s (${this.summary(model)})`,
          ),
        );
      }, this.o.queueTimeoutMs);
      const onAbort = () => {
        this.drop(waiter);
        reject(signal.reason);
      };
      const waiter: Waiter = {
        model,
        resolve,
        reject,
        cleanup: () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
      this.pump();
    });
  }

  private drop(waiter: Waiter): void {
    waiter.cleanup();
    this.waiters = this.waiters.filter((w) => w !== waiter);
  }

  /** Hands free healthy WebUIs to the waiters, oldest first. */
  private pump(): void {
    for (const waiter of [...this.waiters]) {
      const ui = this.pick(waiter.model);
      if (!ui) continue;
      this.drop(waiter);
      const lease = new LeaseImpl(ui.url, waiter.model, (l) => this.giveBack(ui, l));
      ui.lease = lease;
      waiter.resolve(lease);
    }
  }

  /** A free healthy WebUI of the checkpoint: one that holds it already, else the one free the longest. */
  private pick(model: string): WebUi | undefined {
    let best: WebUi | undefined;
    for (const url of this.o.checkpoints[model] ?? []) {
      const ui = this.webUis.get(url)!;
      if (ui.healthy !== true || ui.lease) continue;
      const holds = ui.holds === model;
      const bestHolds = best?.holds === model;
      if (!best || (holds && !bestHolds) || (holds === bestHolds && ui.freedAt < best.freedAt)) best = ui;
    }
    return best;
  }

  private giveBack(ui: WebUi, lease: LeaseImpl): void {
    if (ui.lease !== lease) return;
    ui.lease = undefined;
    ui.freedAt = Date.now();
    // The request pinned its checkpoint there (a failed one may not have; the next health check says).
    ui.holds = lease.model;
    this.pump();
  }

  private stateOf(ui: WebUi): WebUiState {
    if (ui.healthy === false) return 'down';
    if (ui.lease) return 'busy';
    return ui.healthy === true ? 'idle' : 'unknown';
  }

  /** The WebUIs of a checkpoint and their states. */
  describe(model: string): WebUiView[] {
    return (this.o.checkpoints[model] ?? []).map((url) => {
      const ui = this.webUis.get(url)!;
      return {
        id: url,
        busy: ui.lease !== undefined,
        startedAt: new Date(ui.since).toISOString(),
        state: this.stateOf(ui),
        ...(ui.lastError ? { lastError: ui.lastError } : {}),
      };
    });
  }

  /** "http://gpu1:7860 down (ECONNREFUSED), http://gpu2:7860 busy", for error messages. */
  private summary(model: string): string {
    return this.describe(model)
      .map((v) => `${v.id} ${v.state}${v.state === 'down' && v.lastError ? ` (${v.lastError})` : ''}`)
      .join(', ');
  }
}
