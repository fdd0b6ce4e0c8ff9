import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AgentConfig, CloudCredentials } from '../config/index.js';
import { modelsDir } from '../data-dir.js';
import { BodyTooLargeError, closeServer, errorMessage, readBody, sendJson } from '../http-util.js';
import type { Logger } from '../logging.js';
import type { ObjectStore } from '../platform/object-store/port.js';
import { AGENT_PATHS, type AgentHealth, SD_PASSTHROUGH_PREFIX } from '../protocol/agent-http.js';
import { type AgentEvent, encodeEvent, NDJSON_CONTENT_TYPE } from '../protocol/events.js';
import { AgentCore, agentSdClient } from './core.js';
import { SdBackend } from './sd-backend.js';

// The GPU agent: one per function instance, next to SD. It pins the instance's checkpoint, serves one invoke at a
// time as a stream of NDJSON events, treats a closed invoke connection as a cancel, and passes /sd/* through to SD.

/** The role's temporary credentials FC sends with each request to a custom container, if any. */
export function fcRequestCredentials(req: IncomingMessage): CloudCredentials | undefined {
  const header = (name: string) => {
    const value = req.headers[name];
    return typeof value === 'string' && value.length > 0 ? value : undefined;
  };
  const accessKeyId = header('x-fc-access-key-id');
  const accessKeySecret = header('x-fc-access-key-secret');
  if (!accessKeyId || !accessKeySecret) return undefined;
  return { accessKeyId, accessKeySecret, securityToken: header('x-fc-security-token') };
}

const sameCredentials = (a: CloudCredentials | undefined, b: CloudCredentials | undefined) =>
  a?.accessKeyId === b?.accessKeyId &&
  a?.accessKeySecret === b?.accessKeySecret &&
  a?.securityToken === b?.securityToken;

/** Serialises invokes: a second one waits for the first to wind down (SD returned) instead of failing. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();

  async acquire(): Promise<() => void> {
    const previous = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((resolve) => {
      release = resolve;
    });
    await previous;
    return release;
  }
}

/** The object store, with the credentials FC sent with a request when there are any. */
type OpenStore = (credentials: CloudCredentials | undefined) => Promise<ObjectStore>;

export async function startAgent(
  config: AgentConfig,
  logger: Logger,
  openStore: OpenStore,
): Promise<{ port: number; close(): Promise<void> }> {
  // The runtime (or FC) names the instance and places it: a container on FC must listen on all interfaces
  // (SDFLOW_AGENT_HOST=0.0.0.0); locally the agent stays on loopback.
  const instanceId = config.instanceId ?? `agent-${randomUUID().slice(0, 8)}`;
  const functionName = config.functionName ?? '';
  const host = config.host;
  const model = config.model;
  if (!model) throw new Error('SD_MODEL is not set: an agent serves exactly one pinned checkpoint');
  const log = logger.child({ instanceId, functionName });
  const startTimeoutMs = config.sdStartTimeoutS * 1000;

  const mutex = new Mutex();
  let activeInvokes = 0;
  let closing = false;

  const backend = new SdBackend({
    sdUrl: config.sdUrl,
    command: config.sdCommand,
    modelsDir: modelsDir(config.dataDir),
    startTimeoutMs,
    logger: log,
    onReady: () => {
      // A (re)started backend may hold any checkpoint and settings: pin and apply again before serving.
      core.forgetSdState();
      void pinUnderLock().catch((err) => log.error({ err: errorMessage(err) }, 'could not pin the checkpoint'));
    },
  });
  const sd = agentSdClient(() => backend.url, config);

  // On FC, every request carries the function role's current STS credentials (x-fc-* headers). They are fresher
  // than the copy FC put in the environment when the instance started, which expires on a long-lived instance.
  let requestCredentials: CloudCredentials | undefined;
  let storeFor: { credentials: CloudCredentials | undefined; store: Promise<ObjectStore> } | undefined;
  const store = () => {
    const credentials = requestCredentials;
    if (!storeFor || !sameCredentials(storeFor.credentials, credentials)) {
      storeFor = { credentials, store: openStore(credentials) };
    }
    return storeFor.store;
  };

  const core = new AgentCore({
    sd,
    backend,
    store,
    model,
    settings: config.sdOptions,
    timings: config,
    logger: log,
    // The agent started SD (the simulator, or the WebUI command), so SD answers no one else.
    soleClient: config.sdUrl === undefined || config.sdCommand !== undefined,
  });

  async function pinUnderLock(): Promise<void> {
    const release = await mutex.acquire();
    try {
      await backend.whenReady(startTimeoutMs);
      await core.ensureCheckpoint(() => log.info({ model }, 'pinning checkpoint'));
    } finally {
      release();
    }
  }

  async function handleInvoke(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const cancel = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) cancel.abort();
    });
    res.writeHead(200, { 'content-type': NDJSON_CONTENT_TYPE, 'cache-control': 'no-store' });
    res.flushHeaders();
    const emit = (event: AgentEvent) => {
      if (!res.writableEnded && !res.destroyed) res.write(encodeEvent(event));
    };
    let body: unknown;
    try {
      body = JSON.parse((await readBody(req, config.maxBodyBytes + 1024 * 1024)).toString('utf8'));
    } catch (err) {
      emit({
        type: 'error',
        kind: 'bad_input',
        message: `invalid invoke body: ${errorMessage(err)}`,
        retryable: false,
      });
      res.end();
      return;
    }
    const release = await mutex.acquire();
    activeInvokes++;
    const started = Date.now();
    try {
      if (cancel.signal.aborted) return;
      try {
        await backend.whenReady(startTimeoutMs);
      } catch (err) {
        emit({ type: 'error', kind: 'sd_error', message: errorMessage(err), retryable: true, fault: 'start' });
        return;
      }
      await core.invoke(body, emit, cancel.signal);
    } finally {
      activeInvokes--;
      release();
      log.info({ ms: Date.now() - started, cancelled: cancel.signal.aborted }, 'invoke finished');
      res.end();
    }
  }

  async function handleInitialize(res: ServerResponse): Promise<void> {
    try {
      if (!(core.pinned && backend.ready)) await pinUnderLock();
      sendJson(res, 200, { status: 'ok', instanceId, model });
    } catch (err) {
      sendJson(res, backend.ready ? 500 : 503, { message: `initialize failed: ${errorMessage(err)}` });
    }
  }

  async function handlePassthrough(req: IncomingMessage, res: ServerResponse, pathAndQuery: string): Promise<void> {
    const aborted = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) aborted.abort();
    });
    try {
      const body = await readBody(req, config.maxBodyBytes + 1024 * 1024);
      const answer = await sd.passthrough(
        req.method ?? 'GET',
        pathAndQuery,
        req.headers['content-type'],
        body,
        aborted.signal,
      );
      res.writeHead(answer.status, {
        'content-type': answer.contentType ?? 'application/octet-stream',
        'content-length': answer.body.length,
      });
      res.end(answer.body);
    } catch (err) {
      if (aborted.signal.aborted) return;
      if (err instanceof BodyTooLargeError) sendJson(res, 413, { message: err.message });
      else sendJson(res, 502, { message: `SD passthrough failed: ${errorMessage(err)}` });
    } finally {
      // Anything but a read may have switched SD's checkpoint or settings: both are checked before the next invoke.
      if (req.method !== 'GET' && req.method !== 'HEAD') core.forgetSdState();
    }
  }

  const server = createServer((req, res) => {
    requestCredentials = fcRequestCredentials(req) ?? requestCredentials;
    const url = new URL(req.url ?? '/', 'http://agent');
    const route = `${req.method} ${url.pathname}`;
    const handle = async () => {
      if (route === `GET ${AGENT_PATHS.healthz}`) {
        const health: AgentHealth = {
          status: backend.ready ? 'ok' : 'starting',
          instanceId,
          functionName,
          model,
          busy: activeInvokes > 0,
          sdReady: backend.ready,
        };
        sendJson(res, backend.ready ? 200 : 503, health);
      } else if (closing) {
        sendJson(res, 503, { message: 'agent is stopping' });
      } else if (route === `POST ${AGENT_PATHS.initialize}`) {
        await handleInitialize(res);
      } else if (route === `POST ${AGENT_PATHS.invoke}`) {
        await handleInvoke(req, res);
      } else if (url.pathname.startsWith(`${SD_PASSTHROUGH_PREFIX}/`)) {
        await handlePassthrough(req, res, `${url.pathname.slice(SD_PASSTHROUGH_PREFIX.length)}${url.search}`);
      } else {
        sendJson(res, 404, { message: `no route ${route}` });
      }
    };
    handle().catch((err) => {
      log.error({ err: errorMessage(err), route }, 'request failed');
      if (!res.headersSent) sendJson(res, 500, { message: errorMessage(err) });
      else res.end();
    });
  });
  server.requestTimeout = 0;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  log.info({ host, port, model, sdUrl: config.sdUrl ?? 'simulator', sdCommand: config.sdCommand }, 'agent listening');
  backend.start();

  return {
    port,
    async close() {
      closing = true;
      await closeServer(server, () => backend.close());
      log.info('agent stopped');
    },
  };
}
