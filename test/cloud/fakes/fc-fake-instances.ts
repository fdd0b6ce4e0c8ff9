import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CLI_MAIN } from '../../../src/cli/processes.js';
import { errorMessage, freePort, sleep } from '../../../src/http-util.js';
import { isAlive, stopGroup } from '../../../src/platform/functions/local/processes.js';
import type { FakeCredentials } from './fc-fake-signature.js';

// The FC fake's function instances: each one a real `sdflow agent` process (compiled, from dist/) in its own process
// group, started on demand, as FC starts a container of the function's image.
//
// How a container is emulated:
// - The image: every image runs the local build. The container's command (entrypoint + command) must end in the
//   agent (`… agent`); anything else fails to start, as a wrong command would on FC.
// - The environment: the fake's `imageEnv` (what an image bakes in, e.g. the simulator's stats dir for tests), then
//   the function's environmentVariables, then what FC adds: the role's credentials as ALIBABA_CLOUD_* when the
//   function has a role (FC injects the role's temporary credentials so), and FC_FUNCTION_NAME / FC_INSTANCE_ID.
// - The network: the container's port is mapped to a free port of this host, so SDFLOW_AGENT_PORT is rewritten to
//   it and the agent listens on 127.0.0.1 (a container's 0.0.0.0 is its own network namespace).
// - The filesystem: each instance has its own root directory. OSS mounts (ossMountConfig) are materialised there when
//   the instance starts: the objects of the mounted bucket under bucketPath are copied to <root><mountDir> (read-only
//   files for readOnly mounts) from the `buckets` the fake was given (e.g. the OSS fake's storage). That is a snapshot
//   taken at the instance's start, where a real mount is live; a model registered later shows in instances started
//   later. NAS mounts become empty directories. SDFLOW_DATA_DIR, a path in the container, is rewritten to the same
//   path under the root: the one path the agent reads that the mounts serve.
// - The initializer: when the function has instanceLifecycleConfig.initializer, FC POSTs /initialize to a custom
//   container once, before its first request; an instance whose initializer fails is not used.

/** A bucket the fake can mount: its keys under a prefix, and an object's bytes. */
export interface BucketSource {
  list(prefix: string): string[];
  read(key: string): Buffer;
}

export interface InstanceOptions {
  dir: string;
  /** Instances per function, at most. */
  maxPerFunction: number;
  startTimeoutMs: number;
  imageEnv: Record<string, string>;
  /** The role's current credentials, which FC injects into instances of a function with a role as they start. */
  roleCredentials: () => FakeCredentials | undefined;
  buckets: Record<string, BucketSource>;
}

/** What an instance is started from: the function's configuration when it started. */
export interface FunctionSnapshot {
  functionName: string;
  revision: number;
  config: Record<string, unknown>;
}

export interface Instance {
  id: string;
  functionName: string;
  revision: number;
  port: number;
  pid: number;
  state: 'starting' | 'ready' | 'stopping';
  /** Requests it is serving. */
  inFlight: number;
  concurrency: number;
  /** Started from an older configuration: it finishes its requests, then stops. */
  stale: boolean;
  logFile: string;
  exited: boolean;
}

interface Waiter {
  functionName: string;
  resolve: (instance: Instance) => void;
  reject: (err: Error) => void;
}

const STOP_GRACE_MS = 3000;

function argvOf(config: Record<string, unknown>): string[] {
  const container = (config.customContainerConfig ?? {}) as { entrypoint?: string[]; command?: string[] };
  return [...(container.entrypoint ?? []), ...(container.command ?? [])];
}

function logTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-600);
  } catch {
    return '';
  }
}

export class FakeInstances {
  private readonly instances = new Map<string, Instance>();
  private readonly functions = new Map<string, FunctionSnapshot>();
  private waiters: Waiter[] = [];
  private closing = false;
  /** Instances ever started, in order, for assertions. */
  readonly started: Instance[] = [];

  constructor(private readonly o: InstanceOptions) {
    mkdirSync(join(o.dir, 'logs'), { recursive: true });
  }

  /** The function as it is now: instances started from an older revision are retired. */
  setFunction(snapshot: FunctionSnapshot): void {
    this.functions.set(snapshot.functionName, snapshot);
    for (const instance of this.of(snapshot.functionName)) {
      if (instance.revision !== snapshot.revision) this.retire(instance);
    }
    this.pump(snapshot.functionName);
  }

  /** The function is gone: its instances stop now, its waiters fail. */
  deleteFunction(functionName: string): void {
    this.functions.delete(functionName);
    for (const instance of this.of(functionName)) void this.stop(instance);
    for (const waiter of this.waiters.filter((w) => w.functionName === functionName)) {
      this.waiters = this.waiters.filter((w) => w !== waiter);
      waiter.reject(new Error(`function ${functionName} was deleted`));
    }
  }

  of(functionName: string): Instance[] {
    return [...this.instances.values()].filter((i) => i.functionName === functionName);
  }

  /** An instance with room for one more request, starting one when under the cap; FIFO among waiters. */
  acquire(functionName: string, gone: AbortSignal): Promise<Instance> {
    if (this.closing) return Promise.reject(new Error('the fake is closing'));
    if (!this.functions.has(functionName)) return Promise.reject(new Error(`function ${functionName} not found`));
    if (gone.aborted) return Promise.reject(new Error('the client went away'));
    return new Promise<Instance>((resolve, reject) => {
      const waiter: Waiter = {
        functionName,
        resolve: (instance) => {
          gone.removeEventListener('abort', onGone);
          resolve(instance);
        },
        reject: (err) => {
          gone.removeEventListener('abort', onGone);
          reject(err);
        },
      };
      const onGone = () => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error('the client went away'));
      };
      gone.addEventListener('abort', onGone, { once: true });
      this.waiters.push(waiter);
      this.pump(functionName);
    });
  }

  /** A request is done: the instance takes the next one, or stops when retired. */
  release(instance: Instance): void {
    instance.inFlight -= 1;
    if ((instance.stale || instance.exited || this.closing) && instance.inFlight === 0) void this.stop(instance);
    else this.pump(instance.functionName);
  }

  private retire(instance: Instance): void {
    instance.stale = true;
    if (instance.inFlight === 0 && instance.state === 'ready') void this.stop(instance);
  }

  private available(functionName: string): Instance | undefined {
    return this.of(functionName).find(
      (i) => i.state === 'ready' && !i.stale && !i.exited && i.inFlight < i.concurrency,
    );
  }

  private pump(functionName: string): void {
    if (this.closing) return;
    const fn = this.functions.get(functionName);
    if (!fn) return;
    for (let instance = this.available(functionName); instance; instance = this.available(functionName)) {
      const waiter = this.waiters.find((w) => w.functionName === functionName);
      if (!waiter) break;
      this.waiters = this.waiters.filter((w) => w !== waiter);
      instance.inFlight += 1;
      waiter.resolve(instance);
    }
    const waiting = this.waiters.filter((w) => w.functionName === functionName).length;
    const live = this.of(functionName).filter((i) => i.state !== 'stopping' && !i.stale);
    let starting = live.filter((i) => i.state === 'starting').length;
    let count = live.length;
    while (waiting > starting && count < this.o.maxPerFunction) {
      starting += 1;
      count += 1;
      void this.start(fn);
    }
  }

  private async start(fn: FunctionSnapshot): Promise<void> {
    const id = `c-${randomBytes(6).toString('hex')}`;
    const config = fn.config;
    const instance: Instance = {
      id,
      functionName: fn.functionName,
      revision: fn.revision,
      port: 0,
      pid: 0,
      state: 'starting',
      inFlight: 0,
      concurrency: Number(config.instanceConcurrency ?? 1),
      stale: false,
      logFile: join(this.o.dir, 'logs', `${id}.log`),
      exited: false,
    };
    this.instances.set(id, instance);
    this.started.push(instance);
    try {
      await this.boot(instance, config);
      instance.state = 'ready';
      if (instance.stale || this.closing) void this.stop(instance);
      else this.pump(fn.functionName);
    } catch (err) {
      const message = `instance ${id} of ${fn.functionName} failed to start: ${errorMessage(err)}; log: ${logTail(instance.logFile)}`;
      const waiter = this.waiters.find((w) => w.functionName === fn.functionName);
      if (waiter) {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        waiter.reject(new Error(message));
      }
      await this.stop(instance);
    }
  }

  private async boot(instance: Instance, config: Record<string, unknown>): Promise<void> {
    const argv = argvOf(config);
    if (argv.at(-1) !== 'agent') {
      throw new Error(`the container's command ${JSON.stringify(argv)} does not run the agent`);
    }
    const root = join(this.o.dir, 'instances', instance.id);
    mkdirSync(root, { recursive: true });
    this.mount(root, config);
    instance.port = await freePort();
    const fnEnv = (config.environmentVariables ?? {}) as Record<string, string>;
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      ...this.o.imageEnv,
      ...fnEnv,
      FC_FUNCTION_NAME: instance.functionName,
      FC_INSTANCE_ID: instance.id,
      SDFLOW_AGENT_PORT: String(instance.port),
      SDFLOW_AGENT_HOST: '127.0.0.1',
    };
    if (fnEnv.SDFLOW_DATA_DIR) env.SDFLOW_DATA_DIR = join(root, fnEnv.SDFLOW_DATA_DIR);
    const role = this.o.roleCredentials();
    if (typeof config.role === 'string' && role) {
      env.ALIBABA_CLOUD_ACCESS_KEY_ID = role.accessKeyId;
      env.ALIBABA_CLOUD_ACCESS_KEY_SECRET = role.accessKeySecret;
      if (role.securityToken) env.ALIBABA_CLOUD_SECURITY_TOKEN = role.securityToken;
    }
    if (instance.state === 'stopping') throw new Error('stopped while starting');
    const fd = openSync(instance.logFile, 'a');
    try {
      const child = spawn(process.execPath, [CLI_MAIN, 'agent'], { detached: true, stdio: ['ignore', fd, fd], env });
      if (child.pid === undefined) throw new Error('could not spawn the agent');
      instance.pid = child.pid;
      child.once('exit', () => {
        instance.exited = true;
        // A ready instance that died is forgotten once it serves nothing; one busy ends with its request.
        if (instance.state === 'ready' && instance.inFlight === 0) void this.stop(instance);
      });
    } finally {
      closeSync(fd);
    }
    const deadline = Date.now() + this.o.startTimeoutMs;
    for (;;) {
      if (instance.exited) throw new Error('the agent exited while starting');
      if (Date.now() > deadline) throw new Error(`the agent did not answer within ${this.o.startTimeoutMs} ms`);
      const status = await fetch(`http://127.0.0.1:${instance.port}/healthz`, { signal: AbortSignal.timeout(1000) })
        .then((res) => res.status)
        .catch(() => 0);
      if (status === 200) break;
      await sleep(100);
    }
    const initializer = (config.instanceLifecycleConfig as { initializer?: { handler?: string; timeout?: number } })
      ?.initializer;
    if (initializer?.handler) {
      const res = await fetch(`http://127.0.0.1:${instance.port}/initialize`, {
        method: 'POST',
        signal: AbortSignal.timeout((initializer.timeout ?? 3) * 1000),
      });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`the initializer answered ${res.status}: ${text.slice(0, 300)}`);
    }
  }

  /** Materialises the function's mounts under the instance's root. */
  private mount(root: string, config: Record<string, unknown>): void {
    const oss = (config.ossMountConfig as { mountPoints?: Record<string, unknown>[] } | undefined)?.mountPoints ?? [];
    for (const point of oss) {
      const bucketName = String(point.bucketName);
      const bucket = this.o.buckets[bucketName];
      if (!bucket) throw new Error(`cannot mount OSS bucket ${bucketName}: the fake does not know it`);
      const path = String(point.bucketPath).replace(/^\/+/, '');
      const prefix = path === '' ? '' : `${path.replace(/\/+$/, '')}/`;
      const target = join(root, String(point.mountDir));
      mkdirSync(target, { recursive: true });
      for (const key of bucket.list(prefix)) {
        const file = join(target, key.slice(prefix.length));
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, bucket.read(key));
        if (point.readOnly === true) chmodSync(file, 0o444);
      }
    }
    const nas = (config.nasConfig as { mountPoints?: Record<string, unknown>[] } | undefined)?.mountPoints ?? [];
    for (const point of nas) mkdirSync(join(root, String(point.mountDir)), { recursive: true });
  }

  private async stop(instance: Instance): Promise<void> {
    if (instance.state === 'stopping') return;
    instance.state = 'stopping';
    if (instance.pid > 0 && isAlive(instance.pid)) await stopGroup(instance.pid, STOP_GRACE_MS);
    instance.exited = true;
    this.instances.delete(instance.id);
    this.pump(instance.functionName);
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const waiter of this.waiters) waiter.reject(new Error('the fake is closing'));
    this.waiters = [];
    await Promise.all([...this.instances.values()].map((instance) => this.stop(instance)));
  }
}
