import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import type { ResolvedTarget } from './targets.js';

// One webhook POST, to the address the target check passed: the connection's lookup answers that address whatever
// DNS says now, while the Host header and TLS (SNI and the certificate check) still use the URL's host name.
// Redirects are not followed: a 3xx is an answer like any other.

/** How long the body of an answer may be; the rest is not read. */
const MAX_ANSWER_BYTES = 64 * 1024;

/** Sends `body` to the target and answers its HTTP status. Throws on a network error or after `timeoutMs`. */
export function postWebhook(
  target: ResolvedTarget,
  body: string,
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<number> {
  const pinned: LookupFunction = (_host, options, callback) => {
    if (options.all) callback(null, [{ address: target.address, family: target.family }]);
    else callback(null, target.address, target.family);
  };
  const request = target.url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(target.url, {
      method: 'POST',
      lookup: pinned,
      // A fresh connection each time: a pooled one may have been opened to an address checked for another delivery.
      agent: false,
      headers: {
        ...headers,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'user-agent': 'sdflow-webhooks',
      },
    });
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('response', (res) => {
      clearTimeout(timer);
      resolve(res.statusCode ?? 0);
      // The status is the answer; the body is read off (up to a limit) only so the connection ends cleanly.
      let read = 0;
      res.on('data', (chunk: Buffer) => {
        read += chunk.length;
        if (read > MAX_ANSWER_BYTES) res.destroy();
      });
      res.on('error', () => {});
    });
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end(body);
  });
}
