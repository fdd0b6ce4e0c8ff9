import { z } from 'zod';
import { bool, int, optionalString } from './schemas.js';
import { ConfigError, group, setting } from './setting.js';

/** How every process reaches Temporal, and the dev server `sdflow dev` starts when none answers. */
export const temporal = group(
  {
    address: setting({
      env: 'TEMPORAL_ADDRESS',
      schema: z.string().default('127.0.0.1:7233'),
      meaning: 'Temporal frontend (host:port). `sdflow dev` reuses a server already there.',
    }),
    namespace: setting({
      env: 'TEMPORAL_NAMESPACE',
      schema: z.string().default('default'),
      meaning: 'Temporal namespace.',
    }),
    tls: setting({
      env: 'TEMPORAL_TLS',
      schema: bool(false),
      meaning: 'Connect to Temporal over TLS (implied by TEMPORAL_TLS_CERT or TEMPORAL_API_KEY).',
    }),
    tlsCertFile: setting({
      env: 'TEMPORAL_TLS_CERT',
      schema: optionalString,
      meaning: 'Client certificate file (PEM) for mTLS, e.g. Temporal Cloud; needs TEMPORAL_TLS_KEY.',
    }),
    tlsKeyFile: setting({
      env: 'TEMPORAL_TLS_KEY',
      schema: optionalString,
      meaning: 'Private key file (PEM) of TEMPORAL_TLS_CERT.',
    }),
    tlsCaFile: setting({
      env: 'TEMPORAL_TLS_CA',
      schema: optionalString,
      meaning: "CA certificate file (PEM) of a self-hosted server's TLS; unset: the system's roots.",
    }),
    tlsServerName: setting({
      env: 'TEMPORAL_TLS_SERVER_NAME',
      schema: optionalString,
      meaning: 'TLS server name override (SNI), for a server behind a proxy.',
    }),
    apiKey: setting({
      env: 'TEMPORAL_API_KEY',
      schema: optionalString,
      meaning: 'Temporal Cloud API key (sent as a bearer token over TLS).',
    }),
    uiPort: setting({
      env: 'SDFLOW_TEMPORAL_UI_PORT',
      schema: int(8233, 0),
      meaning: 'Web UI port of the dev server `sdflow dev` starts.',
    }),
    uiUrl: setting({
      env: 'SDFLOW_TEMPORAL_UI_URL',
      schema: optionalString,
      meaning:
        "The Temporal Web UI the console links each task's workflow to (unset: the dev server's, " +
        'http://127.0.0.1:SDFLOW_TEMPORAL_UI_PORT).',
    }),
    httpPort: setting({
      env: 'SDFLOW_TEMPORAL_HTTP_PORT',
      schema: int(7243, 0),
      meaning: 'HTTP API port of the dev server `sdflow dev` starts.',
    }),
    busyRetryMs: setting({
      env: 'SDFLOW_TEMPORAL_BUSY_RETRY_MS',
      schema: int(20, 1),
      meaning:
        'First wait before a call Temporal refused because its workflow was busy (e.g. closing to continue as new) is ' +
        "sent again; it grows 1.7× per attempt, 10 attempts. Other refusals keep the SDK's backoff (1 s for rate limits).",
    }),
    taskQueue: setting({
      env: 'SDFLOW_TASK_QUEUE',
      schema: z.string().default('sdflow'),
      meaning: 'Temporal task queue of the workflows and activities.',
    }),
  },
  (temporal) => {
    if ((temporal.tlsCertFile === undefined) !== (temporal.tlsKeyFile === undefined)) {
      throw new ConfigError('invalid configuration: TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together (mTLS)');
    }
    return {
      ...temporal,
      // TLS is on when asked for, or implied by a client certificate or an API key (Temporal Cloud needs it).
      tls: temporal.tls || temporal.tlsCertFile !== undefined || temporal.apiKey !== undefined,
      uiUrl: (temporal.uiUrl ?? `http://127.0.0.1:${temporal.uiPort}`).replace(/\/$/, ''),
    };
  },
);
