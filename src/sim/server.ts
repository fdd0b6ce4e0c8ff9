import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { Simulator } from './engine.js';
import { HttpError, internalErrorBody, plainError } from './errors.js';
import { jsonDecodeError, KNOWN_PATHS, missingBodyError, ROUTES, type RouteContext } from './routes.js';

// `sdflow sim`: an AUTOMATIC1111 (SD WebUI) API-compatible SIMULATOR for development, tests and benchmarks.
// It answers A1111's routes with A1111's shapes, runs one job at a time like A1111's queue lock, takes realistic
// (configurable) time per sampling step, VAE decode and checkpoint load, and returns deterministic PNGs with
// A1111-style infotext. It makes no diffusion claims: the images are seeded patterns, not model output.
// Lanczos and Nearest upscaling are real resizes; the model upscalers are simulated.

export interface SimOptions {
  host: string;
  port: number;
  /** Time per sampling step at 512×512 and batch size 1; scales with pixels and batch size. 0 = no waiting. */
  stepMs: number;
  /** Time to load a checkpoint that is not the loaded one. */
  loadMs: number;
  /** Time to decode one image (VAE). */
  vaeMs: number;
  /** Holds stableDiffusion/, sdVae/, lora/ and controlNet/ (may not exist yet). */
  modelsDir: string;
  /** When set, busy intervals are appended to `<statsDir>/<pid>.ndjson`. */
  statsDir?: string;
  /** A fault to inject (tests of a broken checkpoint); none when absent. */
  fault?: SimFault;
  logger?: Logger;
}

/**
 * An injected fault: `exit-at-start` fails the start, `crash-at-job` ends the process when a generation arrives (before
 * it counts as busy), `oom-at-job` answers a generation as A1111 does when torch runs out of GPU memory.
 */
export type SimFault = 'none' | 'exit-at-start' | 'crash-at-job' | 'oom-at-job';

/** Largest request body read; A1111 has no limit, but the process must not be taken down by one request. */
const MAX_BODY_BYTES = 256 * 1024 * 1024;

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(plainError(413, `Request body is larger than ${MAX_BODY_BYTES} bytes`));
        req.destroy();
        return;
      }
      parts.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

function jsonReader(req: IncomingMessage): () => Promise<unknown> {
  let parsed: Promise<unknown> | undefined;
  return () => {
    parsed ??= readBody(req).then((text) => {
      if (text.trim() === '') throw missingBodyError();
      try {
        return JSON.parse(text) as unknown;
      } catch (err) {
        throw jsonDecodeError(err, text);
      }
    });
    return parsed;
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body ?? null);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function handle(sim: Simulator, port: () => number, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://sim');
  const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname;
  const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
  const handler = ROUTES[`${method} ${path}`];
  try {
    if (!handler) throw KNOWN_PATHS.has(path) ? plainError(405, 'Method Not Allowed') : plainError(404, 'Not Found');
    const ctx: RouteContext = { sim, query: url.searchParams, port: port(), json: jsonReader(req) };
    send(res, 200, await handler(ctx));
  } catch (err) {
    if (err instanceof HttpError) {
      if (err.status >= 500) sim.log.error({ err, path }, 'sim request failed');
      send(res, err.status, err.body);
      return;
    }
    sim.log.error({ err, path }, 'sim request failed');
    send(res, 500, internalErrorBody(err));
  } finally {
    if (!req.complete) req.resume(); // drain an unread body so the connection can be reused
  }
}

/** Starts the simulator; port 0 picks a free port. Resolves once it listens, with the bound port. */
export async function startSimServer(o: SimOptions): Promise<{ port: number; close(): Promise<void> }> {
  if (o.fault === 'exit-at-start') throw new Error('SDFLOW_SIM_FAULT=exit-at-start: the simulator does not start');
  const sim = new Simulator(o);
  await sim.catalog.scan();
  let bound = 0;
  const server = createServer((req, res) => {
    handle(sim, () => bound, req, res).catch((err) => {
      sim.log.error({ err }, 'sim handler crashed');
      send(res, 500, internalErrorBody(err));
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  bound = (server.address() as AddressInfo).port;
  sim.stats.port = bound;
  sim.stats.listening();
  sim.log.info(
    {
      port: bound,
      modelsDir: o.modelsDir,
      checkpoints: sim.catalog.checkpoints.length,
      stepMs: o.stepMs,
      loadMs: o.loadMs,
      vaeMs: o.vaeMs,
    },
    'sim listening (an A1111 API simulator; it makes no diffusion claims)',
  );
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= new Promise<void>((resolve) => {
      sim.state.shutdown();
      server.close(() => resolve());
      server.closeIdleConnections();
      setTimeout(() => server.closeAllConnections(), 2_000).unref();
    });
    return closing;
  };
  return { port: bound, close };
}
