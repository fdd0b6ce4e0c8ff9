import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { errorMessage, freePort, sleep } from '../http-util.js';
import type { Logger } from '../logging.js';

// The SD backend next to the agent: either a real WebUI at a configured URL, which the agent only waits for, or a
// simulator the agent runs as its own child. The child stays in the agent's process group, so stopping the
// instance's group stops both; if it dies on its own, the agent starts another.

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const POLL_MS = 100;
const MAX_RESTART_BACKOFF_MS = 10_000;

export interface SdBackendOptions {
  /** A real WebUI; when absent the agent runs `sdflow sim`. */
  sdUrl?: string;
  modelsDir: string;
  startTimeoutMs: number;
  logger: Logger;
  /** Called each time the backend becomes ready (first start and every restart). */
  onReady?: () => void;
}

interface Gate {
  promise: Promise<void>;
  open: () => void;
}

function gate(): Gate {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/sdapi/v1/options`, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

export class SdBackend {
  url: string;
  ready = false;
  lastError = 'SD is starting';
  private readyGate = gate();
  private child?: ChildProcess;
  private closed = false;
  private readonly killOnExit = () => this.child?.kill('SIGKILL');

  constructor(private readonly o: SdBackendOptions) {
    this.url = o.sdUrl ?? '';
  }

  /** Starts (or starts waiting for) the backend; readiness is reported through `ready` and `whenReady`. */
  start(): void {
    process.once('exit', this.killOnExit);
    void (this.o.sdUrl ? this.waitForExternal() : this.superviseSimulator());
  }

  /** Resolves once SD answers, or rejects after `timeoutMs` with the last known reason. */
  async whenReady(timeoutMs: number): Promise<void> {
    if (this.ready) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`SD backend not ready after ${timeoutMs} ms: ${this.lastError}`)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([this.readyGate.promise, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A call found a real WebUI unreachable: wait for it again. The simulator's exit is noticed by itself. */
  markUnreachable(reason: string): void {
    if (!this.o.sdUrl || !this.ready || this.closed) return;
    this.o.logger.warn({ url: this.url, reason }, 'SD backend unreachable; waiting for it');
    this.setNotReady(reason);
    void this.waitForExternal();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.setNotReady('closing');
    process.off('exit', this.killOnExit);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  private setReady(): void {
    this.ready = true;
    this.lastError = '';
    this.readyGate.open();
    this.o.onReady?.();
  }

  private setNotReady(reason: string): void {
    this.lastError = reason;
    if (!this.ready) return;
    this.ready = false;
    this.readyGate = gate();
  }

  private async waitForExternal(): Promise<void> {
    const started = Date.now();
    let warned = false;
    while (!this.closed) {
      if (await answers(this.url)) {
        this.o.logger.info({ url: this.url, waitedMs: Date.now() - started }, 'SD backend ready');
        this.setReady();
        return;
      }
      if (!warned && Date.now() - started > this.o.startTimeoutMs) {
        warned = true;
        this.lastError = `SD at ${this.url} has not answered for ${this.o.startTimeoutMs} ms`;
        this.o.logger.error({ url: this.url }, this.lastError);
      }
      await sleep(POLL_MS * 5);
    }
  }

  /** Runs the simulator, restarting it whenever it dies, until the agent closes. */
  private async superviseSimulator(): Promise<void> {
    let backoffMs = 500;
    while (!this.closed) {
      const exit = await this.runSimulatorOnce();
      if (this.closed) return;
      this.o.logger.error({ exit }, 'SD simulator exited; restarting it');
      // A simulator that ran a while died of something new: restart it quickly. One that keeps dying backs off.
      if (exit.ranMs > 60_000) backoffMs = 500;
      await sleep(backoffMs);
      backoffMs = Math.min(backoffMs * 2, MAX_RESTART_BACKOFF_MS);
    }
  }

  /** Starts one simulator process and resolves when it exits. */
  private async runSimulatorOnce(): Promise<{ code: number | null; signal: string | null; ranMs: number }> {
    const port = await freePort();
    const started = Date.now();
    const child = spawn(process.execPath, [CLI, 'sim', '--port', String(port), '--models-dir', this.o.modelsDir], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: process.env,
    });
    this.child = child;
    this.url = `http://127.0.0.1:${port}`;
    const exited = new Promise<{ code: number | null; signal: string | null; ranMs: number }>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal, ranMs: Date.now() - started }));
      child.once('error', (err) => {
        this.o.logger.error({ err: errorMessage(err) }, 'could not spawn the SD simulator');
        resolve({ code: null, signal: null, ranMs: Date.now() - started });
      });
    });
    let running = true;
    void exited.then(() => {
      running = false;
    });
    while (running && !this.closed) {
      if (await answers(this.url)) {
        this.o.logger.info({ url: this.url, pid: child.pid, startMs: Date.now() - started }, 'SD simulator ready');
        this.setReady();
        break;
      }
      if (Date.now() - started > this.o.startTimeoutMs) {
        this.lastError = `SD simulator did not answer within ${this.o.startTimeoutMs} ms`;
        this.o.logger.error({ pid: child.pid }, this.lastError);
        child.kill('SIGKILL');
        break;
      }
      await sleep(POLL_MS);
    }
    const exit = await exited;
    this.setNotReady(`SD simulator exited (code ${exit.code}, signal ${exit.signal})`);
    return exit;
  }
}
