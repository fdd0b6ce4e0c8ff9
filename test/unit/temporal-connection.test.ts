import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import protos from '@temporalio/proto';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { isBusyWorkflow, temporalConnectionOptions, temporalRetryOptions } from '../../src/temporal.js';

// How sdflow reaches Temporal: plain for the dev server, TLS for a secured cluster, mTLS or an API key for Temporal
// Cloud. No TLS server can run here, so this checks what the connections are given.

const dir = mkdtempSync(join(tmpdir(), 'sdflow-tls-'));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

describe('Temporal connection options', () => {
  it('are plain by default', () => {
    expect(temporalConnectionOptions(loadConfig({}).temporal)).toEqual({ address: '127.0.0.1:7233' });
  });

  it('use TLS with the API key for Temporal Cloud', () => {
    const options = temporalConnectionOptions(
      loadConfig({ TEMPORAL_ADDRESS: 'ns.acct.tmprl.cloud:7233', TEMPORAL_API_KEY: 'key-1' }).temporal,
    );
    expect(options).toEqual({ address: 'ns.acct.tmprl.cloud:7233', tls: {}, apiKey: 'key-1' });
  });

  it('load the client certificate pair, the CA and the server name from files', () => {
    const options = temporalConnectionOptions(
      loadConfig({
        TEMPORAL_TLS_CERT: file('client.pem', 'CERT'),
        TEMPORAL_TLS_KEY: file('client.key', 'KEY'),
        TEMPORAL_TLS_CA: file('ca.pem', 'CA'),
        TEMPORAL_TLS_SERVER_NAME: 'temporal.internal',
      }).temporal,
    );
    expect(options.tls?.clientCertPair?.crt.toString()).toBe('CERT');
    expect(options.tls?.clientCertPair?.key.toString()).toBe('KEY');
    expect(options.tls?.serverRootCACertificate?.toString()).toBe('CA');
    expect(options.tls?.serverNameOverride).toBe('temporal.internal');
  });

  it('turn TLS on alone with TEMPORAL_TLS', () => {
    expect(temporalConnectionOptions(loadConfig({ TEMPORAL_TLS: '1' }).temporal).tls).toEqual({});
  });

  it('refuse a certificate without its key, and name an unreadable file', () => {
    expect(() => loadConfig({ TEMPORAL_TLS_CERT: file('only.pem', 'C') })).toThrow(
      /TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY/,
    );
    const config = loadConfig({
      TEMPORAL_TLS_CERT: join(dir, 'missing.pem'),
      TEMPORAL_TLS_KEY: join(dir, 'missing.key'),
    });
    expect(() => temporalConnectionOptions(config.temporal)).toThrow(/TEMPORAL_TLS_CERT: cannot read/);
  });
});

describe("the client's retries of a refused call", () => {
  const { google, temporal } = protos;
  // A RESOURCE_EXHAUSTED status as the server sends it: its cause in the details' ResourceExhaustedFailure.
  const refused = (cause: number) => {
    const failure = temporal.api.errordetails.v1.ResourceExhaustedFailure.encode({ cause }).finish();
    const details = google.rpc.Status.encode({
      code: 8,
      message: 'workflow operation can not be applied because workflow is closing',
      details: [
        { type_url: 'type.googleapis.com/temporal.api.errordetails.v1.ResourceExhaustedFailure', value: failure },
      ],
    }).finish();
    const metadata = new Metadata();
    metadata.set('grpc-status-details-bin', Buffer.from(details));
    return { code: 8, details: 'refused', metadata };
  };
  const causes = temporal.api.enums.v1.ResourceExhaustedCause;
  const busy = refused(causes.RESOURCE_EXHAUSTED_CAUSE_BUSY_WORKFLOW);
  const rateLimited = refused(causes.RESOURCE_EXHAUSTED_CAUSE_RPS_LIMIT);
  const unavailable = { code: 14, details: 'unavailable', metadata: new Metadata() };

  it('tell a busy workflow from a rate limit', () => {
    expect(isBusyWorkflow(busy)).toBe(true);
    expect(isBusyWorkflow(rateLimited)).toBe(false);
    expect(isBusyWorkflow(unavailable)).toBe(false);
    expect(isBusyWorkflow({ code: 8, details: 'no details', metadata: new Metadata() })).toBe(false);
  });

  it('send a call refused by a busy workflow again within tens of ms, a rate-limited one after seconds', () => {
    const { delayFunction, retryableDecider } = temporalRetryOptions(loadConfig({}).temporal.busyRetryMs);
    // 1.7 × the first interval, ±20% jitter.
    expect(delayFunction(1, busy)).toBeGreaterThanOrEqual(1.7 * 20 * 0.8);
    expect(delayFunction(1, busy)).toBeLessThanOrEqual(1.7 * 20 * 1.2);
    expect(delayFunction(1, rateLimited)).toBeGreaterThanOrEqual(1.7 * 1000 * 0.8);
    expect(delayFunction(1, unavailable)).toBeLessThanOrEqual(1.7 * 100 * 1.2);
    expect(retryableDecider(1, busy)).toBe(true);
    expect(retryableDecider(10, busy)).toBe(false);
  });
});
