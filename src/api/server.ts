import type { AddressInfo } from 'node:net';
import { isIP } from 'node:net';
import type { Config } from '../config/index.js';
import type { Logger } from '../logging.js';
import { createFunctionRuntime, createMetaStore, createObjectStore } from '../platform/index.js';
import { loadUrlSecret } from '../platform/object-store/signing.js';
import { connectTemporal } from '../temporal.js';
import { loadWebhookSecret } from '../webhooks/signing.js';
import { createApp } from './app.js';
import { loadKeyRing } from './auth.js';

const isLoopback = (host: string) =>
  host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));

export async function startApi(config: Config, logger: Logger) {
  const keys = loadKeyRing(config.api.apiKeys, config.api.apiKeysFile);
  if (!keys && !isLoopback(config.api.host) && !config.api.allowInsecure) {
    throw new Error(
      `refusing to serve ${config.api.host} without API keys: set SDFLOW_API_KEYS (or SDFLOW_API_KEYS_FILE), ` +
        'or SDFLOW_ALLOW_INSECURE=1 to accept anyone on the network',
    );
  }
  // The API signs no webhook, but the secret receivers verify with must exist, and agree with the workers', from the
  // start: without a shared data dir it must be set, and an API that starts without it says so at once.
  loadWebhookSecret(config.webhooks);
  const meta = await createMetaStore(config);
  const store = await createObjectStore(config);
  const temporal = await connectTemporal(config.temporal);
  const functions = await createFunctionRuntime(config);
  const app = createApp({
    config,
    logger,
    meta,
    store,
    temporal,
    functions,
    keys,
    urlSecret: loadUrlSecret(config.stores),
  });

  const server = app.listen({ host: config.api.host, port: config.api.port });
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  // Receiving a request (a model upload can be gigabytes) has its own limit; waiting for the answer (a sync task)
  // is bounded by the sync cap, not by this. Headers must still arrive promptly.
  server.requestTimeout = config.api.requestReceiveTimeoutS * 1000;
  server.headersTimeout = 60_000;
  const port = (server.address() as AddressInfo).port;
  logger.info({ url: `http://${config.api.host}:${port}`, auth: keys ? 'keys' : 'off' }, 'api listening');

  return {
    port,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await temporal.connection.close();
      await meta.close();
    },
  };
}
