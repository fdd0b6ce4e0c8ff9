import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { loadWebhookSecret, signWebhook, webhookHeaders, webhookKey } from '../../src/webhooks/signing.js';

// Webhook signatures as the Standard Webhooks specification defines them, and where the secret comes from.

let dataDir: string;

beforeEach(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'sdflow-webhook-secret-'));
});

afterEach(() => {
  rmSync(dataDir, { recursive: true, force: true });
});

describe('signing', () => {
  it("matches the specification's example", () => {
    const key = webhookKey('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
    expect(signWebhook(key, 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}')).toBe(
      'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
    );
  });

  it('signs each attempt with its own timestamp, in seconds, under the same id', () => {
    const key = webhookKey('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
    const first = webhookHeaders(key, 'msg_1', '{}', 1_700_000_000_900);
    const later = webhookHeaders(key, 'msg_1', '{}', 1_700_000_060_000);
    expect(first).toEqual({
      'webhook-id': 'msg_1',
      'webhook-timestamp': '1700000000',
      'webhook-signature': signWebhook(key, 'msg_1', 1_700_000_000, '{}'),
    });
    expect(later['webhook-id']).toBe('msg_1');
    expect(later['webhook-signature']).not.toBe(first['webhook-signature']);
    // Any change to the body changes the signature.
    expect(webhookHeaders(key, 'msg_1', '{ }', 1_700_000_000_900)['webhook-signature']).not.toBe(
      first['webhook-signature'],
    );
  });
});

describe('the secret', () => {
  it('is SDFLOW_WEBHOOK_SECRET when set', () => {
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    expect(loadWebhookSecret(loadConfig({ SDFLOW_DATA_DIR: dataDir, SDFLOW_WEBHOOK_SECRET: secret }).webhooks)).toBe(
      secret,
    );
  });

  it('is generated once into the data dir when unset, and read back by every later process', () => {
    const first = loadWebhookSecret(loadConfig({ SDFLOW_DATA_DIR: dataDir }).webhooks);
    expect(first).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(webhookKey(first)).toHaveLength(32);
    expect(readFileSync(join(dataDir, 'webhook-secret'), 'utf8').trim()).toBe(first);
    expect(loadWebhookSecret(loadConfig({ SDFLOW_DATA_DIR: dataDir }).webhooks)).toBe(first);
  });

  it('reports a damaged generated secret instead of replacing it', () => {
    writeFileSync(join(dataDir, 'webhook-secret'), 'whsec_short\n');
    expect(() => loadWebhookSecret(loadConfig({ SDFLOW_DATA_DIR: dataDir }).webhooks)).toThrow(
      /does not hold a webhook secret \(whsec_ and the base64 of 32 bytes\); fix or delete it/,
    );
  });

  it('must be set when the object or meta store is a cloud one: no data dir is shared to keep one in', () => {
    for (const env of [{ SDFLOW_OBJECT_STORE: 'oss' }, { SDFLOW_META_STORE: 'tablestore' }]) {
      const attempt = () => loadWebhookSecret(loadConfig({ SDFLOW_DATA_DIR: dataDir, ...env }).webhooks);
      expect(attempt).toThrow(ConfigError);
      expect(attempt).toThrow(/SDFLOW_WEBHOOK_SECRET must be set/);
    }
    expect(() => loadConfig({ SDFLOW_WEBHOOK_SECRET: 'not-whsec' })).toThrow(/SDFLOW_WEBHOOK_SECRET: must be whsec_/);
    expect(() => loadConfig({ SDFLOW_WEBHOOK_SECRET: 'whsec_c2hvcnQ=' })).toThrow(/24 to 64 byte key/);
  });
});
