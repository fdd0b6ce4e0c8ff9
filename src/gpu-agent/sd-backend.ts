import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { errorMessage, freePort, sleep } from '../http-util.js';
import type { Logger } from '../logging.js';

// The SD backend next to the agent, one of three:
// - a WebUI the agent starts itself (SDFLOW_SD_COMMAND, e.g. A1111 with `--api --nowebui` on a loopback port): the
//   agent waits until it answers at SDFLOW_SD_URL and starts it again whenever it dies;
// - a WebUI someone else runs at SDFLOW_SD_URL, which the agent only waits for;
// - otherwise the simulator, which the agent runs and restarts the same way as a started WebUI.
// A started child stays in the agent's process group, so stopping the instance's group stops both. Stopping the
// child also stops its descendants (the WebUI under a shell, the WebUI's helpers).

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const POLL_MS = 100;
const MAX_RESTART_BACKOFF_MS = 10_000;
/** How long a stopping child has between SIGTERM and SIGKILL. */
const STOP_GRACE_MS = 5000;

export interface SdBackendOptions {
  /** A real WebUI: the one the agent starts with `command`, or one that runs on its own. */
  sdUrl?: string;
  /** The WebUI to start and supervise, as an argv; it must answer at `sdUrl`. */
  command?: string[];
  /** The simulator's model directory, when the agent runs the simulator. */
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

/** `pid` and its descendants (found through /proc on Linux; elsewhere only `pid`), parents first. */
function processTree(pid: number): number[] {
  if (process.platform !== 'linux') return [pid];
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // The fields after the parenthesised command name: state, then the parent's pid.
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
    } catch {
      // The process ended while we looked.
    }
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]) ?? []));
  return tree;
}

function signalAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  }
}

/** A started backend process: what it is, where it answers, and how it ended. */
interface Launch {
  what: string;
  child: ChildProcess;
  url: string;
}

interface Exit {
  code: number | null;
  signal: string | null;
  ranMs: number;
}

export class SdBackend {
  url: string;
  ready = false;
  lastError = 'SD is starting';
  private readyGate = gate();
  private child?: ChildProcess;
  private closed = false;
  private readonly killOnExit = () => {
    const child = this.child;
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      signalAll(processTree(child.pid), 'SIGKILL');
    }
  };

  constructor(private readonly options: SdBackendOptions) {
    if (options.command && !options.sdUrl) throw new Error('a WebUI started by the agent needs the URL it answers at');
    this.url = options.sdUrl ?? '';
  }

  /** Starts (or starts waiting for) the backend; readiness is reported through `ready` and `whenReady`. */
  start(): void {
    process.once('exit', this.killOnExit);
    if (this.options.command) void this.supervise(() => this.launchCommand(this.options.command!));
    else if (this.options.sdUrl) void this.waitForExternal();
    else void this.supervise(() => this.launchSimulator());
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

  /**
   * A call found the WebUI at SDFLOW_SD_URL unreachable: wait for it to answer again. A started WebUI that died is
   * also restarted by its supervision; the simulator's exit is noticed by its supervision alone.
   */
  markUnreachable(reason: string): void {
    if (!this.options.sdUrl || !this.ready || this.closed) return;
    this.options.logger.warn({ url: this.url, reason }, 'SD backend unreachable; waiting for it');
    this.setNotReady(reason);
    void this.waitForExternal();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.setNotReady('closing');
    process.off('exit', this.killOnExit);
    const child = this.child;
    if (!child || child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const tree = processTree(child.pid);
    signalAll(tree, 'SIGTERM');
    const timer = setTimeout(() => signalAll(tree, 'SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }

  private setReady(): void {
    if (this.ready) return;
    this.ready = true;
    this.lastError = '';
    this.readyGate.open();
    this.options.onReady?.();
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
    while (!this.closed && !this.ready) {
      if (await answers(this.url)) {
        this.options.logger.info({ url: this.url, waitedMs: Date.now() - started }, 'SD backend ready');
        this.setReady();
        return;
      }
      if (!warned && Date.now() - started > this.options.startTimeoutMs) {
        warned = true;
        this.lastError = `SD at ${this.url} has not answered for ${this.options.startTimeoutMs} ms`;
        this.options.logger.error({ url: this.url }, this.lastError);
      }
      await sleep(POLL_MS * 5);
    }
  }

  /** Runs the backend `launch` starts, starting it again whenever it dies, until the agent closes. */
  private async supervise(launch: () => Promise<Launch>): Promise<void> {
    let backoffMs = 500;
    while (!this.closed) {
      const started = await launch();
      const exit = await this.runOnce(started);
      if (this.closed) return;
      this.options.logger.error({ exit, url: started.url }, `${started.what} exited; restarting it`);
      // A backend that ran a while died of something new: restart it quickly. One that keeps dying backs off.
      if (exit.ranMs > 60_000) backoffMs = 500;
      await sleep(backoffMs);
      backoffMs = Math.min(backoffMs * 2, MAX_RESTART_BACKOFF_MS);
    }
  }

  private async launchSimulator(): Promise<Launch> {
    const port = await freePort();
    const child = spawn(
      process.execPath,
      [CLI, 'sim', '--port', String(port), '--models-dir', this.options.modelsDir],
      {
        stdio: ['ignore', 'inherit', 'inherit'],
        env: process.env,
      },
    );
    return { what: 'SD simulator', child, url: `http://127.0.0.1:${port}` };
  }

  private async launchCommand(argv: string[]): Promise<Launch> {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'inherit', 'inherit'], env: process.env });
    this.options.logger.info({ command: argv, pid: child.pid, url: this.options.sdUrl }, 'starting the WebUI');
    return { what: 'WebUI', child, url: this.options.sdUrl! };
  }

  /** Waits for the started backend to answer (killing it if it does not in time), then resolves when it exits. */
  private async runOnce({ what, child, url }: Launch): Promise<Exit> {
    const started = Date.now();
    this.child = child;
    this.url = url;
    const exited = new Promise<Exit>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal, ranMs: Date.now() - started }));
      child.once('error', (err) => {
        this.options.logger.error({ err: errorMessage(err) }, `could not start the ${what}`);
        resolve({ code: null, signal: null, ranMs: Date.now() - started });
      });
    });
    let running = true;
    void exited.then(() => {
      running = false;
    });
    while (running && !this.closed) {
      if (await answers(url)) {
        this.options.logger.info({ url, pid: child.pid, startMs: Date.now() - started }, `${what} ready`);
        this.setReady();
        break;
      }
      if (Date.now() - started > this.options.startTimeoutMs) {
        this.lastError = `${what} did not answer at ${url} within ${this.options.startTimeoutMs} ms`;
        this.options.logger.error({ pid: child.pid }, this.lastError);
        if (child.pid !== undefined) signalAll(processTree(child.pid), 'SIGKILL');
        break;
      }
      await sleep(POLL_MS);
    }
    const exit = await exited;
    this.setNotReady(`${what} exited (code ${exit.code}, signal ${exit.signal})`);
    return exit;
  }
}
