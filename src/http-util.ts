import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:net';

// Small node:http helpers shared by the agent and the local runtime, which both stream and so use node:http directly.

export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`request body is larger than ${limit} bytes`);
    this.name = 'BodyTooLargeError';
  }
}

/** Reads the whole request body, refusing more than `limit` bytes. */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > limit) throw new BodyTooLargeError(limit);
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/**
 * Ports are picked from below every common OS's ephemeral range (Linux 32768–60999; BSD, macOS and Windows from 49152):
 * a port the OS handed out for "any port" is also what outgoing connections take, so one of them could hold it by the
 * time the process it was picked for binds it (seen as EADDRINUSE at a stack's start).
 */
const PICKED_PORTS = { from: 20000, to: 32767 } as const;
const PICK_ATTEMPTS = 64;
/** Ports this process handed out: never twice, even once their listener is gone. */
const handedOut = new Set<number>();

function canListen(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(undefined));
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : undefined;
      server.close(() => resolve(bound));
    });
  });
}

/**
 * A TCP port free on 127.0.0.1 a moment ago, from outside the ephemeral range, and never one this process handed out
 * before. Another process picking from the same range at the same moment may still take it first: rare, and a launcher
 * that can tries again on new ports (startDevServerOnFreePorts).
 */
export async function freePort(): Promise<number> {
  const span = PICKED_PORTS.to - PICKED_PORTS.from + 1;
  for (let attempt = 0; attempt < PICK_ATTEMPTS; attempt++) {
    const port = PICKED_PORTS.from + Math.floor(Math.random() * span);
    if (handedOut.has(port)) continue;
    if ((await canListen(port)) === port) {
      handedOut.add(port);
      return port;
    }
  }
  // That range is crowded here: any port the OS gives.
  const port = await canListen(0);
  if (port === undefined) throw new Error('no free TCP port on 127.0.0.1');
  handedOut.add(port);
  return port;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Why a request failed, in a few words: the network error's code or message (fetch wraps it as its `cause`, node:http
 * rejects with it), else the error's message.
 */
export function networkReason(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: string; message?: string } } | null;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  return e?.cause?.code ?? e?.cause?.message ?? code ?? errorMessage(err);
}

/**
 * Stops a server: no new connections, idle ones closed, then `drain` (which may still use open requests, e.g. to
 * stop child processes), then every connection closed. Resolves when the server is closed.
 */
export async function closeServer(server: Server, drain: () => Promise<void>): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  await drain();
  server.closeAllConnections();
  await closed;
}
