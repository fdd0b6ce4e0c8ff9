import { z } from 'zod';
import { api } from './api.js';
import { int, num, optionalString } from './schemas.js';
import { group, setting } from './setting.js';
import { shared } from './shared.js';

/** The local function runtime (`sdflow runtime`): where it listens, and how it starts and keeps instances. */
export const runtime = group(
  {
    host: setting({
      env: 'SDFLOW_RUNTIME_HOST',
      schema: z.string().default('127.0.0.1'),
      meaning: 'Listen address of `sdflow runtime`.',
    }),
    port: setting({ env: 'SDFLOW_RUNTIME_PORT', schema: int(8190, 0), meaning: 'Port of `sdflow runtime`.' }),
    url: setting({
      env: 'SDFLOW_RUNTIME_URL',
      schema: optionalString,
      meaning:
        'Where the API and workers reach `sdflow runtime` (unset: http://SDFLOW_RUNTIME_HOST:SDFLOW_RUNTIME_PORT).',
    }),
    maxInstances: setting({
      env: 'SDFLOW_FUNCTION_MAX_INSTANCES',
      schema: int(4, 1),
      meaning: 'Local runtime: instances per function, unless the function sets maxInstances.',
    }),
    keepAliveS: setting({
      env: 'SDFLOW_KEEP_ALIVE_S',
      schema: num(180, 0),
      meaning: 'Local runtime: an idle instance is stopped after this long, unless the function sets keepAliveS.',
    }),
    warmRetryS: setting({
      env: 'SDFLOW_WARM_RETRY_S',
      schema: num(10, 0),
      meaning:
        "Local runtime: after an instance kept for a function's minInstances failed to start or died, the next one is started no sooner than this.",
    }),
    instanceStartTimeoutS: setting({
      env: 'SDFLOW_INSTANCE_START_TIMEOUT_S',
      schema: num(120, 1),
      meaning: 'Local runtime: an instance must be ready within this long.',
    }),
    instanceQueueTimeoutS: setting({
      env: 'SDFLOW_INSTANCE_QUEUE_TIMEOUT_S',
      schema: num(600, 1),
      meaning: 'How long a request waits for a free instance (local runtime) or WebUI (static pool).',
    }),
  },
  (runtime, read) => ({
    ...runtime,
    url: (runtime.url ?? `http://${runtime.host}:${runtime.port}`).replace(/\/$/, ''),
    dataDir: read(shared.settings.dataDir),
    // The runtime relays what the API accepted.
    maxBodyBytes: read(api.settings.maxBodyBytes),
  }),
);
