import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import OSS from 'ali-oss';
import { ConfigError, type OssConfig } from '../../../config/index.js';
import type { RetryPolicy } from '../../retry.js';
import { contentTypeFor } from '../content-type.js';
import { assertSafeKey, isSafeKey } from '../keys.js';
import { type ObjectInfo, ObjectNotFoundError, type ObjectStore, type PutOptions } from '../port.js';
import { ObjectStoreError, withRetries } from './retry.js';
import { bufferBody, type SpooledBody, spoolStream } from './spool.js';

export { ObjectStoreError } from './retry.js';

// The object store on Alibaba Cloud OSS, through the `ali-oss` SDK (header signatures V1, its default).
//
// Settings (SDFLOW_OBJECT_STORE=oss):
//   SDFLOW_OSS_BUCKET                     the bucket (required)
//   SDFLOW_OSS_REGION                     e.g. oss-cn-hangzhou or cn-hangzhou; or instead
//   SDFLOW_OSS_ENDPOINT                   an endpoint URL, e.g. https://oss-cn-hangzhou-internal.aliyuncs.com; it
//                                         takes precedence over the region. A URL without a scheme gets https.
//   SDFLOW_OSS_CNAME=1                    the endpoint is a custom domain bound to the bucket, so the bucket is not
//                                         put in front of its host name
//   SDFLOW_OSS_INTERNAL=1                 with a region: the VPC-internal endpoint (no traffic charges inside Alibaba)
//   ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET (required), ALIBABA_CLOUD_SECURITY_TOKEN (STS)
//   SDFLOW_OSS_TIMEOUT_S (60)             per request: connecting, and waiting for the answer
//   SDFLOW_OSS_MAX_ATTEMPTS (4)           attempts per request, the first included
//   SDFLOW_OSS_MULTIPART_THRESHOLD_MB (64), SDFLOW_OSS_PART_SIZE_MB (16)
// A missing setting fails construction with a message naming it. Signed URLs last the ttl their caller passes (the
// platform passes SDFLOW_URL_TTL_S, 1 h by default) and are plain OSS V1 query signatures on the bucket's host.
//
// Behaviour:
// - put: a body of at most the multipart threshold goes up in one PutObject, with Content-MD5 (OSS checks it); a
//   larger one by multipart upload, part by part, several at a time. A stream is read to its end before anything is
//   sent (spool.ts): in memory up to the threshold, in a temp file past it. The content's sha256 travels as the
//   object's `x-oss-meta-sha256`, so head returns it as the etag without reading the object. The content type is the
//   one given, else the key's extension's (as in the local store). After the write, a HEAD confirms that OSS holds
//   exactly what was sent (size and sha256); only then does put resolve, with that HEAD's ObjectInfo. A multipart
//   upload that fails is aborted, so OSS keeps no parts of it (should the abort itself fail, a bucket lifecycle rule
//   for incomplete multipart uploads removes them).
// - Objects written by other tools (ossutil, the console) lack the metadata: head then hashes the object once by
//   reading it, and remembers the result in this process for as long as OSS's ETag stays the same.
// - get and getStream of a missing object throw ObjectNotFoundError; head answers null; delete of a missing object
//   is fine. list follows continuation tokens to the end, skips keys no ObjectStore key could name (such as the
//   console's `folder/` markers), describes each object with a HEAD (listings carry neither the content type nor
//   the sha256) and answers sorted by key.
// - getStream's stream has no overall deadline; a connection that stalls is cut by the SDK's keep-alive agent.
// - Throttling (429, 503 SlowDown), other 5xx, timeouts and broken connections are retried with exponential backoff
//   and jitter, request by request (a multipart upload part by part). Every request retried is safe to repeat:
//   puts send the same bytes again, and a CompleteMultipartUpload whose first answer was lost is settled by the HEAD
//   that follows it. Authorization errors (AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch) and other 4xx
//   are never retried. Every failure is an ObjectStoreError naming the operation, the object, OSS's error code and
//   the request id. A write that failed never resolves.

/** OSS's limits: one PutObject carries at most 5 GB; a multipart upload has at most 10,000 parts. */
const MAX_PUT_BYTES = 5 * 1024 ** 3;
const MAX_PARTS = 10_000;
/** Parts of one upload in flight at once. */
const PART_CONCURRENCY = 4;
/** HEAD requests in flight at once while listing. */
const LIST_CONCURRENCY = 8;
/** How many etags of objects without our metadata this process remembers. */
const FOREIGN_ETAG_CACHE = 1024;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const SHA256_META = 'x-oss-meta-sha256';

type Headers = Record<string, string | undefined>;

/** ali-oss hands back Node's response headers, lower-case; its types only say `object`. */
const headersOf = (res: { headers: object }) => res.headers as Headers;

const isNotFound = (err: unknown) => err instanceof ObjectStoreError && err.code === 'NoSuchKey';

/** Runs `work` over `items`, at most `limit` at a time, keeping the order of the results. */
async function mapLimit<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** The SDK's options from config, after checking that every required setting is there. */
function clientOptions(oss: OssConfig): OSS.Options & { bucket: string } {
  const { credentials } = oss;
  const missing: string[] = [];
  if (!oss.bucket) missing.push('SDFLOW_OSS_BUCKET');
  if (!oss.region && !oss.endpoint) missing.push('SDFLOW_OSS_REGION or SDFLOW_OSS_ENDPOINT');
  if (oss.cname && !oss.endpoint) missing.push('SDFLOW_OSS_ENDPOINT (the custom domain that SDFLOW_OSS_CNAME names)');
  if (!credentials.accessKeyId) missing.push('ALIBABA_CLOUD_ACCESS_KEY_ID');
  if (!credentials.accessKeySecret) missing.push('ALIBABA_CLOUD_ACCESS_KEY_SECRET');
  // The first three repeat checks above, for the type checker.
  if (!oss.bucket || !credentials.accessKeyId || !credentials.accessKeySecret || missing.length > 0) {
    throw new ConfigError(`the OSS object store (SDFLOW_OBJECT_STORE=oss) needs ${missing.join(', ')}`);
  }
  // ali-oss builds the endpoint's host from the region as `<region>.aliyuncs.com`, so it wants `oss-cn-hangzhou`;
  // Alibaba's region ids are `cn-hangzhou`. Both are accepted (and the SDK's own `vpc100-oss-…` form).
  const region = oss.region && (/^(vpc100-)?oss-/.test(oss.region) ? oss.region : `oss-${oss.region}`);
  return {
    bucket: oss.bucket,
    accessKeyId: credentials.accessKeyId,
    accessKeySecret: credentials.accessKeySecret,
    ...(credentials.securityToken ? { stsToken: credentials.securityToken } : {}),
    // Only settings that are set: the SDK's defaults are merged with Object.assign, which an undefined overrides.
    ...(region ? { region } : {}),
    ...(oss.endpoint ? { endpoint: oss.endpoint } : {}),
    cname: oss.cname,
    internal: oss.internal,
    secure: true,
    timeout: oss.timeoutS * 1000,
  };
}

export class OssObjectStore implements ObjectStore {
  private readonly client: OSS;
  private readonly bucket: string;
  private readonly partSize: number;
  private readonly multipartThreshold: number;
  private readonly retry: RetryPolicy;
  /** sha256 of objects that lack our metadata, by `key\netag`. */
  private readonly foreignEtags = new Map<string, string>();

  constructor(oss: OssConfig) {
    const options = clientOptions(oss);
    try {
      this.client = new OSS(options);
    } catch (err) {
      // The SDK checks the bucket's name and the endpoint's scheme.
      throw new ConfigError(
        `the OSS object store cannot use SDFLOW_OSS_BUCKET, SDFLOW_OSS_REGION or SDFLOW_OSS_ENDPOINT: ${(err as Error).message}`,
      );
    }
    this.bucket = options.bucket;
    this.partSize = oss.partSizeBytes;
    this.multipartThreshold = Math.min(oss.multipartThresholdBytes, MAX_PUT_BYTES);
    this.retry = { maxAttempts: oss.maxAttempts, baseDelayMs: 200, maxDelayMs: 5000 };
  }

  private request<T>(operation: string, key: string, request: (attempt: number) => Promise<T>): Promise<T> {
    return withRetries(this.retry, { operation, bucket: this.bucket, key }, request);
  }

  async put(key: string, body: Buffer | Readable, options: PutOptions = {}): Promise<ObjectInfo> {
    assertSafeKey(key);
    const contentType = options.contentType ?? contentTypeFor(key);
    const spooled = Buffer.isBuffer(body) ? bufferBody(body) : await spoolStream(body, this.multipartThreshold);
    try {
      const headers = { 'Content-Type': contentType, [SHA256_META]: spooled.sha256 };
      if (spooled.buffer && spooled.size <= this.multipartThreshold) {
        const content = spooled.buffer;
        await this.request('PutObject', key, () => this.client.put(key, content, { headers }));
      } else {
        await this.putMultipart(key, spooled, headers);
      }
      return await this.confirm(key, spooled);
    } finally {
      await spooled.dispose();
    }
  }

  async get(key: string): Promise<Buffer> {
    assertSafeKey(key);
    try {
      const { content } = await this.request('GetObject', key, () => this.client.get(key));
      return Buffer.isBuffer(content) ? content : Buffer.from(content ?? '');
    } catch (err) {
      if (isNotFound(err)) throw new ObjectNotFoundError(key);
      throw err;
    }
  }

  async getStream(key: string): Promise<Readable> {
    assertSafeKey(key);
    try {
      const result = await this.request('GetObject', key, () => this.client.getStream(key));
      return result.stream as Readable;
    } catch (err) {
      if (isNotFound(err)) throw new ObjectNotFoundError(key);
      throw err;
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    assertSafeKey(key);
    let headers: Headers;
    try {
      headers = headersOf((await this.request('HeadObject', key, () => this.client.head(key))).res);
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    const sha256 = headers[SHA256_META];
    if (sha256 && SHA256_HEX.test(sha256)) return this.info(key, headers, sha256);
    const known = this.foreignEtags.get(`${key}\n${headers.etag}`);
    return known ? this.info(key, headers, known) : this.hashForeign(key);
  }

  async delete(key: string): Promise<void> {
    assertSafeKey(key);
    try {
      await this.request('DeleteObject', key, () => this.client.delete(key));
    } catch (err) {
      // OSS answers 204 for a missing object; a 404 here would say the same.
      if (!isNotFound(err)) throw err;
    }
  }

  /** Every object whose key starts with `prefix` (a plain string prefix), sorted by key. */
  async list(prefix: string): Promise<ObjectInfo[]> {
    if (prefix !== '') assertSafeKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
    const keys: string[] = [];
    let token: string | null = null;
    do {
      const after: string | null = token;
      const page: OSS.ListV2ObjectResult = await this.request('ListObjectsV2', prefix, () =>
        // A new query each time: the SDK deletes the token from the object it is given.
        this.client.listV2({ prefix, 'max-keys': 1000, ...(after ? { 'continuation-token': after } : {}) }),
      );
      // An object whose name no key can address (put there by other means) is left out.
      for (const object of page.objects ?? []) if (isSafeKey(object.name)) keys.push(object.name);
      token = page.isTruncated ? page.nextContinuationToken || null : null;
      if (page.isTruncated && !token) {
        throw new ObjectStoreError({
          operation: 'ListObjectsV2',
          bucket: this.bucket,
          key: prefix,
          attempts: 1,
          status: page.res.status,
          code: 'MissingContinuationToken',
          requestId: headersOf(page.res)['x-oss-request-id'],
          detail: 'a truncated page came without a continuation token, so the listing cannot go on',
          retryable: false,
        });
      }
    } while (token);
    const infos = await mapLimit(keys, LIST_CONCURRENCY, (key) => this.head(key));
    return infos
      .filter((info): info is ObjectInfo => info !== null)
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async signedUrl(key: string, ttlS: number): Promise<string> {
    assertSafeKey(key);
    // The SDK reads an expiry of 0 as its own default (30 min), so a non-positive ttl is refused rather than passed.
    if (!Number.isFinite(ttlS) || ttlS <= 0) throw new RangeError(`signed URL ttl must be positive, got ${ttlS}`);
    return this.client.signatureUrl(key, { expires: Math.ceil(ttlS), method: 'GET' });
  }

  private async putMultipart(key: string, body: SpooledBody, headers: Record<string, string>): Promise<void> {
    const { uploadId } = await this.request('InitiateMultipartUpload', key, () =>
      this.client.initMultipartUpload(key, { headers }),
    );
    try {
      const parts = await this.uploadParts(key, uploadId, body);
      await this.request('CompleteMultipartUpload', key, async (attempt) => {
        try {
          await this.client.completeMultipartUpload(key, uploadId, parts);
        } catch (err) {
          // An earlier attempt completed the upload but its answer was lost, so OSS no longer knows the upload id.
          // Whether the object is ours is for the HEAD that follows every put to tell.
          if (attempt > 1 && (err as { code?: unknown }).code === 'NoSuchUpload') return;
          throw err;
        }
      });
    } catch (err) {
      // Best effort: the upload's parts must not linger. The failure reported is the upload's, not the abort's.
      await this.request('AbortMultipartUpload', key, () => this.client.abortMultipartUpload(key, uploadId)).catch(
        () => {},
      );
      throw err;
    }
  }

  /** Uploads the parts, several at a time, each with its own retries; stops starting parts at the first failure. */
  private async uploadParts(
    key: string,
    uploadId: string,
    body: SpooledBody,
  ): Promise<Array<{ number: number; etag: string }>> {
    const partSize = Math.max(this.partSize, Math.ceil(body.size / MAX_PARTS));
    const count = Math.ceil(body.size / partSize);
    const etags: string[] = new Array(count);
    let next = 0;
    let failed = false;
    const worker = async () => {
      while (!failed && next < count) {
        const index = next++;
        const start = index * partSize;
        const end = Math.min(body.size, start + partSize);
        try {
          const result = await this.request(`UploadPart ${index + 1}/${count}`, key, () =>
            this.client.uploadPart(key, uploadId, index + 1, body.source, start, end),
          );
          etags[index] = result.etag;
        } catch (err) {
          failed = true;
          throw err;
        }
      }
    };
    const outcomes = await Promise.allSettled(Array.from({ length: Math.min(PART_CONCURRENCY, count) }, worker));
    const failure = outcomes.find((outcome) => outcome.status === 'rejected');
    if (failure) throw failure.reason;
    return etags.map((etag, index) => ({ number: index + 1, etag }));
  }

  /** The HEAD after a write: resolves only when OSS holds exactly the bytes that were sent. */
  private async confirm(key: string, body: SpooledBody): Promise<ObjectInfo> {
    const result = await this.request('HeadObject', key, () => this.client.head(key)).catch((err: unknown) => {
      if (isNotFound(err)) return null;
      throw err;
    });
    const headers = result ? headersOf(result.res) : {};
    const info = result ? this.info(key, headers, headers[SHA256_META] ?? '') : null;
    if (info && info.size === body.size && info.etag === body.sha256) return info;
    throw new ObjectStoreError({
      operation: 'PutObject',
      bucket: this.bucket,
      key,
      attempts: 1,
      status: result?.res.status,
      code: 'WriteNotConfirmed',
      requestId: headers['x-oss-request-id'],
      detail: info
        ? `OSS holds ${info.size} bytes with sha256 ${info.etag || '(none)'}, not the ${body.size} bytes with sha256 ${body.sha256} that were written`
        : 'the object is missing right after it was written',
      retryable: false,
    });
  }

  /** An object without our metadata: reads it once to hash it, and describes it from that GET's own headers. */
  private async hashForeign(key: string): Promise<ObjectInfo | null> {
    let result: OSS.GetStreamResult;
    try {
      result = await this.request('GetObject', key, () => this.client.getStream(key));
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    const hash = createHash('sha256');
    await pipeline(result.stream as Readable, hash);
    const sha256 = hash.digest('hex');
    const headers = headersOf(result.res);
    const cacheKey = `${key}\n${headers.etag}`;
    this.foreignEtags.delete(cacheKey);
    this.foreignEtags.set(cacheKey, sha256);
    if (this.foreignEtags.size > FOREIGN_ETAG_CACHE) {
      const oldest = this.foreignEtags.keys().next();
      if (!oldest.done) this.foreignEtags.delete(oldest.value);
    }
    return this.info(key, headers, sha256);
  }

  private info(key: string, headers: Headers, sha256: string): ObjectInfo {
    return {
      key,
      size: Number(headers['content-length'] ?? 0),
      etag: sha256,
      contentType: headers['content-type'] ?? 'application/octet-stream',
      lastModified: new Date(headers['last-modified'] ?? 0),
    };
  }
}
