import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

// node:http requests over keep-alive connections, for the hot calls between sdflow's own processes (worker →
// runtime → agent → SD): fetch's web streams cost several times the CPU of a plain request, and a new connection per
// call costs a connect. Aborting a request destroys its socket, so the server sees the connection close (the agent
// takes that as a cancel) and the socket never goes back to the pool.

/**
 * An idle pooled connection is closed after this long: below the 5 s a node:http server (the agent, the runtime, the
 * simulator) and uvicorn (A1111) keep one, so a request never goes out on a connection the server is closing.
 */
export const IDLE_CONNECTION_MS = 4000;
/** Idle connections kept per host and port; more are closed once their request ends. */
export const MAX_IDLE_CONNECTIONS_PER_HOST = 16;

const agentOptions = {
  keepAlive: true,
  timeout: IDLE_CONNECTION_MS,
  maxFreeSockets: MAX_IDLE_CONNECTIONS_PER_HOST,
  // No cap on open connections: every caller bounds its own concurrency (one invoke per instance, the worker's
  // slots), and a cap here would queue requests where no timeout or cancel sees them.
  maxSockets: Number.POSITIVE_INFINITY,
};
const httpAgent = new HttpAgent(agentOptions);
const httpsAgent = new HttpsAgent(agentOptions);

export interface HttpRequestOptions {
  method: string;
  headers?: Record<string, string | number>;
  body?: Buffer | string;
  /** Aborting it destroys the request and its connection; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Sends a request over a pooled connection and resolves with the response once its headers came; its body is the
 * caller's to read. Rejects with the network error (its `code`, e.g. ECONNREFUSED) or the signal's reason. The
 * signal also destroys the response while its body is read, until it ends.
 */
export function openRequest(url: string | URL, options: HttpRequestOptions): Promise<IncomingMessage> {
  const target = typeof url === 'string' ? new URL(url) : url;
  const { signal } = options;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const https = target.protocol === 'https:';
    const request = (https ? httpsRequest : httpRequest)(target, {
      method: options.method,
      headers: {
        ...options.headers,
        ...(options.body !== undefined ? { 'content-length': Buffer.byteLength(options.body) } : {}),
      },
      agent: https ? httpsAgent : httpAgent,
    });
    const abort = () => {
      request.destroy(signal?.reason);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', abort, { once: true });
    // The request closes when its response has ended (the connection back in the pool) or the connection broke.
    request.on('close', () => signal?.removeEventListener('abort', abort));
    request.on('error', reject);
    request.on('response', resolve);
    request.end(options.body);
  });
}

/** Reads a response's whole body; rejects when the connection breaks first (or the request's signal aborts it). */
export async function readResponse(response: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** One request and its whole answer, over a pooled connection; rejects as `openRequest` does. */
export async function sendRequest(url: string | URL, options: HttpRequestOptions): Promise<HttpAnswer> {
  const response = await openRequest(url, options);
  try {
    const body = await readResponse(response);
    return { status: response.statusCode ?? 0, headers: response.headers, body };
  } catch (err) {
    if (options.signal?.aborted) throw options.signal.reason;
    throw err;
  }
}
