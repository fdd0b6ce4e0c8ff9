import { EMPTY_SD_STATE, type ErrorKind, type InstanceFault, type SdState, type TaskPhase } from '../types.js';

// The events of one invoke, as the agent streams them back to the worker: zero or more `progress` events, then
// exactly one `result` or `error` event, then the end of the stream. Every hop (the agent, the local runtime, FC,
// the static pool, the worker) reads a stream through `invokeEvents`, which holds it to that rule.

export interface ProgressEvent {
  type: 'progress';
  phase: TaskPhase;
  progress: number;
  etaRelative: number;
  state: SdState;
  currentImage: string | null;
}

/** The `state.job` of the agent's starting event while SD loads the checkpoint (a runtime's says nothing). */
export const LOADING_CHECKPOINT_JOB = 'loading checkpoint';

/**
 * The event of an invoke that has not reached SD yet: an instance is starting (or every one is busy), or, with
 * LOADING_CHECKPOINT_JOB as `job`, the agent is loading the checkpoint.
 */
export function startingEvent(job = ''): ProgressEvent {
  return {
    type: 'progress',
    phase: 'starting',
    progress: 0,
    etaRelative: 0,
    state: { ...EMPTY_SD_STATE, job },
    currentImage: null,
  };
}

export interface ResultEvent {
  type: 'result';
  images: string[];
  /** A1111's info JSON string. */
  info: string;
  parameters: Record<string, unknown>;
  /** The instance time this invoke used, added by a runtime that accounts its instances (the local runtime). */
  usage?: InvokeUsage;
}

/**
 * One invoke's part of its instance's time, in seconds: the runtime's own accounting. `activeS`: from the runtime
 * handing the instance to the invoke to the result; `idleS`: how long the instance sat ready and unused before this
 * invoke took it; `coldStartS`: the instance's start (spawn to ready), on its first invoke only, else 0.
 */
export interface InvokeUsage {
  coldStartS: number;
  activeS: number;
  idleS: number;
}

export interface ErrorEvent {
  type: 'error';
  kind: ErrorKind;
  /** The HTTP status SD answered, when the error came from SD. */
  status?: number;
  message: string;
  /** False when retrying cannot help (SD rejected the input, unknown model). */
  retryable: boolean;
  /** Set when the instance failed rather than the request: it counts toward the checkpoint's circuit breaker. */
  fault?: InstanceFault;
}

export type AgentEvent = ProgressEvent | ResultEvent | ErrorEvent;
/** The event that ends an invoke stream. */
export type TerminalEvent = ResultEvent | ErrorEvent;

export const NDJSON_CONTENT_TYPE = 'application/x-ndjson';

export function encodeEvent(event: AgentEvent): string {
  return `${JSON.stringify(event)}\n`;
}

/** Splits an NDJSON byte stream into parsed events. */
export async function* decodeEvents(stream: AsyncIterable<Uint8Array | string>): AsyncGenerator<AgentEvent> {
  const decoder = new TextDecoder();
  let buffered = '';
  for await (const chunk of stream) {
    buffered += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    let newline = buffered.indexOf('\n');
    while (newline >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (line) yield JSON.parse(line) as AgentEvent;
      newline = buffered.indexOf('\n');
    }
  }
  const rest = buffered.trim();
  if (rest) yield JSON.parse(rest) as AgentEvent;
}

/** An invoke stream broke the protocol's rule: it ended without a result or error event, or went on after one. */
export class InvokeStreamError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvokeStreamError';
  }
}

/**
 * Passes on an invoke stream's events as they come, holding the stream to the rule: progress events, then exactly
 * one result or error event, then the end. Throws InvokeStreamError when the stream ends without a result or error
 * event, or carries anything after it; returns that event once the stream has ended. A failure of the stream itself
 * after that event (a connection closed without its last bytes) loses nothing and is not an error.
 */
export async function* invokeEvents(stream: AsyncIterable<AgentEvent>): AsyncGenerator<AgentEvent, TerminalEvent> {
  let terminal: TerminalEvent | undefined;
  try {
    for await (const event of stream) {
      if (terminal) {
        throw new InvokeStreamError(
          `the invoke stream went on after its ${terminal.type} event (a ${event.type} event)`,
        );
      }
      if (event.type !== 'progress') terminal = event;
      yield event;
    }
  } catch (err) {
    if (!terminal || err instanceof InvokeStreamError) throw err;
  }
  if (!terminal) throw new InvokeStreamError('the invoke stream ended without a result or error event');
  return terminal;
}

/**
 * Reads an invoke stream to its end, through `invokeEvents`: each progress event goes to `onProgress`, and the
 * result or error event that ended the stream is the answer.
 */
export async function readInvoke(
  stream: AsyncIterable<AgentEvent>,
  onProgress: (event: ProgressEvent) => void,
): Promise<TerminalEvent> {
  const events = invokeEvents(stream);
  for (let next = await events.next(); ; next = await events.next()) {
    if (next.done) return next.value;
    if (next.value.type === 'progress') onProgress(next.value);
  }
}
