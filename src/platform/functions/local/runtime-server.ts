import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { z } from 'zod';
import type { RuntimeConfig } from '../../../config/index.js';
import { openRequest, readResponse, sendRequest } from '../../../http-client.js';
import { BodyTooLargeError, closeServer, errorMessage, readBody, sendJson } from '../../../http-util.js';
import type { Logger } from '../../../logging.js';
import { AGENT_PATHS, sdPassthroughPath } from '../../../protocol/agent-http.js';
import {
  type AgentEvent,
  decodeEvents,
  type ErrorEvent,
  encodeEvent,
  invokeEvents,
  NDJSON_CONTENT_TYPE,
  startingEvent,
} from '../../../protocol/events.js';
import type { InstanceFault } from '../../../types.js';
import { isFunctionName } from '../naming.js';
import { FunctionNotFoundError } from '../port.js';
import { RUNTIME_ERROR_HEADER } from './client.js';
import { type Instance, InstancePool, InstanceStartError } from './pool.js';

// `sdflow runtime`: the local stand-in for FC and the single owner of local instances. It manages functions over HTTP
// and routes each invoke to an instance of its own, streaming the agent's events back.

const STARTING_EVERY_MS = 1000;

const agentUrl = (instance: Instance, path: string) => `http://127.0.0.1:${instance.port}${path}`;

/** The runtime's own retryable failure of an invoke; `fault` when the instance is to blame (breaker.ts counts it). */
const failure = (message: string, fault?: InstanceFault): ErrorEvent => ({
  type: 'error',
  kind: 'internal',
  message,
  retryable: true,
  ...(fault ? { fault } : {}),
});

// Resources the local runtime applies: env and extraArgs (instance environment), timeout (seconds, a cap on one
// request), maxInstances, keepAliveS and minInstances (prewarmQueueDepth is the workers', src/prewarm.ts). The rest (image, cpu, memory, GPU, VPC, NAS, OSS mounts) is recorded in
// functions.json for a cloud runtime and otherwise left alone.
const functionBodySchema = z.object({
  model: z.string().trim().min(1, 'model is required'),
  resources: z
    .looseObject({
      env: z.record(z.string(), z.string()).optional(),
      extraArgs: z.string().optional(),
      timeout: z.coerce.number().positive().optional(),
      maxInstances: z.coerce.number().int().min(1).optional(),
      keepAliveS: z.coerce.number().min(0).optional(),
      minInstances: z.coerce.number().int().min(0).optional(),
    })
    .optional(),
});

const prewarmBodySchema = z.object({ instances: z.number().int().min(0) });

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  let body: Buffer;
  try {
    body = await readBody(req, limit);
  } catch (err) {
    if (err instanceof BodyTooLargeError) throw new HttpError(413, err.message);
    throw err;
  }
  if (body.length === 0) return {};
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'body is not valid JSON');
  }
}

export async function startRuntime(
  config: RuntimeConfig,
  logger: Logger,
): Promise<{ port: number; close(): Promise<void>; kill(): void }> {
  const bodyLimit = config.maxBodyBytes + 1024 * 1024;
  const pool = new InstancePool({
    dataDir: config.dataDir,
    maxInstances: config.maxInstances,
    keepAliveS: config.keepAliveS,
    warmRetryMs: config.warmRetryS * 1000,
    startTimeoutMs: config.instanceStartTimeoutS * 1000,
    queueTimeoutMs: config.instanceQueueTimeoutS * 1000,
    logger,
  });
  // Re-adopt or reap recorded instances before serving, so no request can spawn a duplicate meanwhile.
  await pool.start();
  let closing = false;

  function requireFunction(name: string) {
    const fn = pool.describe(name);
    if (!fn) throw new HttpError(404, `function not found: ${name}`, 'function_not_found');
    return fn;
  }

  async function putFunction(name: string, req: IncomingMessage, res: ServerResponse) {
    if (!isFunctionName(name)) throw new HttpError(400, `invalid function name: ${name}`);
    const parsed = functionBodySchema.safeParse(await readJson(req, bodyLimit));
    if (!parsed.success) {
      throw new HttpError(400, parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    }
    const created = pool.getFunction(name) === undefined;
    pool.putFunction({ functionName: name, model: parsed.data.model, resources: parsed.data.resources ?? {} });
    logger.info(
      { functionName: name, model: parsed.data.model, created },
      created ? 'function created' : 'function updated',
    );
    sendJson(res, created ? 201 : 200, pool.describe(name));
  }

  /** Starts instances of the function up to `instances` without a request (FunctionRuntime.prewarm). */
  async function prewarm(name: string, req: IncomingMessage, res: ServerResponse) {
    requireFunction(name);
    const parsed = prewarmBodySchema.safeParse(await readJson(req, bodyLimit));
    if (!parsed.success) {
      throw new HttpError(400, parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    }
    const started = pool.prewarm(name, parsed.data.instances);
    if (started > 0) logger.info({ functionName: name, wanted: parsed.data.instances, started }, 'pre-warming');
    sendJson(res, 200, { started });
  }

  /** Takes an instance for one passthrough request. */
  async function takeInstance(name: string, gone: AbortSignal): Promise<Instance> {
    return pool.tryAcquire(name) ?? (await pool.acquire(name, gone));
  }

  async function invoke(name: string, req: IncomingMessage, res: ServerResponse) {
    requireFunction(name);
    const body = Buffer.from(JSON.stringify(await readJson(req, bodyLimit)));
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) gone.abort(new Error('client closed the invoke connection'));
    });
    res.writeHead(200, { 'content-type': NDJSON_CONTENT_TYPE, 'cache-control': 'no-store' });
    res.flushHeaders();
    try {
      for await (const event of invokeEvents(invokeOnInstance(name, body, gone.signal))) {
        if (!res.destroyed) res.write(encodeEvent(event));
      }
    } catch (err) {
      if (!gone.signal.aborted) logger.warn({ functionName: name, err: errorMessage(err) }, 'invoke stream cut short');
    } finally {
      res.end();
    }
  }

  /**
   * One invoke's events: `starting` while it waits for an instance, then the instance's agent's, or the runtime's
   * own error when no instance could take it, when it ran past the function's timeout, or when its stream broke.
   */
  async function* invokeOnInstance(name: string, body: Buffer, gone: AbortSignal): AsyncGenerator<AgentEvent> {
    let instance: Instance;
    try {
      instance = yield* waitForInstance(name, gone);
    } catch (err) {
      if (gone.aborted) return;
      if (err instanceof FunctionNotFoundError) {
        // Deleted while the request waited for an instance: a retry finds it missing and recreates it.
        yield {
          type: 'error',
          kind: 'not_found',
          message: `${err.message} (deleted while the request waited for an instance)`,
          retryable: true,
        };
      } else yield failure(errorMessage(err), err instanceof InstanceStartError ? 'start' : undefined);
      return;
    }
    const log = logger.child({ functionName: name, instanceId: instance.id });
    // The function's timeout caps the request on its instance; closing the agent's connection interrupts SD.
    const overtime = new AbortController();
    const timeoutS = pool.timeoutS(name);
    const timer = timeoutS === undefined ? undefined : setTimeout(() => overtime.abort(), timeoutS * 1000);
    let reusable = true;
    // When the result came: the instance's active time for this invoke ends there, not at the stream's close.
    let resultAt: number | undefined;
    try {
      const response = await openInvoke(instance, body, AbortSignal.any([gone, overtime.signal]));
      for await (const event of invokeEvents(decodeEvents(response))) {
        if (event.type !== 'result') {
          yield event;
          continue;
        }
        resultAt = Date.now();
        yield { ...event, usage: pool.invokeUsage(instance, resultAt) };
      }
    } catch (err) {
      if (gone.aborted) {
        log.info('invoke cancelled by the client; upstream request closed');
      } else if (overtime.signal.aborted) {
        log.warn({ timeoutS }, 'invoke ran longer than the function timeout; ending it');
        yield {
          type: 'error',
          kind: 'deadline',
          message: `the request ran longer than the function's timeout of ${timeoutS}s`,
          retryable: true,
        };
      } else {
        // An instance that broke a stream is not trusted with another.
        reusable = false;
        const exit = await pool.exitOf(instance, 1000);
        const detail = exit ? `${errorMessage(err)} (the instance exited: ${exit})` : errorMessage(err);
        log.warn({ detail }, 'invoke stream broke');
        yield failure(`instance ${instance.id} failed mid-request: ${detail}`, 'crash');
      }
    } finally {
      clearTimeout(timer);
      if (reusable) pool.release(instance, resultAt);
      else pool.discard(instance);
    }
  }

  /** Takes an instance of the function, with a `starting` event at once and every second until one is free. */
  async function* waitForInstance(name: string, gone: AbortSignal): AsyncGenerator<AgentEvent, Instance> {
    const ready = pool.tryAcquire(name);
    if (ready) return ready;
    const acquiring = pool.acquire(name, gone);
    // Rejections are taken below; this keeps one that lands while a `starting` event is out from being unhandled.
    acquiring.catch(() => {});
    for (;;) {
      yield startingEvent();
      let timer: NodeJS.Timeout | undefined;
      const tick = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), STARTING_EVERY_MS);
      });
      try {
        const instance = await Promise.race([acquiring, tick]);
        if (instance) return instance;
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /**
   * POSTs the invoke to the instance's agent over a pooled connection: its 200 answer, whose body is the event
   * stream. Aborting `signal` destroys that connection, which the agent takes as a cancel.
   */
  async function openInvoke(instance: Instance, body: Buffer, signal: AbortSignal): Promise<IncomingMessage> {
    const response = await openRequest(agentUrl(instance, AGENT_PATHS.invoke), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      signal,
    });
    if (response.statusCode === 200) return response;
    const text = (await readResponse(response)).toString('utf8').slice(0, 300);
    throw new Error(`agent answered ${response.statusCode}: ${text}`);
  }

  async function proxy(name: string, rest: string, req: IncomingMessage, res: ServerResponse) {
    requireFunction(name);
    const body = await readBody(req, bodyLimit).catch((err) => {
      throw err instanceof BodyTooLargeError ? new HttpError(413, err.message) : err;
    });
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) gone.abort(new Error('client closed the connection'));
    });
    let instance: Instance;
    try {
      instance = await takeInstance(name, gone.signal);
    } catch (err) {
      if (gone.signal.aborted) return;
      if (err instanceof FunctionNotFoundError) throw new HttpError(404, err.message, 'function_not_found');
      throw new HttpError(503, errorMessage(err), 'unavailable');
    }
    if (gone.signal.aborted) {
      pool.release(instance);
      return;
    }
    const overtime = new AbortController();
    const timeoutS = pool.timeoutS(name);
    const timer = timeoutS === undefined ? undefined : setTimeout(() => overtime.abort(), timeoutS * 1000);
    try {
      const contentType = req.headers['content-type'];
      const answer = await sendRequest(agentUrl(instance, sdPassthroughPath(rest)), {
        method: req.method ?? 'GET',
        headers: contentType ? { 'content-type': contentType } : {},
        body,
        signal: AbortSignal.any([gone.signal, overtime.signal]),
      });
      pool.release(instance);
      res.writeHead(answer.status, {
        'content-type': answer.headers['content-type'] ?? 'application/octet-stream',
        'content-length': answer.body.length,
      });
      res.end(answer.body);
    } catch (err) {
      if (gone.signal.aborted) {
        pool.release(instance);
        return;
      }
      if (overtime.signal.aborted) {
        // The agent sees its connection close and drops the request; the instance stays usable.
        pool.release(instance);
        throw new HttpError(504, `the request ran longer than the function's timeout of ${timeoutS}s`, 'timeout');
      }
      pool.discard(instance);
      throw new HttpError(502, `instance ${instance.id} failed: ${errorMessage(err)}`, 'unavailable');
    } finally {
      clearTimeout(timer);
    }
  }

  async function route(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://runtime');
    const method = req.method ?? 'GET';
    const path = url.pathname;
    if (method === 'GET' && path === '/healthz') {
      // The pid tells a launcher that the answer is its own runtime's (see waitForHttp).
      sendJson(res, closing ? 503 : 200, { status: closing ? 'stopping' : 'ok', pid: process.pid, ...pool.counts() });
      return;
    }
    if (closing) throw new HttpError(503, 'the runtime is stopping', 'unavailable');
    if (method === 'GET' && path === '/functions') {
      sendJson(res, 200, pool.list());
      return;
    }
    if (method === 'POST' && path === '/restart') {
      pool.recycle();
      sendJson(res, 200, { status: 'ok' });
      return;
    }
    const match = /^\/functions\/([^/]+)(\/.*)?$/.exec(path);
    if (!match) throw new HttpError(404, `no route ${method} ${path}`);
    const name = decodeURIComponent(match[1]);
    const rest = match[2] ?? '';
    if (rest === '') {
      if (method === 'PUT') return putFunction(name, req, res);
      if (method === 'GET') return sendJson(res, 200, requireFunction(name));
      if (method === 'DELETE') {
        requireFunction(name);
        pool.deleteFunction(name);
        logger.info({ functionName: name }, 'function deleted');
        return sendJson(res, 200, { status: 'ok' });
      }
    } else if (rest === '/invoke' && method === 'POST') {
      return invoke(name, req, res);
    } else if (rest === '/prewarm' && method === 'POST') {
      return prewarm(name, req, res);
    } else if (rest === '/restart' && method === 'POST') {
      requireFunction(name);
      pool.recycle(name);
      return sendJson(res, 200, { status: 'ok' });
    } else if (rest.startsWith('/proxy/')) {
      return proxy(name, `${rest.slice('/proxy'.length)}${url.search}`, req, res);
    }
    throw new HttpError(404, `no route ${method} ${path}`);
  }

  const server = createServer((req, res) => {
    route(req, res).catch((err) => {
      if (err instanceof HttpError) {
        sendJson(res, err.status, { message: err.message }, err.code ? { [RUNTIME_ERROR_HEADER]: err.code } : {});
        return;
      }
      logger.error({ err: errorMessage(err), url: req.url }, 'request failed');
      sendJson(res, 500, { message: errorMessage(err) });
    });
  });
  server.requestTimeout = 0;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  logger.info({ host: config.host, port, ...pool.counts() }, 'runtime listening');

  return {
    port,
    async close() {
      closing = true;
      await closeServer(server, () => pool.close());
      logger.info('runtime stopped; every instance stopped');
    },
    kill() {
      pool.kill();
    },
  };
}
