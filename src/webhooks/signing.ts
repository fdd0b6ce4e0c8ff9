import { createHmac, randomBytes } from 'node:crypto';
import { ConfigError, type WebhooksConfig } from '../config/index.js';
import { webhookSecretFile } from '../data-dir.js';
import { readOrCreateSecretFile } from '../secret-file.js';

// Webhook signatures as the Standard Webhooks specification defines them: the secret is `whsec_` and the base64 of a
// key; each delivery carries `webhook-id`, `webhook-timestamp` (unix seconds) and `webhook-signature`, which is
// `v1,` and the base64 HMAC-SHA256, under the key, of `<id>.<timestamp>.<body>`.

const PREFIX = 'whsec_';
const GENERATED_KEY_BYTES = 32;

/** The signing key a `whsec_` secret holds. */
export function webhookKey(secret: string): Buffer {
  if (!secret.startsWith(PREFIX)) throw new Error(`a webhook secret starts with ${PREFIX}`);
  return Buffer.from(secret.slice(PREFIX.length), 'base64');
}

/** `v1,<base64 signature>` of one delivery. */
export function signWebhook(key: Buffer, id: string, timestampS: number, body: string): string {
  return `v1,${createHmac('sha256', key).update(`${id}.${timestampS}.${body}`).digest('base64')}`;
}

/** The headers that sign one delivery attempt, timestamped `now`. */
export function webhookHeaders(key: Buffer, id: string, body: string, now = Date.now()): Record<string, string> {
  const timestamp = Math.floor(now / 1000);
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': signWebhook(key, id, timestamp, body),
  };
}

const GENERATED_SECRET = {
  generate: () => `${PREFIX}${randomBytes(GENERATED_KEY_BYTES).toString('base64')}`,
  valid: (text: string) => text.startsWith(PREFIX) && webhookKey(text).length === GENERATED_KEY_BYTES,
  what: `a webhook secret (${PREFIX} and the base64 of ${GENERATED_KEY_BYTES} bytes)`,
};

/**
 * The webhook secret: SDFLOW_WEBHOOK_SECRET when set, else one generated once and kept in the data dir, which
 * receivers read with `sdflow webhooks secret`. Processes that do not share a data dir would each generate their
 * own, so with cloud stores the secret must be set.
 */
export function loadWebhookSecret(webhooks: WebhooksConfig): string {
  if (webhooks.secret !== undefined) return webhooks.secret;
  if (!webhooks.sharedDataDir) {
    throw new ConfigError(
      'SDFLOW_WEBHOOK_SECRET must be set when the object or meta store is a cloud one (SDFLOW_OBJECT_STORE=oss or ' +
        'SDFLOW_META_STORE=tablestore): the API and the workers do not share a data dir to keep a generated one in. ' +
        'Set it to whsec_ followed by the base64 of 32 random bytes, the same on every API and worker.',
    );
  }
  return readOrCreateSecretFile(webhookSecretFile(webhooks.dataDir), GENERATED_SECRET);
}
