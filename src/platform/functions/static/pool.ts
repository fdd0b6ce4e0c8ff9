import { checkpointMatches } from '../../../gpu-agent/sd-client.js';
import { errorMessage, networkReason } from '../../../http-util.js';
import type { Logger } from '../../../logging.js';
import type { MetaStore } from '../../meta-store/port.js';
import { FunctionUnavailableError } from '../port.js';

// The WebUIs of a static GPU pool and who holds them. Each WebUI runs one request at a time: a request waits, FIFO,
// for a free healthy WebUI of its checkpoint. Every WebUI is health-checked periodically (GET /sdapi/v1/options);
// one that fails leaves the rotation (a request holding it loses it) and returns once it answers again.
//
// One at a time holds across the deployment, not only in this process: a WebUI is handed to a request only once this
// pool holds its lease (`static:<url>`) in the meta store, which every process (each worker, and the API for
// passthrough reads) shares. The lease is renewed every third of its TTL while the request runs, and given back once
// the WebUI has returned. A WebUI whose lease another process holds counts as busy: waiting requests try it again
// every LEASE_POLL_MS, besides the wakeups of this process's own give-backs. A process that dies holding a lease
// frees the WebUI when the lease expires.

/** How often requests waiting for a WebUI try again the leases that other processes held. */
const LEASE_POLL_MS = 200;

/** The meta store's lease operations, which the pool uses. */
export type LeaseStore = Pick<MetaStore, 'tryAcquireLease' | 'renewLease' | 'releaseLease'>;

export type WebUiState = 'unknown' | 'idle' | 'busy' | 'down';

/** One request's exclusive hold on a WebUI (this process's, backed by the WebUI's lease in the meta store). */
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
  /** Where the WebUIs' leases live for the whole deployment: the meta store (opened on first use). */
  leases: () => Promise<LeaseStore>;
  /** This pool's name in those leases; no other pool of the deployment may use it. */
  holder: string;
  /** How long a lease lasts unless renewed. */
  leaseTtlMs: number;
  logger: Logger;
}

interface WebUi {
  url: string;
  /** The name of its lease in the meta store. */
  resource: string;
  /** Undefined until the first health check has answered. */
  healthy?: boolean;
  /** Set from the moment its lease is taken for a request until that lease is given back. */
  lease?: LeaseImpl;
  /** Its lease is being taken: no other request of this process may try it meanwhile. */
  claiming?: boolean;
  /** Its lease was refused since the last poll: not tried again before the next one. */
  deferred?: boolean;
  /** Why taking its lease last failed (another process holds it, or the meta store failed); cleared on success. */
  refused?: string;
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
  /** A WebUI's lease is being taken for it. */
  claiming: boolean;
  resolve: (lease: Lease) => void;
  reject: (err: unknown) => void;
  cleanup: () => void;
}

class LeaseImpl implements Lease {
  private readonly controller = new AbortController();
  private released = false;
  /** Renews the WebUI's lease in the meta store while the request runs; cleared once it stops. */
  renewTimer?: NodeJS.Timeout;
  /** The renewals, chained so that they never overlap; awaited before the lease is given back. */
  renewing: Promise<void> = Promise.resolve();

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

  stopRenewing(): void {
    clearInterval(this.renewTimer);
    this.renewTimer = undefined;
  }
}

/** Why a fetch failed, in a few words: a timeout, or the socket error's code. */
function failureOf(err: unknown, timeoutMs: number): string {
  if ((err as Error).name === 'TimeoutError') return `no answer within ${timeoutMs / 1000} s`;
  return networkReason(err);
}

export class WebUiPool {
  private readonly webUis = new Map<string, WebUi>();
  private waiters: Waiter[] = [];
  private timer?: NodeJS.Timeout;
  /** Runs while requests wait: they try again the leases that other processes held. */
  private poll?: NodeJS.Timeout;
  /** Lease operations in flight (claims and give-backs), for settled(). */
  private readonly inFlight = new Set<Promise<void>>();
  private closed = false;

  constructor(private readonly options: WebUiPoolOptions) {
    const now = Date.now();
    for (const urls of Object.values(options.checkpoints)) {
      for (const url of urls) {
        if (!this.webUis.has(url)) this.webUis.set(url, { url, resource: `static:${url}`, since: now, freedAt: 0 });
      }
    }
  }

  /** Checks every WebUI now, then every healthCheckMs. The timer does not keep the process alive. */
  start(): void {
    void this.checkAll();
    this.timer = setInterval(() => void this.checkAll(), this.options.healthCheckMs);
    this.timer.unref();
  }

  /**
   * Stops the health checks and the lease renewals, and fails the requests still waiting for a WebUI. Requests that
   * still run give their leases back when they end; settled() says when the lease operations under way are done.
   */
  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    for (const ui of this.webUis.values()) ui.lease?.stopRenewing();
    for (const waiter of [...this.waiters]) {
      this.drop(waiter);
      waiter.reject(new FunctionUnavailableError('the static GPU pool is closing'));
    }
  }

  /** Resolves once no lease operation is under way (each one's failure is logged, not thrown). */
  async settled(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
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
      const res = await fetch(`${ui.url}/sdapi/v1/options`, {
        signal: AbortSignal.timeout(this.options.healthTimeoutMs),
      });
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
      failure = failureOf(err, this.options.healthTimeoutMs);
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
    this.options.logger.info({ url: ui.url }, back ? 'WebUI back in rotation' : 'WebUI in rotation');
    this.pump();
  }

  private markDown(ui: WebUi, reason: string): void {
    ui.lastError = reason;
    ui.lease?.lose(`WebUI ${ui.url} failed its health check: ${reason}`);
    if (ui.healthy === false) return;
    ui.healthy = false;
    ui.since = Date.now();
    this.options.logger.warn({ url: ui.url, reason, busy: ui.lease !== undefined }, 'WebUI taken out of rotation');
  }

  private servedBy(url: string): string[] {
    return Object.entries(this.options.checkpoints)
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
            `no WebUI serving ${model} became free within ${this.options.queueTimeoutMs / 1000} s (${this.summary(model)})`,
          ),
        );
      }, this.options.queueTimeoutMs);
      const onAbort = () => {
        this.drop(waiter);
        reject(signal.reason);
      };
      const waiter: Waiter = {
        model,
        claiming: false,
        resolve,
        reject,
        cleanup: () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
      this.poll ??= setInterval(() => {
        for (const ui of this.webUis.values()) ui.deferred = false;
        this.pump();
      }, LEASE_POLL_MS);
      this.poll.unref();
      this.pump();
    });
  }

  private drop(waiter: Waiter): void {
    waiter.cleanup();
    this.waiters = this.waiters.filter((w) => w !== waiter);
    if (this.waiters.length === 0) {
      clearInterval(this.poll);
      this.poll = undefined;
    }
  }

  private track(operation: Promise<void>): void {
    this.inFlight.add(operation);
    void operation.finally(() => this.inFlight.delete(operation));
  }

  /** Offers free healthy WebUIs to the waiters, oldest first: each gets one once its lease is taken. */
  private pump(): void {
    if (this.closed) return;
    for (const waiter of [...this.waiters]) {
      if (waiter.claiming) continue;
      const ui = this.pick(waiter.model);
      if (ui) this.track(this.claim(waiter, ui));
    }
  }

  /**
   * Takes the WebUI's lease for the waiter and hands the WebUI over. Refused (another process holds it, or the meta
   * store failed), the waiter keeps its place and the WebUI is not tried again before the next poll.
   */
  private async claim(waiter: Waiter, ui: WebUi): Promise<void> {
    waiter.claiming = true;
    ui.claiming = true;
    let taken = false;
    let refused: string | undefined;
    try {
      taken = await (await this.options.leases()).tryAcquireLease(
        ui.resource,
        this.options.holder,
        this.options.leaseTtlMs,
      );
      if (!taken) refused = 'held by another sdflow process';
    } catch (err) {
      refused = `its lease could not be taken: ${errorMessage(err)}`;
      if (ui.refused !== refused) {
        this.options.logger.warn(
          { url: ui.url, err: errorMessage(err) },
          'cannot take the lease of a WebUI; trying again',
        );
      }
    }
    ui.refused = refused;
    waiter.claiming = false;
    if (taken && !this.closed && ui.healthy === true && this.waiters.includes(waiter)) {
      ui.claiming = false;
      this.drop(waiter);
      this.hold(ui, waiter);
      return;
    }
    // Taken for nothing (the waiter gave up, the pool closed, or the WebUI left the rotation meanwhile): given back
    // before anyone here may claim it again, so that this release can never undo a newer claim of the same holder.
    if (taken) await this.releaseShared(ui);
    else ui.deferred = true;
    ui.claiming = false;
    this.pump();
  }

  /** Hands the WebUI to the waiter, and renews its lease every third of the TTL until the request gives it back. */
  private hold(ui: WebUi, waiter: Waiter): void {
    const lease = new LeaseImpl(ui.url, waiter.model, (l) => this.giveBack(ui, l));
    ui.lease = lease;
    lease.renewTimer = setInterval(() => {
      lease.renewing = lease.renewing.then(() => this.renew(ui, lease));
    }, this.options.leaseTtlMs / 3);
    lease.renewTimer.unref();
    waiter.resolve(lease);
  }

  private async renew(ui: WebUi, lease: LeaseImpl): Promise<void> {
    if (lease.renewTimer === undefined) return;
    try {
      if (await (await this.options.leases()).renewLease(ui.resource, this.options.holder, this.options.leaseTtlMs))
        return;
      // Aborting would waste the generation, and the WebUI's own queue keeps two jobs apart: the request finishes.
      lease.stopRenewing();
      this.options.logger.error(
        { url: ui.url, holder: this.options.holder, leaseTtlMs: this.options.leaseTtlMs },
        'LEASE LOST on a WebUI while a request runs on it (not renewed within its TTL): another process may have ' +
          'sent it a job too; the request finishes, and the lease is not renewed again',
      );
    } catch (err) {
      this.options.logger.warn(
        { url: ui.url, err: errorMessage(err) },
        'cannot renew the lease of a WebUI; trying again at the next renewal',
      );
    }
  }

  /** Gives the WebUI's lease back; a failure is logged, and the lease then frees itself when it expires. */
  private async releaseShared(ui: WebUi): Promise<void> {
    try {
      await (await this.options.leases()).releaseLease(ui.resource, this.options.holder);
    } catch (err) {
      this.options.logger.warn(
        { url: ui.url, err: errorMessage(err) },
        'cannot give back the lease of a WebUI; it frees itself when it expires',
      );
    }
  }

  /** A free healthy WebUI of the checkpoint: one that holds it already, else the one free the longest. */
  private pick(model: string): WebUi | undefined {
    let best: WebUi | undefined;
    for (const url of this.options.checkpoints[model] ?? []) {
      const ui = this.webUis.get(url)!;
      if (ui.healthy !== true || ui.lease || ui.claiming || ui.deferred) continue;
      const holds = ui.holds === model;
      const bestHolds = best?.holds === model;
      if (!best || (holds && !bestHolds) || (holds === bestHolds && ui.freedAt < best.freedAt)) best = ui;
    }
    return best;
  }

  private giveBack(ui: WebUi, lease: LeaseImpl): void {
    if (ui.lease !== lease) return;
    lease.stopRenewing();
    // The WebUI stays held here until its lease is given back: a claim by this process meanwhile (the same holder)
    // would be undone by the release.
    this.track(
      lease.renewing
        .then(() => this.releaseShared(ui))
        .then(() => {
          ui.lease = undefined;
          ui.freedAt = Date.now();
          // The request pinned its checkpoint there (a failed one may not have; the next health check says).
          ui.holds = lease.model;
          this.pump();
        }),
    );
  }

  private stateOf(ui: WebUi): WebUiState {
    if (ui.healthy === false) return 'down';
    if (ui.lease) return 'busy';
    return ui.healthy === true ? 'idle' : 'unknown';
  }

  /** The WebUIs of a checkpoint and their states. */
  describe(model: string): WebUiView[] {
    return (this.options.checkpoints[model] ?? []).map((url) => {
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

  /**
   * "http://gpu1:7860 down (ECONNREFUSED), http://gpu2:7860 busy, http://gpu3:7860 busy (held by another sdflow
   * process)", for error messages.
   */
  private summary(model: string): string {
    return this.describe(model)
      .map((v) => {
        const refused = this.webUis.get(v.id)!.refused;
        if (v.state === 'idle' && refused) return `${v.id} busy (${refused})`;
        return `${v.id} ${v.state}${v.state === 'down' && v.lastError ? ` (${v.lastError})` : ''}`;
      })
      .join(', ');
  }
}
