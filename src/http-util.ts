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

/** A TCP port that was free on 127.0.0.1 a moment ago; callers retry when another process takes it first. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
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
