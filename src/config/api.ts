import { z } from 'zod';
import { bool, bytesOfMb, int, num, optionalString } from './schemas.js';
import { group, setting } from './setting.js';
import { tasks } from './tasks.js';

/** A1111 path prefixes the API passes through to an agent besides /sdapi/v1/ and /controlnet/ (comma-separated). */
const passthroughPrefixes = z
  .string()
  .default('')
  .transform((v) =>
    v
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean),
  )
  .pipe(
    z.array(
      z
        .string()
        .regex(/^\/[A-Za-z0-9._~-]+(\/[A-Za-z0-9._~-]+)*\/?$/, 'each prefix is a path such as /agent-scheduler/v1/')
        .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), 'a prefix must not hold . or .. segments')
        .transform((p) => (p.endsWith('/') ? p : `${p}/`)),
    ),
  );

/** Browser origins allowed to call the API (comma-separated), each exactly as a browser sends it. */
const corsOrigins = z
  .string()
  .default('')
  .transform((v) =>
    v
      .split(',')
      .map((o) => o.trim().replace(/\/$/, ''))
      .filter(Boolean),
  )
  .pipe(
    z.array(
      z.string().regex(/^https?:\/\/[^/\s?#]+$/, 'each origin is scheme://host[:port], e.g. https://app.example.com'),
    ),
  );

/** A wildcard listen address is reached at loopback. */
const reachableHost = (host: string) => (host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host);

/** The HTTP API: where it listens, how long requests wait, what it accepts, and who may call it. */
export const api = group(
  {
    host: setting({
      env: 'HOST',
      schema: z.string().default('127.0.0.1'),
      meaning: "The API's listen address. A non-loopback address needs API keys, or SDFLOW_ALLOW_INSECURE.",
    }),
    port: setting({ env: 'PORT', schema: int(8080, 0), meaning: "The API's port." }),
    publicUrl: setting({
      env: 'SDFLOW_PUBLIC_URL',
      schema: optionalString,
      meaning:
        'Base URL of the signed links the API hands out (unset: http://HOST:PORT). Set it behind a load balancer.',
    }),
    syncTimeoutS: setting({
      env: 'SDFLOW_SYNC_TIMEOUT_S',
      schema: num(600, 0),
      meaning: 'A sync request waits this long for its task, then answers 202 and the client polls.',
    }),
    a1111SyncTimeoutS: setting({
      env: 'SDFLOW_A1111_SYNC_TIMEOUT_S',
      schema: z.preprocess((v) => (v === '' ? undefined : v), z.coerce.number().min(1).optional()),
      meaning:
        'How long a drop-in /sdapi/v1 generation waits before answering 202 (unset: the task deadline plus 60 s).',
    }),
    maxBodyBytes: setting({
      env: 'SDFLOW_MAX_BODY_MB',
      schema: num(50, 0.001),
      meaning: 'Request body limit of the API (413 above it); the runtime and the agents take invokes this large.',
      map: bytesOfMb,
    }),
    requestReceiveTimeoutS: setting({
      env: 'SDFLOW_REQUEST_RECEIVE_TIMEOUT_S',
      schema: num(3600, 1),
      meaning: 'How long the API may take to receive one request (a model upload may be large).',
    }),
    queryTimeoutMs: setting({
      env: 'SDFLOW_QUERY_TIMEOUT_MS',
      schema: int(2000, 100),
      meaning: "Deadline of the workflow query behind a live task's progress; past it the task row answers.",
    }),
    etaTimingsMaxAgeMs: setting({
      env: 'SDFLOW_ETA_TIMINGS_MAX_AGE_MS',
      schema: int(10_000, 0),
      meaning:
        'How long the timings learned from recent successes (for estimatedStartS/estimatedFinishS) are reused before the history is read again.',
    }),
    queuePositionMaxAgeMs: setting({
      env: 'SDFLOW_QUEUE_POSITION_MAX_AGE_MS',
      schema: int(500, 0),
      meaning:
        "How long one read of the semaphore's queue answers every waiting task's queuePosition and estimates (0: read at every poll).",
    }),
    eventsPollMs: setting({
      env: 'SDFLOW_EVENTS_POLL_MS',
      schema: int(500, 50),
      meaning: "How often a task's event stream (GET /tasks/{id}/events) looks for new status events and progress.",
    }),
    cancelWaitS: setting({
      env: 'SDFLOW_CANCEL_WAIT_S',
      schema: num(5, 0),
      meaning: 'A cancellation waits this long for the task to become final before it answers.',
    }),
    apiKeys: setting({
      env: 'SDFLOW_API_KEYS',
      schema: optionalString,
      meaning: 'API keys, user:role:secret,… (role admin or user). None: auth off.',
    }),
    apiKeysFile: setting({
      env: 'SDFLOW_API_KEYS_FILE',
      schema: optionalString,
      meaning: 'File of API keys, one user:role:secret a line (# comments).',
    }),
    allowInsecure: setting({
      env: 'SDFLOW_ALLOW_INSECURE',
      schema: bool(false),
      meaning: 'Allow a non-loopback HOST with no API keys.',
    }),
    // Per API key (0 = no limit); the local principal of auth-off mode is never limited.
    keyRatePerMin: setting({
      env: 'SDFLOW_KEY_RATE_PER_MIN',
      schema: int(600, 0),
      meaning: 'Requests per minute per API key (429 past it; 0: no limit).',
    }),
    keyMaxQueued: setting({
      env: 'SDFLOW_KEY_MAX_QUEUED',
      schema: int(100, 0),
      meaning: 'Waiting and running tasks per user of an API key (429 past it; 0: no limit).',
    }),
    queueRetryAfterS: setting({
      env: 'SDFLOW_QUEUE_RETRY_AFTER_S',
      schema: int(10, 1),
      meaning: 'Retry-After of those 429 answers.',
    }),
    corsOrigins: setting({
      env: 'SDFLOW_CORS_ORIGINS',
      schema: corsOrigins,
      meaning:
        "Browser origins (scheme://host[:port], comma-separated) that may call the API from their pages, as A1111's --cors-allow-origins. None: no CORS headers.",
    }),
    metricsMaxAgeMs: setting({
      env: 'SDFLOW_METRICS_MAX_AGE_MS',
      schema: int(5000, 0),
      meaning:
        "How long one count of the task rows and one read of the semaphore's state answer every /metrics scrape.",
    }),
    /** Path prefixes passed through to an agent, each ending in `/`. */
    passthroughPrefixes: setting({
      env: 'SDFLOW_PASSTHROUGH_PREFIXES',
      schema: passthroughPrefixes,
      meaning: 'Comma-separated path prefixes passed through to SD besides /sdapi/v1/ and /controlnet/.',
      map: (extra) => ['/sdapi/v1/', '/controlnet/', ...extra],
    }),
  },
  (api, read) => ({
    ...api,
    publicUrl: (api.publicUrl ?? `http://${reachableHost(api.host)}:${api.port}`).replace(/\/$/, ''),
    // A1111 clients wait for their images and know nothing of 202: by default they wait out the task's deadline
    // (plus time for its final record), so they always get the outcome.
    a1111SyncTimeoutS: api.a1111SyncTimeoutS ?? read(tasks.settings.deadlineS) + 60,
  }),
);
