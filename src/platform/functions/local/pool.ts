import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { instanceLogFile, instanceLogsDir } from '../../../data-dir.js';
import { errorMessage, freePort, sleep } from '../../../http-util.js';
import type { Logger } from '../../../logging.js';
import { AGENT_PATHS, type AgentHealth } from '../../../protocol/agent-http.js';
import { localInstanceEnv } from '../instance-env.js';
import { FunctionNotFoundError, type RuntimeFunction } from '../port.js';
import { isAlive, isInstanceProcess, signalGroup, stopGroup } from './processes.js';
import { type FunctionEntry, type InstanceRecord, RuntimeState } from './state.js';

// The local runtime's instances, FC-style: each instance (an agent process with its SD backend, in its own process
// group) serves one request at a time. Instances are spawned on demand up to a per-function maximum, handed out
// FIFO, reaped after a keep-alive, and recorded in the data dir so a restarted runtime re-adopts them. A function's
// minInstances are kept started (replaced when they die, never reaped), and a pre-warm starts instances ahead of a
// burst, which then idle under the keep-alive like any other.

const CLI = fileURLToPath(new URL('../../../cli/main.js', import.meta.url));
const STOP_GRACE_MS = 5000;
const SWEEP_MS = 250;
const HEALTH_TIMEOUT_MS = 2000;

export interface PoolOptions {
  dataDir: string;
  maxInstances: number;
  keepAliveS: number;
  /** After a kept-warm instance failed to start or died, the next one starts no sooner than this. */
  warmRetryMs: number;
  startTimeoutMs: number;
  queueTimeoutMs: number;
  logger: Logger;
}

type InstanceState = 'starting' | 'idle' | 'busy' | 'stopping';

/**
 * An instance's time, in ms, by state: starting (its cold start), busy (active) and idle, over the periods that have
 * ended, and how many invokes took it. Stopping is not counted: FC stops billing an instance it reclaims.
 */
export interface UsageMs {
  coldStartMs: number;
  activeMs: number;
  idleMs: number;
  invokes: number;
}

const noUsage = (): UsageMs => ({ coldStartMs: 0, activeMs: 0, idleMs: 0, invokes: 0 });

/** Which counter a state's time goes to. */
const COUNTER: Partial<Record<InstanceState, 'coldStartMs' | 'activeMs' | 'idleMs'>> = {
  starting: 'coldStartMs',
  busy: 'activeMs',
  idle: 'idleMs',
};

/** Seconds with millisecond precision, as usage is reported. */
const seconds = (ms: number) => Math.round(ms) / 1000;

/** Usage in seconds, as the runtime reports it. */
export function usageSeconds(usage: UsageMs) {
  return {
    coldStartS: seconds(usage.coldStartMs),
    activeS: seconds(usage.activeMs),
    idleS: seconds(usage.idleMs),
    invokes: usage.invokes,
  };
}

export interface Instance extends InstanceRecord {
  state: InstanceState;
  /** Set for instances this process spawned; re-adopted ones are watched through their pid. */
  child?: ChildProcess;
  adopted: boolean;
  idleSince: number;
  /** Stop instead of going idle (restart, changed spec, deleted function, broken stream). */
  recycle: boolean;
  /** Resolves when the instance's process is gone. */
  gone: Promise<void>;
  markGone: () => void;
  /** How the agent process ended, when it was seen to. */
  exit?: string;
  /** When the current state began (epoch ms): its time goes to `usage` when it ends. */
  since: number;
  usage: UsageMs;
  /** The cold start no invoke has been charged yet: its first invoke carries it. */
  unchargedColdStartMs: number;
  /** The current invoke's share of the instance, set when one takes it. */
  invoke?: { takenAt: number; idleMs: number; coldStartMs: number };
}

interface Waiter {
  functionName: string;
  resolve: (instance: Instance) => void;
  reject: (err: Error) => void;
  cleanup: () => void;
}

/** The runtime could not provide an instance: spawning failed, the queue timed out, or the runtime is stopping. */
export class InstanceUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InstanceUnavailableError';
  }
}

/** The instance started for the request failed to start: the function's fault, not the runtime's. */
export class InstanceStartError extends InstanceUnavailableError {
  constructor(message: string) {
    super(message);
    this.name = 'InstanceStartError';
  }
}

interface Health {
  status: number;
  instanceId?: string;
}

async function health(port: number): Promise<Health | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${AGENT_PATHS.healthz}`, {
      signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS),
    });
    const body = (await res.json().catch(() => ({}))) as Partial<AgentHealth>;
    return { status: res.status, instanceId: body.instanceId };
  } catch {
    return undefined;
  }
}

async function initialize(port: number, timeoutMs: number): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${port}${AGENT_PATHS.initialize}`, {
    method: 'POST',
    signal: AbortSignal.timeout(Math.max(timeoutMs, 1)),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`initialize answered ${res.status}: ${text.slice(0, 300)}`);
}

/** What an instance is spawned with: changing it means new instances. */
function spawnSpec(fn: FunctionEntry): string {
  const { env, extraArgs, sdOptions } = fn.resources;
  return JSON.stringify([fn.model, env ?? null, extraArgs ?? null, sdOptions ?? null]);
}

/** Which instances give way first when a function's maximum is lowered: idle, then starting, then busy. */
function rank(instance: Instance): number {
  return instance.state === 'idle' ? 0 : instance.state === 'starting' ? 1 : 2;
}

function logTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-800);
  } catch {
    return '';
  }
}

/**
 * Stops the instances recorded in the data dir that still run, and clears the record: what a runtime that died
 * without stopping them (it crashed, or was killed) left for a successor, when no successor is coming. Returns how
 * many it stopped.
 */
export async function stopRecordedInstances(dataDir: string): Promise<number> {
  const state = new RuntimeState(dataDir);
  const running: InstanceRecord[] = [];
  for (const record of state.readInstances()) {
    // A dead agent's simulator may survive in its group, which no other process can have joined.
    if (!isAlive(record.pid)) signalGroup(record.pid, 'SIGKILL');
    else if (isInstanceProcess(record.pid, record.id)) running.push(record);
  }
  await Promise.all(running.map((record) => stopGroup(record.pid, STOP_GRACE_MS)));
  state.writeInstances([]);
  return running.length;
}

export class InstancePool {
  private readonly functions = new Map<string, FunctionEntry>();
  private readonly instances = new Map<string, Instance>();
  private waiters: Waiter[] = [];
  /** Per function: no instance is started for its minInstances before this time (epoch ms), after a failure. */
  private readonly warmRetryAt = new Map<string, number>();
  /** The usage of each function's instances that are gone. */
  private readonly retired = new Map<string, UsageMs>();
  private readonly state: RuntimeState;
  private sweeper?: NodeJS.Timeout;
  private closing = false;
  /** Until the recorded instances are all re-adopted or reaped, the old record stays as it is. */
  private loaded = false;

  constructor(private readonly options: PoolOptions) {
    this.state = new RuntimeState(options.dataDir);
    mkdirSync(instanceLogsDir(options.dataDir), { recursive: true });
  }

  /** Loads the recorded functions, then re-adopts or reaps every recorded instance. */
  async start(): Promise<void> {
    for (const entry of this.state.readFunctions()) this.functions.set(entry.functionName, entry);
    const records = this.state.readInstances();
    await Promise.all(records.map((record) => this.adoptOrReap(record)));
    this.loaded = true;
    this.persistInstances();
    for (const fn of this.functions.values()) this.keepWarm(fn);
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
  }

  private async adoptOrReap(record: InstanceRecord): Promise<void> {
    const log = this.options.logger.child({
      instanceId: record.id,
      functionName: record.functionName,
      pid: record.pid,
    });
    if (!isAlive(record.pid)) {
      // The agent is gone; its simulator may survive in the group, which no other process can have joined.
      signalGroup(record.pid, 'SIGKILL');
      log.info('dropped the record of a dead instance');
      return;
    }
    if (!isInstanceProcess(record.pid, record.id)) {
      log.warn('recorded pid now belongs to another process; dropped the record and left that process alone');
      return;
    }
    const fn = this.functions.get(record.functionName);
    const answer = await health(record.port);
    if (answer?.instanceId !== record.id || !fn || fn.model !== record.model) {
      log.warn({ answered: answer?.instanceId ?? null }, 'stopping a recorded instance that cannot be re-adopted');
      await stopGroup(record.pid, STOP_GRACE_MS);
      return;
    }
    const instance = this.newInstance(record);
    instance.adopted = true;
    this.instances.set(instance.id, instance);
    try {
      await this.waitReady(instance, Date.now() + this.options.startTimeoutMs);
      this.ready(instance);
      log.info({ port: record.port }, 're-adopted instance');
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 're-adopted instance did not become ready; stopping it');
      await this.stop(instance);
    }
  }

  private newInstance(record: InstanceRecord): Instance {
    let markGone!: () => void;
    const gone = new Promise<void>((resolve) => {
      markGone = resolve;
    });
    const now = Date.now();
    return {
      ...record,
      state: 'starting',
      adopted: false,
      idleSince: now,
      recycle: false,
      gone,
      markGone,
      since: now,
      usage: noUsage(),
      unchargedColdStartMs: 0,
    };
  }

  // --- accounting ---

  /** Moves an instance to `state` at `at`, adding the time of the state it leaves to its usage. */
  private enter(instance: Instance, state: InstanceState, at = Date.now()): void {
    const counter = COUNTER[instance.state];
    if (counter) instance.usage[counter] += Math.max(0, at - instance.since);
    instance.state = state;
    instance.since = at;
  }

  /** A started instance is ready: idle, with its cold start waiting for its first invoke. */
  private ready(instance: Instance): void {
    this.enter(instance, 'idle');
    instance.idleSince = instance.since;
    instance.unchargedColdStartMs = instance.usage.coldStartMs;
  }

  /** Hands an idle instance to a request: the idle time before it, and any uncharged cold start, are the request's. */
  private take(instance: Instance): void {
    const at = Date.now();
    instance.invoke = { takenAt: at, idleMs: at - instance.since, coldStartMs: instance.unchargedColdStartMs };
    instance.unchargedColdStartMs = 0;
    instance.usage.invokes++;
    this.enter(instance, 'busy', at);
  }

  /** The current invoke's part of its instance, up to `at` (when its result came). */
  invokeUsage(instance: Instance, at: number): { coldStartS: number; activeS: number; idleS: number } {
    const invoke = instance.invoke ?? { takenAt: at, idleMs: 0, coldStartMs: 0 };
    return {
      coldStartS: seconds(invoke.coldStartMs),
      activeS: seconds(at - invoke.takenAt),
      idleS: seconds(invoke.idleMs),
    };
  }

  /** Forgets an instance, keeping its usage in its function's totals. */
  private forget(instance: Instance): void {
    if (this.instances.get(instance.id) !== instance) return;
    this.instances.delete(instance.id);
    const total = this.retired.get(instance.functionName) ?? noUsage();
    for (const key of Object.keys(total) as (keyof UsageMs)[]) total[key] += instance.usage[key];
    this.retired.set(instance.functionName, total);
  }

  /** A function's usage so far: its retired instances', and its live ones' including their current state. */
  private functionUsage(name: string, live: Instance[]): UsageMs {
    const total = { ...(this.retired.get(name) ?? noUsage()) };
    const now = Date.now();
    for (const instance of live) {
      for (const key of Object.keys(total) as (keyof UsageMs)[]) total[key] += instance.usage[key];
      const counter = COUNTER[instance.state];
      if (counter) total[counter] += Math.max(0, now - instance.since);
    }
    return total;
  }

  // --- functions ---

  /**
   * Creates or updates a function. Instances carry the model, env and extraArgs they were spawned with, so a change
   * to those replaces them (idle ones now, busy ones after their request). Limits (maxInstances, keepAliveS, timeout)
   * apply at once to the running instances; every other resource is only recorded.
   */
  putFunction(entry: FunctionEntry): FunctionEntry {
    const previous = this.functions.get(entry.functionName);
    this.functions.set(entry.functionName, entry);
    this.persistFunctions();
    if (previous && spawnSpec(previous) !== spawnSpec(entry)) this.recycle(entry.functionName);
    else this.trimToLimit(entry);
    this.pump(entry.functionName);
    return entry;
  }

  /** Instances beyond a lowered maxInstances: idle ones stop now, busy and starting ones after their request. */
  private trimToLimit(fn: FunctionEntry): void {
    const mine = [...this.instances.values()].filter(
      (i) => i.functionName === fn.functionName && i.state !== 'stopping' && !i.recycle,
    );
    let excess = mine.length - this.maxInstances(fn);
    const byUrgency = [...mine].sort((a, b) => rank(a) - rank(b));
    for (const instance of byUrgency) {
      if (excess <= 0) break;
      excess--;
      instance.recycle = true;
      if (instance.state === 'idle') void this.stop(instance);
    }
  }

  getFunction(name: string): FunctionEntry | undefined {
    return this.functions.get(name);
  }

  deleteFunction(name: string): boolean {
    if (!this.functions.delete(name)) return false;
    this.warmRetryAt.delete(name);
    this.persistFunctions();
    this.recycle(name);
    for (const waiter of this.waiters.filter((w) => w.functionName === name)) {
      this.dropWaiter(waiter);
      waiter.reject(new FunctionNotFoundError(name));
    }
    return true;
  }

  /** Recycles instances: idle ones stop now, busy and starting ones once their request is done. */
  recycle(name?: string): void {
    for (const instance of this.instances.values()) {
      if (name !== undefined && instance.functionName !== name) continue;
      if (instance.state === 'stopping') continue;
      instance.recycle = true;
      if (instance.state === 'idle') void this.stop(instance);
    }
  }

  describe(name: string): RuntimeFunction | undefined {
    const fn = this.functions.get(name);
    if (!fn) return undefined;
    const live = [...this.instances.values()].filter((i) => i.functionName === name);
    const instances = live.map((i) => ({
      id: i.id,
      busy: i.state === 'busy',
      startedAt: i.startedAt,
      state: i.state,
      pid: i.pid,
      port: i.port,
      // The periods that have ended; the current state's began at `stateSince`.
      usage: usageSeconds(i.usage),
      stateSince: new Date(i.since).toISOString(),
    }));
    const timeoutS = this.timeoutS(name);
    return {
      functionName: fn.functionName,
      model: fn.model,
      resources: fn.resources,
      // The limits in effect: the function's own, else the runtime's defaults.
      limits: {
        maxInstances: this.maxInstances(fn),
        keepAliveS: this.keepAliveMs(fn) / 1000,
        minInstances: this.minInstances(fn),
        ...(timeoutS === undefined ? {} : { timeoutS }),
      },
      instances,
      usage: usageSeconds(this.functionUsage(name, live)),
    };
  }

  list(): RuntimeFunction[] {
    return [...this.functions.keys()].map((name) => this.describe(name)!);
  }

  counts(): { functions: number; instances: number } {
    return { functions: this.functions.size, instances: this.instances.size };
  }

  // --- handing out instances ---

  private maxInstances(fn: FunctionEntry): number {
    const max = Number(fn.resources.maxInstances);
    return Number.isInteger(max) && max >= 1 ? max : this.options.maxInstances;
  }

  /** Instances kept started whatever the keep-alive says: the function's minInstances, within its maximum. */
  private minInstances(fn: FunctionEntry): number {
    const min = Number(fn.resources.minInstances);
    return Number.isInteger(min) && min > 0 ? Math.min(min, this.maxInstances(fn)) : 0;
  }

  /** The function's cap on one request, in seconds, when it has one. */
  timeoutS(name: string): number | undefined {
    const timeout = Number(this.functions.get(name)?.resources.timeout);
    return Number.isFinite(timeout) && timeout > 0 ? timeout : undefined;
  }

  private keepAliveMs(fn: FunctionEntry | undefined): number {
    const keepAlive = Number(fn?.resources.keepAliveS);
    return (Number.isFinite(keepAlive) && keepAlive >= 0 ? keepAlive : this.options.keepAliveS) * 1000;
  }

  /** An idle instance of the function, taken at once, or undefined. */
  tryAcquire(name: string): Instance | undefined {
    if (!this.functions.has(name)) throw new FunctionNotFoundError(name);
    if (this.waiters.some((w) => w.functionName === name)) return undefined;
    const instance = this.idleInstance(name);
    if (instance) this.take(instance);
    return instance;
  }

  /** Takes an instance exclusively, waiting FIFO behind earlier requests and spawning one when under the maximum. */
  acquire(name: string, signal: AbortSignal): Promise<Instance> {
    if (this.closing) return Promise.reject(new InstanceUnavailableError('the runtime is stopping'));
    if (!this.functions.has(name)) return Promise.reject(new FunctionNotFoundError(name));
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<Instance>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.dropWaiter(waiter);
        reject(
          new InstanceUnavailableError(`no instance of ${name} became free within ${this.options.queueTimeoutMs} ms`),
        );
      }, this.options.queueTimeoutMs);
      const onAbort = () => {
        this.dropWaiter(waiter);
        reject(signal.reason ?? new Error('aborted'));
      };
      const waiter: Waiter = {
        functionName: name,
        resolve,
        reject,
        cleanup: () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
      this.pump(name);
    });
  }

  /**
   * Gives a finished request's instance back, active until `at` (its result, when the stream's end came later): idle
   * again, or stopped when it is to be recycled.
   */
  release(instance: Instance, at = Date.now()): void {
    if (this.instances.get(instance.id) !== instance || instance.state !== 'busy') return;
    instance.invoke = undefined;
    this.enter(instance, 'idle', at);
    instance.idleSince = at;
    if (instance.recycle || this.closing) {
      void this.stop(instance);
      return;
    }
    this.pump(instance.functionName);
  }

  /** Marks an instance as untrustworthy (it broke a stream): it is stopped instead of reused. */
  discard(instance: Instance): void {
    instance.recycle = true;
    this.release(instance);
  }

  /** The instance's exit, if it ends within `ms`. */
  async exitOf(instance: Instance, ms: number): Promise<string | undefined> {
    await Promise.race([instance.gone, sleep(ms)]);
    return instance.exit;
  }

  private idleInstance(name: string): Instance | undefined {
    for (const instance of this.instances.values()) {
      if (instance.functionName === name && instance.state === 'idle' && !instance.recycle) return instance;
    }
    return undefined;
  }

  private dropWaiter(waiter: Waiter): void {
    waiter.cleanup();
    this.waiters = this.waiters.filter((w) => w !== waiter);
  }

  /** Serves the function's waiters from idle instances, then spawns for those still waiting, up to the maximum. */
  private pump(name: string): void {
    if (this.closing) return;
    const fn = this.functions.get(name);
    if (!fn) return;
    for (let instance = this.idleInstance(name); instance; instance = this.idleInstance(name)) {
      const waiter = this.waiters.find((w) => w.functionName === name);
      if (!waiter) break;
      this.dropWaiter(waiter);
      this.take(instance);
      waiter.resolve(instance);
    }
    const waiting = this.waiters.filter((w) => w.functionName === name).length;
    const mine = [...this.instances.values()].filter((i) => i.functionName === name && i.state !== 'stopping');
    let starting = mine.filter((i) => i.state === 'starting' && !i.recycle).length;
    let live = mine.length;
    while (waiting > starting && live < this.maxInstances(fn)) {
      starting++;
      live++;
      void this.spawnInstance(fn);
    }
    this.keepWarm(fn);
  }

  /** Starts instances until the function has `wanted` (busy, idle or starting; recycled ones aside), within its maximum. */
  private startUpTo(fn: FunctionEntry, wanted: number): number {
    const mine = [...this.instances.values()].filter(
      (i) => i.functionName === fn.functionName && i.state !== 'stopping',
    );
    let kept = mine.filter((i) => !i.recycle).length;
    let live = mine.length;
    let started = 0;
    while (kept < wanted && live < this.maxInstances(fn)) {
      kept++;
      live++;
      started++;
      void this.spawnInstance(fn);
    }
    return started;
  }

  /** Keeps the function's minInstances started, unless one failed lately (then it waits for warmRetryMs). */
  private keepWarm(fn: FunctionEntry): void {
    if (this.closing || !this.loaded) return;
    if ((this.warmRetryAt.get(fn.functionName) ?? 0) > Date.now()) return;
    this.startUpTo(fn, this.minInstances(fn));
  }

  /**
   * Starts instances until the function has `instances` of them, without a request: a burst is coming. They idle
   * under the keep-alive until a request takes them. Returns how many it started.
   */
  prewarm(name: string, instances: number): number {
    const fn = this.functions.get(name);
    if (!fn) throw new FunctionNotFoundError(name);
    if (this.closing) return 0;
    return this.startUpTo(fn, instances);
  }

  private delayWarm(name: string): void {
    this.warmRetryAt.set(name, Date.now() + this.options.warmRetryMs);
  }

  // --- instance lifecycle ---

  private persistInstances(): void {
    if (!this.loaded) return;
    this.state.writeInstances(
      [...this.instances.values()]
        .filter((i) => i.pid > 0)
        .map(({ id, functionName, model, pid, port, startedAt }) => ({
          id,
          functionName,
          model,
          pid,
          port,
          startedAt,
        })),
    );
  }

  private persistFunctions(): void {
    this.state.writeFunctions([...this.functions.values()]);
  }

  private async spawnInstance(fn: FunctionEntry): Promise<void> {
    const id = `i-${randomBytes(6).toString('hex')}`;
    const log = this.options.logger.child({ functionName: fn.functionName, instanceId: id });
    const spawnedAt = Date.now();
    const instance = this.newInstance({
      id,
      functionName: fn.functionName,
      model: fn.model,
      pid: 0,
      port: 0,
      startedAt: new Date(spawnedAt).toISOString(),
    });
    this.instances.set(id, instance);
    try {
      await this.boot(instance, fn, log);
      this.ready(instance);
      log.info({ coldStartMs: instance.usage.coldStartMs, pid: instance.pid, port: instance.port }, 'instance ready');
      if (instance.recycle || this.closing) void this.stop(instance);
      else this.pump(fn.functionName);
    } catch (err) {
      const message = `instance ${id} of ${fn.functionName} failed to start: ${errorMessage(err)}`;
      log.error({ err: errorMessage(err), log: logTail(instanceLogFile(this.options.dataDir, id)) }, message);
      this.delayWarm(fn.functionName);
      // One failed spawn fails the oldest waiter, so a broken function cannot hold requests until they time out.
      const waiter = this.waiters.find((w) => w.functionName === fn.functionName);
      if (waiter) {
        this.dropWaiter(waiter);
        waiter.reject(new InstanceStartError(message));
      }
      await this.stop(instance);
    }
  }

  /** Spawns the agent and waits until it is initialized; retries once on another port if it exits at once. */
  private async boot(instance: Instance, fn: FunctionEntry, log: Logger): Promise<void> {
    const deadline = Date.now() + this.options.startTimeoutMs;
    for (let attempt = 1; ; attempt++) {
      instance.port = await freePort();
      if (instance.state === 'stopping') throw new Error('stopped while starting');
      this.launch(instance, fn);
      this.persistInstances();
      const outcome = await this.waitReady(instance, deadline);
      if (outcome === 'ready') return;
      if (attempt >= 2) throw new Error(`agent exited before answering (${instance.exit}), twice`);
      log.warn({ port: instance.port, exit: instance.exit }, 'agent exited before answering; retrying on another port');
    }
  }

  private launch(instance: Instance, fn: FunctionEntry): void {
    const logFile = instanceLogFile(this.options.dataDir, instance.id);
    const fd = openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, [CLI, 'agent'], {
        // Its own process group, so the agent and its simulator stop together and outlive a crashed runtime (a
        // runtime whose launcher is gone stops them: see `serve` in cli/main.ts).
        detached: true,
        stdio: ['ignore', fd, fd],
        env: localInstanceEnv(process.env, { ...fn, id: instance.id, port: instance.port }, this.options.dataDir),
      });
    } finally {
      closeSync(fd);
    }
    if (child.pid === undefined) throw new Error(`could not spawn the agent (${process.execPath} ${CLI})`);
    instance.child = child;
    instance.pid = child.pid;
    instance.exit = undefined;
    child.once('exit', (code, signal) => {
      instance.exit = signal ? `signal ${signal}` : `code ${code}`;
      if (instance.child === child) this.onExit(instance);
    });
  }

  /**
   * Waits for healthz 200 then a successful /initialize. 'exited-early' when the agent process ended before it ever
   * answered (typically its port was taken); throws when it ends later or the deadline passes.
   */
  private async waitReady(instance: Instance, deadline: number): Promise<'ready' | 'exited-early'> {
    let answered = false;
    for (;;) {
      if (instance.exit !== undefined || !isAlive(instance.pid)) {
        if (!answered) return 'exited-early';
        throw new Error(`agent exited while starting (${instance.exit ?? 'gone'})`);
      }
      if (Date.now() > deadline) throw new Error(`not ready within ${this.options.startTimeoutMs} ms`);
      const answer = await health(instance.port);
      if (answer) {
        answered = true;
        if (answer.instanceId !== instance.id) {
          throw new Error(`port ${instance.port} answers as instance ${answer.instanceId}, not ${instance.id}`);
        }
        if (answer.status === 200) break;
      }
      await sleep(answered ? 100 : 50);
    }
    await initialize(instance.port, deadline - Date.now());
    return 'ready';
  }

  /**
   * A ready agent's process ended: forget it and clear what is left of its group. A starting agent's exit is handled
   * by its start (retry or failure), a stopping one's by `stop`.
   */
  private onExit(instance: Instance): void {
    if (this.instances.get(instance.id) !== instance) return;
    if (instance.state === 'idle' || instance.state === 'busy') {
      instance.markGone();
      this.options.logger.warn(
        { instanceId: instance.id, functionName: instance.functionName, state: instance.state, exit: instance.exit },
        'instance exited unexpectedly',
      );
      this.delayWarm(instance.functionName);
      signalGroup(instance.pid, 'SIGKILL');
      this.enter(instance, 'stopping');
      this.forget(instance);
      this.persistInstances();
      this.pump(instance.functionName);
    }
  }

  /** Stops an instance's process group (SIGTERM, then SIGKILL after a grace) and forgets it once it is gone. */
  async stop(instance: Instance): Promise<void> {
    if (instance.state === 'stopping') return instance.gone;
    this.enter(instance, 'stopping');
    if (instance.pid > 0) {
      const stopped = await stopGroup(instance.pid, STOP_GRACE_MS);
      if (!stopped)
        this.options.logger.error({ instanceId: instance.id, pid: instance.pid }, 'instance group survived SIGKILL');
    }
    instance.markGone();
    if (this.instances.get(instance.id) === instance) {
      this.forget(instance);
      this.persistInstances();
    }
    this.options.logger.info({ instanceId: instance.id, functionName: instance.functionName }, 'instance stopped');
    this.pump(instance.functionName);
  }

  /** Keep-alive reaping, and death detection for re-adopted instances (which are not our children). */
  private sweep(): void {
    const now = Date.now();
    for (const instance of this.instances.values()) {
      if (
        instance.state === 'idle' &&
        now - instance.idleSince > this.keepAliveMs(this.functions.get(instance.functionName)) &&
        this.aboveFloor(instance.functionName)
      ) {
        this.options.logger.info(
          { instanceId: instance.id, functionName: instance.functionName },
          'keep-alive expired',
        );
        void this.stop(instance);
      } else if (
        instance.adopted &&
        (instance.state === 'idle' || instance.state === 'busy') &&
        !isAlive(instance.pid)
      ) {
        instance.exit = 'gone';
        this.onExit(instance);
      }
    }
    // A kept-warm instance that failed is replaced once its retry delay is over.
    for (const fn of this.functions.values()) this.keepWarm(fn);
  }

  /** Whether the function has more started instances than its minInstances, so an idle one may be reaped. */
  private aboveFloor(name: string): boolean {
    const fn = this.functions.get(name);
    if (!fn) return true;
    const kept = [...this.instances.values()].filter(
      (i) => i.functionName === name && i.state !== 'stopping' && !i.recycle,
    ).length;
    return kept > this.minInstances(fn);
  }

  /** Stops every instance and clears the record: nothing is left running. */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.sweeper);
    for (const waiter of [...this.waiters]) {
      this.dropWaiter(waiter);
      waiter.reject(new InstanceUnavailableError('the runtime is stopping'));
    }
    await Promise.all([...this.instances.values()].map((instance) => this.stop(instance)));
    this.state.writeInstances([]);
  }

  /** Last resort when close() cannot finish before the runtime exits: SIGKILLs every instance's group at once. */
  kill(): void {
    for (const instance of this.instances.values()) signalGroup(instance.pid, 'SIGKILL');
    this.state.writeInstances([]);
  }
}
