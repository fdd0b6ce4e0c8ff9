import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished, pipeline } from 'node:stream/promises';

// An honest local stand-in for one Alibaba Cloud OSS bucket: a real HTTP server speaking the subset of the OSS REST
// API that the OSS object store uses, written from OSS's API documentation, never from the SDK's code.
//
// - It serves the bucket on its own origin, as OSS serves a bucket on a custom domain bound to it (a CNAME): the
//   adapter under test runs with SDFLOW_OSS_CNAME=1 and SDFLOW_OSS_ENDPOINT=http://localhost:<port>.
// - Every request must be signed. Header signatures are checked with the documented V1 algorithm
//   (`Authorization: OSS <AccessKeyId>:<base64 HMAC-SHA1>` over VERB, Content-MD5, Content-Type, the date (x-oss-date
//   before Date), the canonicalized x-oss-* headers and the canonicalized resource `/<bucket>/<key>` with its
//   sub-resources), and the date must be within 15 minutes. URL signatures (OSSAccessKeyId, Expires, Signature and,
//   for STS, security-token) are checked the same way with Expires in the date's place, expiry first.
// - Bodies are kept in files under a temp dir, so a multipart test of tens of MB costs no memory. Content-MD5 is
//   verified when sent. CompleteMultipartUpload checks the XML: parts ascending, each uploaded, each with its ETag,
//   each but the last at least 100 KB.
// - Errors are OSS-shaped: `<Error><Code>…</Code><Message>…</Message><RequestId>…</RequestId>…`, with the request id
//   also in `x-oss-request-id`; a HEAD, which has no body, carries the error XML base64-encoded in `x-oss-err`.
// - Anything outside the subset (ranges, conditions, copies, delimiters, ListObjects v1, …) answers 501, so a
//   change in what the adapter sends shows up instead of being half-served.
// - It records every request and injects faults: `fault(next, times)` makes the next matching requests answer an
//   error, hang without answering, have their connection reset, or be carried out with the answer lost.

export interface OssFakeCredentials {
  accessKeyId: string;
  accessKeySecret: string;
  /** When set, requests must carry it (STS credentials): `x-oss-security-token`, or `security-token` in a URL. */
  securityToken?: string;
}

export interface OssFakeOptions {
  bucket: string;
  credentials: OssFakeCredentials;
  /** At most this many keys per ListObjectsV2 page, whatever max-keys asks for (OSS may always answer fewer). */
  maxPageSize?: number;
}

export interface RecordedRequest {
  method: string;
  /** OSS's name for the operation: PutObject, UploadPart, ListObjectsV2, … */
  operation: string;
  /** The decoded object key; '' for a bucket request. */
  key: string;
  /** The raw request path and query. */
  url: string;
  query: Record<string, string>;
  /** Lower-case names. */
  headers: Record<string, string>;
  /** Signed in the URL rather than in the Authorization header. */
  signedUrl: boolean;
  bodyLength: number;
  /** The status answered; or what happened instead of an answer. */
  outcome: number | 'hang' | 'reset' | 'dropped';
}

export type Fault = { status: number; code: string; message?: string } | 'hang' | 'reset' | 'drop-response';

export interface FaultMatch {
  operation?: string;
  method?: string;
}

export interface StoredObject {
  key: string;
  body: Buffer;
  contentType: string;
  /** The x-oss-meta-* headers it was written with, lower-case names. */
  meta: Record<string, string>;
  /** OSS's ETag, quoted. */
  etag: string;
  type: 'Normal' | 'Multipart';
  lastModified: Date;
}

interface ObjectEntry {
  file: string;
  size: number;
  contentType: string;
  meta: Record<string, string>;
  etag: string;
  type: 'Normal' | 'Multipart';
  lastModified: Date;
}

interface Part {
  file: string;
  size: number;
  md5: Buffer;
}

interface Upload {
  key: string;
  contentType: string;
  meta: Record<string, string>;
  parts: Map<number, Part>;
}

interface Context {
  req: IncomingMessage;
  res: ServerResponse;
  record: RecordedRequest;
  query: URLSearchParams;
  requestId: string;
  /** Carry the request out, then cut the connection instead of answering. */
  dropResponse: boolean;
}

class OssError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** The sub-resources that OSS's V1 signature puts in the canonicalized resource (documented list). */
const SUB_RESOURCES = new Set([
  'acl',
  'uploads',
  'location',
  'cors',
  'logging',
  'website',
  'referer',
  'lifecycle',
  'delete',
  'append',
  'tagging',
  'objectMeta',
  'uploadId',
  'partNumber',
  'security-token',
  'position',
  'img',
  'style',
  'styleName',
  'replication',
  'replicationProgress',
  'replicationLocation',
  'cname',
  'bucketInfo',
  'comp',
  'qos',
  'live',
  'status',
  'vod',
  'startTime',
  'endTime',
  'symlink',
  'x-oss-process',
  'response-content-type',
  'response-content-language',
  'response-expires',
  'response-cache-control',
  'response-content-disposition',
  'response-content-encoding',
  'udf',
  'udfName',
  'udfImage',
  'udfId',
  'udfImageDesc',
  'udfApplication',
  'udfApplicationLog',
  'restore',
  'callback',
  'callback-var',
  'continuation-token',
  'versionId',
  'versioning',
  'versions',
]);

/** Request features outside the subset this fake implements. */
const UNSUPPORTED_HEADERS = [
  'range',
  'if-match',
  'if-none-match',
  'if-modified-since',
  'if-unmodified-since',
  'x-oss-copy-source',
  'x-oss-forbid-overwrite',
  'x-oss-callback',
];

const MAX_SKEW_MS = 15 * 60 * 1000;
const MIN_PART_BYTES = 100 * 1024;
const SMALL_BODY_LIMIT = 1024 * 1024;

const XML_ENTITIES: Record<string, string> = { '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' };
const xmlEscape = (value: string) => value.replace(/[<>&'"]/g, (ch) => XML_ENTITIES[ch]);
const xmlUnescape = (value: string) =>
  value.replace(
    /&(lt|gt|amp|apos|quot);/g,
    (_, name: string) => ({ lt: '<', gt: '>', amp: '&', apos: "'", quot: '"' })[name] ?? '',
  );
const element = (name: string, value: string | number) => `<${name}>${xmlEscape(String(value))}</${name}>`;
const xmlDocument = (root: string, inner: string) =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<${root}>${inner}</${root}>`;

const md5Hex = (md5: Buffer) => md5.toString('hex').toUpperCase();
const unquote = (etag: string) => etag.trim().replace(/^"|"$/g, '');
const wholeSeconds = (ms: number) => new Date(Math.floor(ms / 1000) * 1000);
const encodeToken = (key: string) => Buffer.from(key, 'utf8').toString('base64url');

function sameSignature(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function operationOf(method: string, key: string, query: URLSearchParams): string {
  if (key === '') return method === 'GET' && query.get('list-type') === '2' ? 'ListObjectsV2' : `Bucket${method}`;
  switch (method) {
    case 'PUT':
      return query.has('uploadId') ? 'UploadPart' : 'PutObject';
    case 'POST':
      if (query.has('uploads')) return 'InitiateMultipartUpload';
      return query.has('uploadId') ? 'CompleteMultipartUpload' : 'PostObject';
    case 'DELETE':
      return query.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
    case 'GET':
      return 'GetObject';
    case 'HEAD':
      return 'HeadObject';
    default:
      return `Object${method}`;
  }
}

export class OssFake {
  readonly requests: RecordedRequest[] = [];
  private readonly objects = new Map<string, ObjectEntry>();
  private readonly uploads = new Map<string, Upload>();
  private readonly faults: Array<{ fault: Fault; remaining: number; match: FaultMatch }> = [];
  private readonly dir = mkdtempSync(join(tmpdir(), 'sdflow-oss-fake-'));
  private fileCounter = 0;
  private port = 0;

  private constructor(
    private readonly options: OssFakeOptions,
    private readonly server: Server,
  ) {}

  /** The bucket accepts only `next` from now on, as OSS does once rotated STS credentials have expired. */
  rotateCredentials(next: OssFakeCredentials): void {
    this.options.credentials = next;
  }

  static async start(options: OssFakeOptions): Promise<OssFake> {
    const server = createServer();
    const fake = new OssFake(options, server);
    server.on('request', (req, res) => {
      fake.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500).end(String(err));
        else res.destroy();
      });
    });
    // Longer than any client keeps an idle socket, so a reused connection is never closed under a request.
    server.keepAliveTimeout = 120_000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    fake.port = (server.address() as AddressInfo).port;
    return fake;
  }

  /** Where the adapter points SDFLOW_OSS_ENDPOINT (with SDFLOW_OSS_CNAME=1). */
  get endpoint(): string {
    return `http://localhost:${this.port}`;
  }

  /** The next `times` requests matching `match` (all, by default) fail with `fault` instead of being served. */
  fault(next: Fault, times = 1, match: FaultMatch = {}): void {
    this.faults.push({ fault: next, remaining: times, match });
  }

  /** Drops the faults not used up yet. */
  clearFaults(): void {
    this.faults.length = 0;
  }

  /** The recorded requests for `operation`, in arrival order. */
  requestsFor(operation: string): RecordedRequest[] {
    return this.requests.filter((r) => r.operation === operation);
  }

  clearRequests(): void {
    this.requests.length = 0;
  }

  /** What the bucket holds at `key`, read straight from storage. */
  stored(key: string): StoredObject | undefined {
    const entry = this.objects.get(key);
    if (!entry) return undefined;
    const { contentType, meta, etag, type, lastModified } = entry;
    return { key, body: readFileSync(entry.file), contentType, meta, etag, type, lastModified };
  }

  keys(): string[] {
    return [...this.objects.keys()].sort();
  }

  /** Multipart uploads initiated and neither completed nor aborted. */
  openUploads(): number {
    return this.uploads.size;
  }

  /** Puts an object as another tool would (ossutil, the console): without sdflow's metadata. */
  seed(key: string, body: Buffer, contentType = 'application/octet-stream'): void {
    const file = this.newFile();
    writeFileSync(file, body);
    const md5 = createHash('md5').update(body).digest();
    this.replaceObject(key, {
      file,
      size: body.length,
      contentType,
      meta: {},
      etag: `"${md5Hex(md5)}"`,
      type: 'Normal',
      lastModified: wholeSeconds(Date.now()),
    });
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.dir, { recursive: true, force: true });
  }

  private newFile(): string {
    return join(this.dir, `f${++this.fileCounter}`);
  }

  private replaceObject(key: string, entry: ObjectEntry): void {
    const old = this.objects.get(key);
    this.objects.set(key, entry);
    if (old) void unlink(old.file).catch(() => {});
  }

  private takeFault(record: RecordedRequest): Fault | null {
    const index = this.faults.findIndex(
      (f) =>
        (f.match.operation === undefined || f.match.operation === record.operation) &&
        (f.match.method === undefined || f.match.method === record.method),
    );
    if (index < 0) return null;
    const entry = this.faults[index];
    entry.remaining -= 1;
    if (entry.remaining <= 0) this.faults.splice(index, 1);
    return entry.fault;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake.invalid');
    const method = req.method ?? 'GET';
    let key: string;
    try {
      key = decodeURIComponent(url.pathname.slice(1));
    } catch {
      key = url.pathname.slice(1);
    }
    const headers = Object.fromEntries(
      Object.entries(req.headers).map(([name, value]) => [
        name,
        Array.isArray(value) ? value.join(',') : (value ?? ''),
      ]),
    );
    const record: RecordedRequest = {
      method,
      operation: operationOf(method, key, url.searchParams),
      key,
      url: req.url ?? '/',
      query: Object.fromEntries(url.searchParams),
      headers,
      signedUrl: url.searchParams.has('Signature'),
      bodyLength: 0,
      outcome: 0,
    };
    this.requests.push(record);
    const ctx: Context = {
      req,
      res,
      record,
      query: url.searchParams,
      requestId: randomBytes(12).toString('hex').toUpperCase(),
      dropResponse: false,
    };

    const fault = this.takeFault(record);
    if (fault === 'reset') {
      record.outcome = 'reset';
      req.socket.destroy();
      return;
    }
    if (fault === 'hang') {
      record.outcome = 'hang';
      await this.drain(ctx);
      return;
    }
    if (fault === 'drop-response') ctx.dropResponse = true;

    try {
      if (fault && fault !== 'drop-response')
        throw new OssError(fault.status, fault.code, fault.message ?? `injected ${fault.code}`);
      this.authenticate(ctx, key);
      const unsupported = UNSUPPORTED_HEADERS.find((name) => headers[name] !== undefined);
      if (unsupported) throw new OssError(501, 'NotImplemented', `the OSS fake does not implement ${unsupported}`);
      await this.serve(ctx, key);
    } catch (err) {
      if (!(err instanceof OssError)) throw err;
      await this.drain(ctx);
      this.sendError(ctx, err);
    }
  }

  private async serve(ctx: Context, key: string): Promise<void> {
    switch (ctx.record.operation) {
      case 'ListObjectsV2':
        return this.listObjectsV2(ctx);
      case 'PutObject':
        return this.putObject(ctx, key);
      case 'GetObject':
      case 'HeadObject':
        return this.getObject(ctx, key);
      case 'DeleteObject':
        await this.drain(ctx);
        if (this.objects.has(key)) {
          void unlink(this.objects.get(key)!.file).catch(() => {});
          this.objects.delete(key);
        }
        return this.send(ctx, 204, {});
      case 'InitiateMultipartUpload':
        return this.initiate(ctx, key);
      case 'UploadPart':
        return this.uploadPart(ctx, key);
      case 'CompleteMultipartUpload':
        return this.complete(ctx, key);
      case 'AbortMultipartUpload':
        return this.abort(ctx, key);
      default:
        throw new OssError(501, 'NotImplemented', `the OSS fake does not implement ${ctx.record.operation}`);
    }
  }

  // --- authentication -------------------------------------------------------------------------------------------

  /** `/<bucket>/<key>`, then the sub-resources present, sorted by name, `name=value` or a bare `name`. */
  private canonicalResource(key: string, query: URLSearchParams): string {
    const subResources = [...new Set(query.keys())]
      .filter((name) => SUB_RESOURCES.has(name))
      .sort()
      .map((name) => {
        const value = query.get(name) ?? '';
        return value === '' ? name : `${name}=${value}`;
      });
    const resource = `/${this.options.bucket}/${key}`;
    return subResources.length > 0 ? `${resource}?${subResources.join('&')}` : resource;
  }

  /** Every x-oss-* header, lower-case, sorted, as `name:value\n` with the value trimmed. */
  private canonicalHeaders(headers: Record<string, string>): string {
    return Object.keys(headers)
      .filter((name) => name.startsWith('x-oss-'))
      .sort()
      .map((name) => `${name}:${headers[name].trim()}\n`)
      .join('');
  }

  private stringToSign(ctx: Context, key: string, date: string): string {
    const { headers, method } = ctx.record;
    return [
      method,
      headers['content-md5'] ?? '',
      headers['content-type'] ?? '',
      date,
      `${this.canonicalHeaders(headers)}${this.canonicalResource(key, ctx.query)}`,
    ].join('\n');
  }

  private expectedSignature(stringToSign: string): string {
    return createHmac('sha1', this.options.credentials.accessKeySecret).update(stringToSign, 'utf8').digest('base64');
  }

  private authenticate(ctx: Context, key: string): void {
    const { credentials } = this.options;
    const { headers } = ctx.record;
    const query = ctx.query;
    const urlSigned = query.has('Signature') || query.has('OSSAccessKeyId') || query.has('Expires');
    if (urlSigned && headers.authorization !== undefined) {
      throw new OssError(400, 'InvalidArgument', 'a request may not carry a signature in both the URL and a header');
    }
    if (urlSigned) {
      const expires = query.get('Expires') ?? '';
      const signature = query.get('Signature') ?? '';
      if (!/^\d+$/.test(expires) || signature === '') {
        throw new OssError(403, 'AccessDenied', 'a signed URL needs OSSAccessKeyId, Expires and Signature');
      }
      if (query.get('OSSAccessKeyId') !== credentials.accessKeyId) {
        throw new OssError(
          403,
          'InvalidAccessKeyId',
          'The OSS Access Key Id you provided does not exist in our records.',
        );
      }
      if (Date.now() / 1000 > Number(expires)) {
        throw new OssError(403, 'AccessDenied', 'Request has expired.', {
          Expires: new Date(Number(expires) * 1000).toISOString(),
          ServerTime: new Date().toISOString(),
        });
      }
      if (credentials.securityToken !== undefined && query.get('security-token') !== credentials.securityToken) {
        throw new OssError(403, 'InvalidAccessKeyId', 'The security token you provided is invalid.');
      }
      const toSign = this.stringToSign(ctx, key, expires);
      if (!sameSignature(signature, this.expectedSignature(toSign))) {
        throw new OssError(
          403,
          'SignatureDoesNotMatch',
          'The request signature we calculated does not match the signature you provided.',
          { StringToSign: toSign, OSSAccessKeyId: credentials.accessKeyId },
        );
      }
      return;
    }
    const authorization = headers.authorization;
    if (authorization === undefined) {
      throw new OssError(403, 'AccessDenied', 'You have no right to access this object because of bucket acl.');
    }
    const match = /^OSS ([^:\s]+):(\S+)$/.exec(authorization);
    if (!match) throw new OssError(400, 'InvalidArgument', 'Authorization header is invalid.');
    const [, accessKeyId, signature] = match;
    if (accessKeyId !== credentials.accessKeyId) {
      throw new OssError(
        403,
        'InvalidAccessKeyId',
        'The OSS Access Key Id you provided does not exist in our records.',
        { OSSAccessKeyId: accessKeyId },
      );
    }
    if (credentials.securityToken !== undefined && headers['x-oss-security-token'] !== credentials.securityToken) {
      throw new OssError(403, 'InvalidAccessKeyId', 'The security token you provided is invalid.');
    }
    const date = headers['x-oss-date'] ?? headers.date;
    const time = date === undefined ? Number.NaN : Date.parse(date);
    if (Number.isNaN(time)) throw new OssError(403, 'AccessDenied', 'OSS authentication requires a valid Date.');
    if (Math.abs(Date.now() - time) > MAX_SKEW_MS) {
      throw new OssError(
        403,
        'RequestTimeTooSkewed',
        'The difference between the request time and the current time is too large.',
        { RequestTime: date ?? '', ServerTime: new Date().toUTCString() },
      );
    }
    const toSign = this.stringToSign(ctx, key, date ?? '');
    if (!sameSignature(signature, this.expectedSignature(toSign))) {
      throw new OssError(
        403,
        'SignatureDoesNotMatch',
        'The request signature we calculated does not match the signature you provided.',
        { StringToSign: toSign, OSSAccessKeyId: accessKeyId },
      );
    }
  }

  // --- bodies and answers ---------------------------------------------------------------------------------------

  private async drain(ctx: Context): Promise<void> {
    for await (const chunk of ctx.req) ctx.record.bodyLength += (chunk as Buffer).length;
  }

  private async smallBody(ctx: Context): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of ctx.req) {
      ctx.record.bodyLength += (chunk as Buffer).length;
      if (ctx.record.bodyLength <= SMALL_BODY_LIMIT) chunks.push(chunk as Buffer);
    }
    if (ctx.record.bodyLength > SMALL_BODY_LIMIT) throw new OssError(400, 'EntityTooLarge', 'request body too large');
    return Buffer.concat(chunks);
  }

  /** Streams the body into a new file, hashing it; checks Content-MD5 when sent. */
  private async bodyToFile(ctx: Context): Promise<{ file: string; size: number; md5: Buffer }> {
    const file = this.newFile();
    const hash = createHash('md5');
    const count = async function* (source: IncomingMessage, record: RecordedRequest) {
      for await (const chunk of source) {
        record.bodyLength += (chunk as Buffer).length;
        hash.update(chunk as Buffer);
        yield chunk as Buffer;
      }
    };
    await pipeline(count(ctx.req, ctx.record), createWriteStream(file));
    const md5 = hash.digest();
    const given = ctx.record.headers['content-md5'];
    if (given !== undefined && given !== md5.toString('base64')) {
      await unlink(file);
      throw new OssError(400, 'InvalidDigest', 'The Content-MD5 you specified was invalid.');
    }
    return { file, size: ctx.record.bodyLength, md5 };
  }

  /** Starts the answer; false when the fault says to cut the connection instead. */
  private begin(ctx: Context, status: number, headers: Record<string, string | number>): boolean {
    if (ctx.dropResponse) {
      ctx.record.outcome = 'dropped';
      ctx.res.socket?.destroy();
      return false;
    }
    ctx.record.outcome = status;
    ctx.res.writeHead(status, { Server: 'AliyunOSS', 'x-oss-request-id': ctx.requestId, ...headers });
    return true;
  }

  private send(ctx: Context, status: number, headers: Record<string, string | number>, body?: string): void {
    const payload = body === undefined ? undefined : Buffer.from(body, 'utf8');
    const all = payload ? { 'Content-Type': 'application/xml', 'Content-Length': payload.length, ...headers } : headers;
    if (this.begin(ctx, status, payload ? all : { 'Content-Length': 0, ...all })) ctx.res.end(payload);
  }

  private sendError(ctx: Context, err: OssError): void {
    const extra = Object.entries(err.extra)
      .map(([name, value]) => element(name, value))
      .join('');
    const body = xmlDocument(
      'Error',
      `${element('Code', err.code)}${element('Message', err.message)}${element('RequestId', ctx.requestId)}` +
        `${element('HostId', ctx.record.headers.host ?? '')}${extra}`,
    );
    if (ctx.record.method === 'HEAD') {
      this.send(ctx, err.status, { 'x-oss-err': Buffer.from(body).toString('base64') });
    } else {
      this.send(ctx, err.status, {}, body);
    }
  }

  private objectHeaders(entry: ObjectEntry): Record<string, string | number> {
    return {
      'Content-Type': entry.contentType,
      'Content-Length': entry.size,
      ETag: entry.etag,
      'Last-Modified': entry.lastModified.toUTCString(),
      'x-oss-object-type': entry.type,
      'x-oss-storage-class': 'Standard',
      'Accept-Ranges': 'bytes',
      ...entry.meta,
    };
  }

  private metaHeaders(headers: Record<string, string>): Record<string, string> {
    return Object.fromEntries(Object.entries(headers).filter(([name]) => name.startsWith('x-oss-meta-')));
  }

  // --- operations -----------------------------------------------------------------------------------------------

  private async putObject(ctx: Context, key: string): Promise<void> {
    const { file, size, md5 } = await this.bodyToFile(ctx);
    const etag = `"${md5Hex(md5)}"`;
    const { headers } = ctx.record;
    this.replaceObject(key, {
      file,
      size,
      contentType: headers['content-type'] || 'application/octet-stream',
      meta: this.metaHeaders(headers),
      etag,
      type: 'Normal',
      lastModified: wholeSeconds(Date.now()),
    });
    this.send(ctx, 200, { ETag: etag });
  }

  private async getObject(ctx: Context, key: string): Promise<void> {
    await this.drain(ctx);
    const entry = this.objects.get(key);
    if (!entry) throw new OssError(404, 'NoSuchKey', 'The specified key does not exist.', { Key: key });
    if (!this.begin(ctx, 200, this.objectHeaders(entry))) return;
    if (ctx.record.method === 'HEAD') {
      ctx.res.end();
      return;
    }
    await pipeline(createReadStream(entry.file), ctx.res);
  }

  private async initiate(ctx: Context, key: string): Promise<void> {
    await this.drain(ctx);
    const uploadId = randomBytes(16).toString('hex').toUpperCase();
    const { headers } = ctx.record;
    this.uploads.set(uploadId, {
      key,
      contentType: headers['content-type'] || 'application/octet-stream',
      meta: this.metaHeaders(headers),
      parts: new Map(),
    });
    const body = xmlDocument(
      'InitiateMultipartUploadResult',
      `${element('Bucket', this.options.bucket)}${element('Key', key)}${element('UploadId', uploadId)}`,
    );
    this.send(ctx, 200, {}, body);
  }

  private uploadFor(ctx: Context, key: string): [string, Upload] {
    const uploadId = ctx.query.get('uploadId') ?? '';
    const upload = this.uploads.get(uploadId);
    if (!upload || upload.key !== key) {
      throw new OssError(
        404,
        'NoSuchUpload',
        'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.',
        { UploadId: uploadId },
      );
    }
    return [uploadId, upload];
  }

  private async uploadPart(ctx: Context, key: string): Promise<void> {
    const [, upload] = this.uploadFor(ctx, key);
    const partNumber = Number(ctx.query.get('partNumber'));
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10_000) {
      throw new OssError(400, 'InvalidArgument', 'Part number must be an integer between 1 and 10000, inclusive.');
    }
    const part = await this.bodyToFile(ctx);
    const old = upload.parts.get(partNumber);
    upload.parts.set(partNumber, part);
    if (old) void unlink(old.file).catch(() => {});
    this.send(ctx, 200, { ETag: `"${md5Hex(part.md5)}"` });
  }

  private async complete(ctx: Context, key: string): Promise<void> {
    const [uploadId, upload] = this.uploadFor(ctx, key);
    const xml = (await this.smallBody(ctx)).toString('utf8');
    const document = /^\s*(?:<\?xml[^>]*\?>)?\s*<CompleteMultipartUpload>([\s\S]*)<\/CompleteMultipartUpload>\s*$/.exec(
      xml,
    );
    const malformed = new OssError(
      400,
      'MalformedXML',
      'The XML you provided was not well-formed or did not validate against our published schema.',
    );
    if (!document) throw malformed;
    const listed: Array<{ number: number; etag: string }> = [];
    const rest = document[1].replace(/<Part>([\s\S]*?)<\/Part>/g, (_, inner: string) => {
      const number = /<PartNumber>\s*(\d+)\s*<\/PartNumber>/.exec(inner);
      const etag = /<ETag>([^<]*)<\/ETag>/.exec(inner);
      listed.push({ number: number ? Number(number[1]) : Number.NaN, etag: etag ? xmlUnescape(etag[1]) : '' });
      return '';
    });
    if (rest.trim() !== '' || listed.length === 0 || listed.some((p) => Number.isNaN(p.number))) throw malformed;
    listed.forEach((p, i) => {
      if (i > 0 && p.number <= listed[i - 1].number) {
        throw new OssError(400, 'InvalidPartOrder', 'The list of parts was not in ascending order.');
      }
    });
    const parts = listed.map((p, i) => {
      const part = upload.parts.get(p.number);
      if (!part || unquote(p.etag) !== md5Hex(part.md5)) {
        throw new OssError(
          400,
          'InvalidPart',
          'One or more of the specified parts could not be found or the ETag did not match.',
          { PartNumber: String(p.number), ETag: p.etag },
        );
      }
      if (i < listed.length - 1 && part.size < MIN_PART_BYTES) {
        throw new OssError(400, 'EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed size.', {
          PartNumber: String(p.number),
        });
      }
      return part;
    });
    const file = this.newFile();
    const output = createWriteStream(file);
    for (const part of parts) await pipeline(createReadStream(part.file), output, { end: false });
    output.end();
    await finished(output);
    const etag = `"${md5Hex(
      createHash('md5')
        .update(Buffer.concat(parts.map((p) => p.md5)))
        .digest(),
    )}-${parts.length}"`;
    this.replaceObject(key, {
      file,
      size: parts.reduce((sum, p) => sum + p.size, 0),
      contentType: upload.contentType,
      meta: upload.meta,
      etag,
      type: 'Multipart',
      lastModified: wholeSeconds(Date.now()),
    });
    for (const part of upload.parts.values()) void unlink(part.file).catch(() => {});
    this.uploads.delete(uploadId);
    const body = xmlDocument(
      'CompleteMultipartUploadResult',
      `${element('Location', `http://${ctx.record.headers.host ?? ''}/${key}`)}${element('Bucket', this.options.bucket)}` +
        `${element('Key', key)}${element('ETag', etag)}`,
    );
    this.send(ctx, 200, { ETag: etag }, body);
  }

  private async abort(ctx: Context, key: string): Promise<void> {
    const [uploadId, upload] = this.uploadFor(ctx, key);
    await this.drain(ctx);
    for (const part of upload.parts.values()) void unlink(part.file).catch(() => {});
    this.uploads.delete(uploadId);
    this.send(ctx, 204, {});
  }

  private async listObjectsV2(ctx: Context): Promise<void> {
    await this.drain(ctx);
    const { query } = ctx;
    for (const name of ['delimiter', 'encoding-type', 'fetch-owner']) {
      if (query.get(name)) throw new OssError(501, 'NotImplemented', `the OSS fake does not implement ${name}`);
    }
    const maxKeysText = query.get('max-keys') ?? '100';
    const maxKeys = Number(maxKeysText);
    if (!/^\d+$/.test(maxKeysText) || maxKeys > 1000) {
      throw new OssError(400, 'InvalidArgument', 'max-keys must be an integer from 0 to 1000.');
    }
    const prefix = query.get('prefix') ?? '';
    const token = query.get('continuation-token');
    const startAfter = query.get('start-after') ?? '';
    let after = startAfter;
    if (token !== null) {
      after = Buffer.from(token, 'base64url').toString('utf8');
      if (token === '' || encodeToken(after) !== token) {
        throw new OssError(400, 'InvalidArgument', 'The continuation token provided is incorrect.');
      }
    }
    const byUtf8 = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
    const matching = [...this.objects.keys()]
      .filter((key) => key.startsWith(prefix) && byUtf8(key, after) > 0)
      .sort(byUtf8);
    const pageSize = Math.min(maxKeys, this.options.maxPageSize ?? 1000);
    const page = matching.slice(0, pageSize);
    const truncated = page.length > 0 && matching.length > page.length;
    const contents = page
      .map((key) => {
        const entry = this.objects.get(key)!;
        return `<Contents>${element('Key', key)}${element('LastModified', entry.lastModified.toISOString())}${element('ETag', entry.etag)}${element('Type', entry.type)}${element('Size', entry.size)}${element('StorageClass', 'Standard')}</Contents>`;
      })
      .join('');
    const body = xmlDocument(
      'ListBucketResult',
      `${element('Name', this.options.bucket)}${element('Prefix', prefix)}${element('MaxKeys', maxKeys)}` +
        `${startAfter ? element('StartAfter', startAfter) : ''}${token !== null ? element('ContinuationToken', token) : ''}` +
        `${element('KeyCount', page.length)}${element('IsTruncated', String(truncated))}` +
        `${truncated ? element('NextContinuationToken', encodeToken(page[page.length - 1])) : ''}${contents}`,
    );
    this.send(ctx, 200, {}, body);
  }
}
