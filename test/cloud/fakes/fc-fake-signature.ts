import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

// The FC fake's own check of Alibaba Cloud's V3 signature (ACS3-HMAC-SHA256), written from the documentation
// ("V3 request structure and signature"), never from the SDK's or the adapter's signer. It rebuilds the canonical
// request from the request as the server received it:
//
//   METHOD \n CanonicalURI \n CanonicalQueryString \n CanonicalHeaders \n SignedHeaders \n HashedRequestPayload
//
// - CanonicalURI: the received path, each segment decoded and percent-encoded again per RFC 3986 ('/' kept);
// - CanonicalQueryString: the received parameters, names and values decoded then RFC 3986-encoded, sorted by name,
//   `name=value` joined with '&' (a parameter without a value is `name=`);
// - CanonicalHeaders: for each name of the Authorization's SignedHeaders, `name:trimmed value\n`;
// - HashedRequestPayload: for OpenAPI calls, x-acs-content-sha256, which must be the hex SHA-256 of the body; for
//   HTTP triggers with signature auth, empty (FC's trigger documentation signs with an empty payload);
//
// then StringToSign = 'ACS3-HMAC-SHA256\n' + hex(sha256(CanonicalRequest)), and the signature is
// hex(HMAC-SHA256(AccessKeySecret, StringToSign)), compared in constant time.

export interface FakeCredentials {
  accessKeyId: string;
  accessKeySecret: string;
  /** When set, requests must carry it as x-acs-security-token (STS credentials). */
  securityToken?: string;
}

export interface ReceivedRequest {
  method: string;
  /** The raw request target: path and query as sent. */
  url: string;
  /** Lower-case names; repeated headers joined with ', ' as Node does. */
  headers: Record<string, string>;
  body: Buffer;
}

export interface SignatureRules {
  /** 'content-header': the payload hash is x-acs-content-sha256 and must match the body; 'empty': ''. */
  payload: 'content-header' | 'empty';
  /** Headers that must be signed besides every x-acs-* header sent. */
  mustSign: string[];
  /** Accept a nonce once (OpenAPI calls carry x-acs-signature-nonce). */
  nonces?: Map<string, number>;
}

export class SignatureError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const MAX_SKEW_MS = 15 * 60 * 1000;
const ACS_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$/;
const AUTHORIZATION = /^ACS3-HMAC-SHA256 Credential=([^,\s]+),SignedHeaders=([a-z0-9;_-]+),Signature=([0-9a-f]{64})$/;

const sha256Hex = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

function percentEncode(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-_.~]/.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new SignatureError(400, 'InvalidURI', `malformed percent-encoding in ${JSON.stringify(text)}`);
  }
}

function canonicalUri(path: string): string {
  return path === ''
    ? '/'
    : path
        .split('/')
        .map((segment) => percentEncode(decode(segment)))
        .join('/');
}

function canonicalQueryString(query: string): string {
  if (query === '') return '';
  const pairs = query
    .split('&')
    .filter((part) => part !== '')
    .map((part) => {
      const eq = part.indexOf('=');
      const name = eq < 0 ? part : part.slice(0, eq);
      const value = eq < 0 ? '' : part.slice(eq + 1);
      return [percentEncode(decode(name)), percentEncode(decode(value))];
    });
  pairs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return pairs.map(([name, value]) => `${name}=${value}`).join('&');
}

/** Checks the request's V3 signature; answers the access key id, or throws a SignatureError. */
export function verifyAcs3(
  request: ReceivedRequest,
  credentials: FakeCredentials,
  rules: SignatureRules,
  now = Date.now(),
): string {
  const { headers } = request;
  const authorization = headers.authorization;
  if (authorization === undefined) {
    throw new SignatureError(403, 'MissingAuthorization', 'the request carries no Authorization header');
  }
  const match = AUTHORIZATION.exec(authorization);
  if (!match) {
    throw new SignatureError(403, 'IncompleteSignature', `the Authorization header is malformed: ${authorization}`);
  }
  const [, accessKeyId, signedHeaderList, signature] = match;
  if (accessKeyId !== credentials.accessKeyId) {
    throw new SignatureError(403, 'InvalidAccessKeyId', `the AccessKey id ${accessKeyId} does not exist`);
  }
  const signedHeaders = signedHeaderList.split(';');
  const sorted = [...new Set(signedHeaders)].sort();
  if (sorted.join(';') !== signedHeaders.join(';')) {
    throw new SignatureError(403, 'IncompleteSignature', 'SignedHeaders must be sorted, without repeats');
  }
  const unsigned = [...rules.mustSign, ...Object.keys(headers).filter((name) => name.startsWith('x-acs-'))].filter(
    (name) => !signedHeaders.includes(name),
  );
  if (unsigned.length > 0) {
    throw new SignatureError(403, 'IncompleteSignature', `these headers must be signed: ${unsigned.join(', ')}`);
  }
  const missing = signedHeaders.filter((name) => headers[name] === undefined);
  if (missing.length > 0) {
    throw new SignatureError(
      403,
      'IncompleteSignature',
      `signed headers missing from the request: ${missing.join(', ')}`,
    );
  }
  const date = headers['x-acs-date'] ?? '';
  if (!ACS_DATE.test(date)) {
    throw new SignatureError(
      403,
      'InvalidTimeStamp.Format',
      `x-acs-date must be UTC ISO 8601, got ${JSON.stringify(date)}`,
    );
  }
  if (Math.abs(now - Date.parse(date)) > MAX_SKEW_MS) {
    throw new SignatureError(403, 'InvalidTimeStamp.Expired', `x-acs-date ${date} is more than 15 minutes off`);
  }
  if (credentials.securityToken !== undefined && headers['x-acs-security-token'] !== credentials.securityToken) {
    throw new SignatureError(403, 'InvalidSecurityToken', 'the security token is missing or wrong');
  }
  let payloadHash = '';
  if (rules.payload === 'content-header') {
    payloadHash = headers['x-acs-content-sha256'] ?? '';
    if (payloadHash !== sha256Hex(request.body)) {
      throw new SignatureError(400, 'ContentSha256Mismatch', 'x-acs-content-sha256 is not the SHA-256 of the body');
    }
  }
  const queryAt = request.url.indexOf('?');
  const path = queryAt < 0 ? request.url : request.url.slice(0, queryAt);
  const query = queryAt < 0 ? '' : request.url.slice(queryAt + 1);
  const canonicalRequest = [
    request.method.toUpperCase(),
    canonicalUri(path),
    canonicalQueryString(query),
    signedHeaders.map((name) => `${name}:${(headers[name] ?? '').trim()}\n`).join(''),
    signedHeaders.join(';'),
    payloadHash,
  ].join('\n');
  const stringToSign = `ACS3-HMAC-SHA256\n${sha256Hex(canonicalRequest)}`;
  const expected = createHmac('sha256', credentials.accessKeySecret).update(stringToSign).digest('hex');
  if (!timingSafeEqual(Buffer.from(signature), Buffer.from(expected))) {
    throw new SignatureError(
      403,
      'SignatureNotMatch',
      `the request signature does not match; the string to sign was ${JSON.stringify(stringToSign)}`,
    );
  }
  if (rules.nonces) {
    const nonce = headers['x-acs-signature-nonce'];
    if (!nonce) throw new SignatureError(403, 'MissingSignatureNonce', 'x-acs-signature-nonce is required');
    for (const [seen, at] of rules.nonces) if (now - at > MAX_SKEW_MS) rules.nonces.delete(seen);
    if (rules.nonces.has(nonce)) {
      throw new SignatureError(403, 'SignatureNonceUsed', `the signature nonce ${nonce} has been used`);
    }
    rules.nonces.set(nonce, now);
  }
  return accessKeyId;
}
