import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { urlSecretFile } from '../../src/data-dir.js';
import { loadUrlSecret, signObjectUrl, verifyObjectUrl } from '../../src/platform/object-store/signing.js';

const secret = Buffer.alloc(32, 7);
const now = Date.parse('2024-06-01T12:00:00.000Z');
const key = 'images/alice/t1_1.png';

/** The parts the /files/ route sees: the decoded key and the raw query values. */
function parts(url: string) {
  const u = new URL(url);
  const path = u.pathname.replace(/^\/files\//, '');
  return {
    key: path.split('/').map(decodeURIComponent).join('/'),
    expires: u.searchParams.get('expires') ?? '',
    signature: u.searchParams.get('signature') ?? '',
  };
}

describe('signed object URLs', () => {
  const url = signObjectUrl('http://127.0.0.1:8080/', key, 3600, secret, now);

  it('points at the API files route with expires and signature', () => {
    expect(url).toMatch(
      /^http:\/\/127\.0\.0\.1:8080\/files\/images\/alice\/t1_1\.png\?expires=\d+&signature=[0-9a-f]{64}$/,
    );
    expect(parts(url).expires).toBe(String(now / 1000 + 3600));
  });

  it('verifies a genuine link until it expires', () => {
    const p = parts(url);
    expect(verifyObjectUrl(p.key, p.expires, p.signature, secret, now)).toBe('ok');
    expect(verifyObjectUrl(p.key, p.expires, p.signature, secret, now + 3599_000)).toBe('ok');
    expect(verifyObjectUrl(p.key, p.expires, p.signature, secret, now + 3600_000)).toBe('expired');
    expect(verifyObjectUrl(p.key, Number(p.expires), p.signature, secret, now)).toBe('ok');
    expect(verifyObjectUrl(p.key, p.expires, p.signature.toUpperCase(), secret, now)).toBe('ok');
  });

  it('encodes and round-trips keys with characters that need escaping', () => {
    const odd = 'inputs/alice/t 1/init #1?.png';
    const p = parts(signObjectUrl('http://h', odd, 60, secret, now));
    expect(p.key).toBe(odd);
    expect(verifyObjectUrl(p.key, p.expires, p.signature, secret, now)).toBe('ok');
  });

  it('calls a tampered key, expiry or signature invalid, even when expired', () => {
    const p = parts(url);
    expect(verifyObjectUrl('images/bob/t1_1.png', p.expires, p.signature, secret, now)).toBe('invalid');
    expect(verifyObjectUrl(p.key, String(Number(p.expires) + 3600), p.signature, secret, now)).toBe('invalid');
    const flipped = (p.signature[0] === 'a' ? 'b' : 'a') + p.signature.slice(1);
    expect(verifyObjectUrl(p.key, p.expires, flipped, secret, now)).toBe('invalid');
    expect(verifyObjectUrl(p.key, p.expires, p.signature, Buffer.alloc(32, 8), now)).toBe('invalid');
    expect(verifyObjectUrl(p.key, p.expires, flipped, secret, now + 10_000_000)).toBe('invalid');
    // A non-canonical spelling of the same number is not the signed text.
    expect(verifyObjectUrl(p.key, `0${p.expires}`, p.signature, secret, now)).toBe('invalid');
  });

  it('calls garbage invalid without throwing', () => {
    const p = parts(url);
    const garbage: unknown[][] = [
      [undefined, p.expires, p.signature],
      [p.key, undefined, p.signature],
      [p.key, p.expires, undefined],
      [p.key, '', p.signature],
      [p.key, '-1', p.signature],
      [p.key, '1e10', p.signature],
      [p.key, '12.5', p.signature],
      [p.key, 'NaN', p.signature],
      [p.key, 1.5, p.signature],
      [p.key, '9'.repeat(400), p.signature],
      [p.key, p.expires, ''],
      [p.key, p.expires, 'zz'.repeat(32)],
      [p.key, p.expires, p.signature.slice(2)],
      [p.key, p.expires, `${p.signature}00`],
      [p.key, p.expires, ['a']],
      ['../etc/passwd', p.expires, p.signature],
      ['', p.expires, p.signature],
      [{}, {}, {}],
    ];
    for (const [k, e, s] of garbage) expect(verifyObjectUrl(k, e, s, secret, now)).toBe('invalid');
  });

  it('refuses to sign an unsafe key', () => {
    expect(() => signObjectUrl('http://h', '../x', 60, secret)).toThrow();
  });
});

describe('loadUrlSecret', () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = join(mkdtempSync(join(tmpdir(), 'sdflow-secret-')), 'data');
  });
  afterEach(() => rmSync(join(dataDir, '..'), { recursive: true, force: true }));

  it('generates a private 32-byte secret once and reuses it', () => {
    const config = loadConfig({ SDFLOW_DATA_DIR: dataDir });
    const first = loadUrlSecret(config.stores);
    expect(first).toHaveLength(32);
    expect(statSync(urlSecretFile(dataDir)).mode & 0o777).toBe(0o600);
    const second = loadUrlSecret(loadConfig({ SDFLOW_DATA_DIR: dataDir }).stores);
    expect(second.equals(first)).toBe(true);
    expect(readFileSync(urlSecretFile(dataDir), 'utf8').trim()).toBe(first.toString('hex'));
  });

  it('prefers SDFLOW_URL_SECRET and leaves the data dir alone', () => {
    const config = loadConfig({ SDFLOW_DATA_DIR: dataDir, SDFLOW_URL_SECRET: 'from-the-environment' });
    expect(loadUrlSecret(config.stores).toString('utf8')).toBe('from-the-environment');
    expect(() => statSync(urlSecretFile(dataDir))).toThrow();
  });

  it('reports a damaged secret file instead of replacing it', () => {
    loadUrlSecret(loadConfig({ SDFLOW_DATA_DIR: dataDir }).stores);
    writeFileSync(urlSecretFile(dataDir), 'short\n');
    expect(() => loadUrlSecret(loadConfig({ SDFLOW_DATA_DIR: dataDir }).stores)).toThrow(/32-byte hex secret/);
    expect(readFileSync(urlSecretFile(dataDir), 'utf8')).toBe('short\n');
  });
});
