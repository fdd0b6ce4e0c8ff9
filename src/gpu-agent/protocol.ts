import {
  EMPTY_SD_STATE,
  type ErrorKind,
  type SdParams,
  type SdState,
  type TaskKind,
  type TaskPhase,
} from '../types.js';

// The one-request invoke protocol between the worker and a function instance's agent (DESIGN.md section 2).
// The worker POSTs an InvokeRequest to the agent's /invoke. The agent answers 200 with NDJSON: zero or more
// `progress` events, then exactly one `result` or `error` event, then it ends the stream. A closed connection
// means cancel: the agent interrupts SD.

export interface InvokeRequest {
  taskId: string;
  user: string;
  kind: TaskKind;
  /** The checkpoint the function is pinned to. */
  model: string;
  /** A1111 body; image fields hold object keys (or base64 for callers that bypass the claim check). */
  params: SdParams;
  /** Whether the caller may reference any object key (admin), or only its own. */
  admin?: boolean;
}

/**
 * The params of a `passthrough` invoke: one A1111 request for SD, as the API received it. Its JSON body travels
 * inline, or, when large, as an object key (`bodyKey`) so it never enters Temporal's history.
 */
export interface PassthroughParams {
  method: string;
  /** Path and query, e.g. `/sdapi/v1/png-info`. */
  path: string;
  body?: unknown;
  bodyKey?: string;
}

export interface ProgressEvent {
  type: 'progress';
  phase: TaskPhase;
  progress: number;
  etaRelative: number;
  state: SdState;
  currentImage: string | null;
}

/** The event of an invoke that has not reached SD yet: an instance or a checkpoint is still starting. */
export function startingEvent(): ProgressEvent {
  return {
    type: 'progress',
    phase: 'starting',
    progress: 0,
    etaRelative: 0,
    state: EMPTY_SD_STATE,
    currentImage: null,
  };
}

export interface ResultEvent {
  type: 'result';
  images: string[];
  /** A1111's info JSON string. */
  info: string;
  parameters: Record<string, unknown>;
}

export interface ErrorEvent {
  type: 'error';
  kind: ErrorKind;
  /** The HTTP status SD answered, when the error came from SD. */
  status?: number;
  message: string;
  /** False when retrying cannot help (SD rejected the input, unknown model). */
  retryable: boolean;
}

export type AgentEvent = ProgressEvent | ResultEvent | ErrorEvent;

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
