import type { AgentEvent } from '../../protocol/events.js';
import type { InvokeRequest } from '../../protocol/invoke.js';
import type { InstanceFault } from '../../types.js';

/** What the platform asks of a runtime when it creates or updates a function. */
export interface FunctionSpec {
  functionName: string;
  /** The checkpoint the function is pinned to (the instances' SD_MODEL). */
  model: string;
  /** Resource fields from batch update (env, extraArgs, timeout, instance limits, cpu, memory, gpu...). */
  resources?: Record<string, unknown>;
}

export interface RuntimeFunction {
  functionName: string;
  model: string;
  resources: Record<string, unknown>;
  /** The limits in effect (the function's own, else the runtime's defaults), for runtimes that apply them. */
  limits?: { maxInstances: number; keepAliveS: number; minInstances?: number; timeoutS?: number };
  instances?: { id: string; busy: boolean; startedAt: string; usage?: InstanceUsage }[];
  /** For runtimes that account their instances (the local one): the function's usage so far, gone instances included. */
  usage?: InstanceUsage;
}

/** Seconds an instance (or all of a function's) spent starting, serving invokes and idle, and how many invokes. */
export interface InstanceUsage {
  coldStartS: number;
  activeS: number;
  idleS: number;
  invokes: number;
}

export interface InvokeOptions {
  signal: AbortSignal;
}

/** A passthrough HTTP request to one instance's SD backend. */
export interface PassthroughRequest {
  method: string;
  /** Path and query on the SD backend, e.g. `/sdapi/v1/sd-models`. */
  path: string;
  headers?: Record<string, string>;
  body?: Buffer;
  signal?: AbortSignal;
}

export interface PassthroughResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** The functions port: one serverless function per checkpoint, each instance serving one request at a time. */
export interface FunctionRuntime {
  /** Creates the function if missing (race-safe: "already exists" is success) or updates its spec. */
  ensureFunction(spec: FunctionSpec): Promise<void>;
  /**
   * Sends one invoke to an instance (starting one if needed) and yields its events. Aborting the signal closes the
   * connection, which the agent treats as a cancel. Throws FunctionNotFoundError when the function does not exist.
   */
  invoke(functionName: string, request: InvokeRequest, options: InvokeOptions): AsyncIterable<AgentEvent>;
  passthrough(functionName: string, request: PassthroughRequest): Promise<PassthroughResponse>;
  listFunctions(): Promise<RuntimeFunction[]>;
  deleteFunction(functionName: string): Promise<void>;
  /** Recycles the instances of one function, or of all functions. */
  restartInstances(functionName?: string): Promise<void>;
  /**
   * Asks for `instances` warm instances of the function now, busy ones included (bounded by its maxInstances), ahead
   * of a burst of tasks the semaphore holds (src/prewarm.ts). A runtime whose idle instances go away by themselves
   * (local: keepAliveS) only starts the missing ones; one that keeps them until told (FC: provisioned instances)
   * sets its target to `instances`, so the caller asks for the function's minInstances again once the burst is over.
   * Asking for N when N are there starts none.
   */
  prewarm(functionName: string, instances: number): Promise<void>;
}

export class FunctionNotFoundError extends Error {
  constructor(readonly functionName: string) {
    super(`function not found: ${functionName}`);
    this.name = 'FunctionNotFoundError';
  }
}

/** The runtime can never serve this checkpoint as configured (no GPU is mapped to it); retrying cannot help. */
export class CheckpointNotServedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointNotServedError';
  }
}

/**
 * The runtime could not give the request an instance or the instance failed; retrying may help. `fault` is set when
 * the checkpoint's instance is to blame (it counts toward the checkpoint's circuit breaker), not the runtime.
 */
export class FunctionUnavailableError extends Error {
  constructor(
    message: string,
    readonly fault?: InstanceFault,
  ) {
    super(message);
    this.name = 'FunctionUnavailableError';
  }
}
