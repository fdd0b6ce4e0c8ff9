import { createHash, createHmac } from 'node:crypto';

// Signatures of requests to FC 3.0 HTTP triggers whose authType is `function`. FC's documentation ("Configure
// signature authentication for HTTP triggers") has triggers follow Alibaba Cloud's V3 signature (ACS3-HMAC-SHA256,
// "V3 request structure and signature"), signing the headers x-acs-date (UTC, ISO 8601) and x-acs-security-token
// (empty without STS) with an empty hashed payload, so a streamed body needs no hashing up front:
//
//   CanonicalRequest = METHOD \n CanonicalURI \n CanonicalQueryString \n CanonicalHeaders \n SignedHeaders \n ''
//   StringToSign     = 'ACS3-HMAC-SHA256' \n hex(sha256(CanonicalRequest))
//   Signature        = hex(hmac-sha256(AccessKeySecret, StringToSign))
//   Authorization    = 'ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<names>,Signature=<signature>'
//
// CanonicalURI is the path with each segment percent-encoded per RFC 3986; CanonicalQueryString the parameters
// sorted by name, names and values percent-encoded, joined as name=value with &; CanonicalHeaders each signed header
// as lowercase-name:trimmed-value\n, sorted by name; SignedHeaders their names joined with ;.

export const TRIGGER_SIGNATURE_ALGORITHM = 'ACS3-HMAC-SHA256';

export interface TriggerCredentials {
  accessKeyId: string;
  accessKeySecret: string;
  securityToken?: string;
}

/** RFC 3986 percent-encoding: everything but A-Z a-z 0-9 - _ . ~ */
export function rfc3986(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The path as the signature encodes it (and as the request must carry it): each segment encoded. */
export function canonicalPath(path: string): string {
  if (path === '') return '/';
  return path
    .split('/')
    .map((segment) => rfc3986(decodeURIComponent(segment)))
    .join('/');
}

/** The query as sent (`?a=1&b=x%20y`), canonical: each name and value decoded, encoded again, sorted by name. */
function canonicalQuery(search: string): string {
  return search
    .replace(/^\?/, '')
    .split('&')
    .filter((pair) => pair !== '')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const name = eq < 0 ? pair : pair.slice(0, eq);
      const value = eq < 0 ? '' : pair.slice(eq + 1);
      return [rfc3986(decodeURIComponent(name)), rfc3986(decodeURIComponent(value))] as const;
    })
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
}

/** x-acs-date's format: seconds, UTC, with a Z. */
export function acsDate(now = new Date()): string {
  return now.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * The headers that authorize one request to a `function`-auth trigger: x-acs-date, x-acs-security-token and
 * Authorization. `url` is the request's URL, path and query included.
 */
export function signTriggerRequest(
  method: string,
  url: URL,
  credentials: TriggerCredentials,
  now = new Date(),
): Record<string, string> {
  const signed: Record<string, string> = {
    'x-acs-date': acsDate(now),
    'x-acs-security-token': credentials.securityToken ?? '',
  };
  const names = Object.keys(signed).sort();
  const canonicalRequest = [
    method.toUpperCase(),
    canonicalPath(url.pathname),
    canonicalQuery(url.search),
    names.map((name) => `${name}:${signed[name].trim()}\n`).join(''),
    names.join(';'),
    '',
  ].join('\n');
  const stringToSign = `${TRIGGER_SIGNATURE_ALGORITHM}\n${createHash('sha256').update(canonicalRequest).digest('hex')}`;
  const signature = createHmac('sha256', credentials.accessKeySecret).update(stringToSign).digest('hex');
  return {
    ...signed,
    authorization: `${TRIGGER_SIGNATURE_ALGORITHM} Credential=${credentials.accessKeyId},SignedHeaders=${names.join(';')},Signature=${signature}`,
  };
}
