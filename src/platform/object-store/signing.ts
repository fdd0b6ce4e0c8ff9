import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { StoresConfig } from '../../config/index.js';
import { urlSecretFile } from '../../data-dir.js';
import { readOrCreateSecretFile, type SecretKind } from '../../secret-file.js';
import { assertSafeKey, isSafeKey } from './keys.js';

// Signed download links of the local object store: `<publicUrl>/files/<key>?expires=<unix s>&signature=<hex>`,
// where the signature is HMAC-SHA256 over `<key>\n<expires>`. The signature alone authorizes the download.

export type UrlVerdict = 'ok' | 'expired' | 'invalid';

const SECRET_BYTES = 32;
const EXPIRES = /^(0|[1-9][0-9]{0,14})$/;
const SIGNATURE = /^[0-9a-fA-F]{64}$/;

function signature(key: string, expires: number, secret: Buffer | string): Buffer {
  return createHmac('sha256', secret).update(`${key}\n${expires}`).digest();
}

/** The URL path of a key under `/files/`, each segment percent-encoded. */
export function filesPath(key: string): string {
  return `/files/${key.split('/').map(encodeURIComponent).join('/')}`;
}

/** A link to `key` on the API at `publicUrl`, valid for `ttlS` seconds from `now` (ms). */
export function signObjectUrl(
  publicUrl: string,
  key: string,
  ttlS: number,
  secret: Buffer | string,
  now = Date.now(),
): string {
  assertSafeKey(key);
  const expires = Math.floor(now / 1000) + Math.ceil(ttlS);
  const sig = signature(key, expires, secret).toString('hex');
  return `${publicUrl.replace(/\/$/, '')}${filesPath(key)}?expires=${expires}&signature=${sig}`;
}

/**
 * Checks a link's parts as the `/files/` route received them (the key decoded, the query values raw). A forged or
 * malformed link is `invalid`, whatever its expiry; only a genuine link can be `expired`. Never throws.
 */
export function verifyObjectUrl(
  key: unknown,
  expires: unknown,
  sig: unknown,
  secret: Buffer | string,
  now = Date.now(),
): UrlVerdict {
  if (typeof key !== 'string' || typeof sig !== 'string' || !SIGNATURE.test(sig)) return 'invalid';
  const expiresText = typeof expires === 'number' ? String(expires) : expires;
  if (typeof expiresText !== 'string' || !EXPIRES.test(expiresText)) return 'invalid';
  if (!isSafeKey(key)) return 'invalid';
  const expiresS = Number(expiresText);
  if (!timingSafeEqual(Buffer.from(sig, 'hex'), signature(key, expiresS, secret))) return 'invalid';
  return now >= expiresS * 1000 ? 'expired' : 'ok';
}

/** The generated form of the URL-signing secret: 32 random bytes in hex. */
const URL_SECRET: SecretKind = {
  generate: () => randomBytes(SECRET_BYTES).toString('hex'),
  valid: (text) => /^[0-9a-f]+$/.test(text) && text.length === SECRET_BYTES * 2,
  what: `a ${SECRET_BYTES}-byte hex secret`,
};

/**
 * The signing secret: SDFLOW_URL_SECRET when set, else a random one generated once and kept in the data dir, so
 * every process of the deployment (and every restart) signs and verifies with the same secret.
 */
export function loadUrlSecret(stores: StoresConfig): Buffer {
  if (stores.urlSecret !== undefined) return Buffer.from(stores.urlSecret, 'utf8');
  return Buffer.from(readOrCreateSecretFile(urlSecretFile(stores.dataDir), URL_SECRET), 'hex');
}
