import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { createObjectStore } from '../../src/platform/index.js';
import { ObjectKeyError } from '../../src/platform/object-store/keys.js';
import { LocalObjectStore } from '../../src/platform/object-store/local/store.js';
import { ObjectStoreError, OssObjectStore } from '../../src/platform/object-store/oss/store.js';
import { ObjectNotFoundError, type ObjectStore } from '../../src/platform/object-store/port.js';
import { OssFake, type OssFakeCredentials } from './fakes/oss-fake.js';

// The OSS object store, with the real ali-oss SDK, against a local OSS fake that checks every request's signature
// with its own implementation of OSS's documented algorithm.

const BUCKET = 'sdflow-test';
const CREDENTIALS: OssFakeCredentials = {
  accessKeyId: 'LTAI5tFakeAccessKeyId',
  accessKeySecret: 'fake-access-key-secret-0123456789',
};
type Env = Record<string, string>;
const MB = 1024 * 1024;

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

let fake: OssFake;
let dataDir: string;

beforeEach(async () => {
  fake = await OssFake.start({ bucket: BUCKET, credentials: CREDENTIALS, maxPageSize: 3 });
  dataDir = mkdtempSync(join(tmpdir(), 'sdflow-oss-test-'));
});

afterEach(async () => {
  await fake.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** The deployment's settings for OSS: small parts and threshold, so multipart shows with a few MB. */
function ossEnv(env: Env = {}): Env {
  return {
    SDFLOW_DATA_DIR: dataDir,
    SDFLOW_OBJECT_STORE: 'oss',
    SDFLOW_OSS_BUCKET: BUCKET,
    SDFLOW_OSS_ENDPOINT: fake.endpoint,
    SDFLOW_OSS_CNAME: '1',
    ALIBABA_CLOUD_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
    ALIBABA_CLOUD_ACCESS_KEY_SECRET: CREDENTIALS.accessKeySecret,
    SDFLOW_OSS_PART_SIZE_MB: '5',
    SDFLOW_OSS_MULTIPART_THRESHOLD_MB: '6',
    SDFLOW_OSS_TIMEOUT_S: '10',
    SDFLOW_OSS_MAX_ATTEMPTS: '3',
    ...env,
  };
}

/** Through the factory, as every process builds it. */
const ossStore = (env: Env = {}): Promise<ObjectStore> => createObjectStore(loadConfig(ossEnv(env)));

/** A stream of `size` random bytes in 64 KB chunks, and the bytes. */
function randomStream(size: number): { stream: Readable; bytes: Buffer } {
  const bytes = randomBytes(size);
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < size; offset += 64 * 1024) chunks.push(bytes.subarray(offset, offset + 64 * 1024));
  return { stream: Readable.from(chunks), bytes };
}

/** The adapter's spill dirs (mkdtemp's six characters after the prefix), not the fake's nor this file's. */
const spillDirs = () => readdirSync(tmpdir()).filter((name) => /^sdflow-oss-[A-Za-z0-9]{6}$/.test(name));

describe('put, get, head and delete', () => {
  it('round-trips a Buffer: etag = sha256, size, content type, sent signed with its metadata', async () => {
    const store = await ossStore();
    const body = Buffer.from('hello png');
    const info = await store.put('images/u/t_1.png', body);
    expect(info).toMatchObject({
      key: 'images/u/t_1.png',
      size: body.length,
      etag: sha256(body),
      contentType: 'image/png',
    });
    expect(info.lastModified).toBeInstanceOf(Date);
    expect(Number.isNaN(info.lastModified.getTime())).toBe(false);
    expect(await store.get('images/u/t_1.png')).toEqual(body);
    expect(await store.head('images/u/t_1.png')).toEqual(info);

    const [put] = fake.requestsFor('PutObject');
    expect(put).toMatchObject({ method: 'PUT', key: 'images/u/t_1.png', bodyLength: body.length, outcome: 200 });
    expect(put.url).toBe('/images/u/t_1.png');
    expect(put.headers['content-type']).toBe('image/png');
    expect(put.headers['x-oss-meta-sha256']).toBe(sha256(body));
    expect(put.headers['content-md5']).toBe(createHash('md5').update(body).digest('base64'));
    expect(put.headers.authorization).toMatch(new RegExp(`^OSS ${CREDENTIALS.accessKeyId}:[A-Za-z0-9+/]{27}=$`));
    // The write is confirmed by a HEAD before put resolves.
    expect(fake.requests.map((r) => r.operation)).toEqual(['PutObject', 'HeadObject', 'GetObject', 'HeadObject']);
    expect(fake.stored('images/u/t_1.png')).toMatchObject({ body, contentType: 'image/png', type: 'Normal' });
  });

  it('round-trips a stream with an explicit content type, and serves it as a stream', async () => {
    const store = await ossStore();
    const info = await store.put('inputs/u/t/prompt.txt', Readable.from(['hel', 'lo ', 'world']), {
      contentType: 'text/x-prompt',
    });
    expect(info).toMatchObject({ size: 11, etag: sha256('hello world'), contentType: 'text/x-prompt' });
    expect(await text(await store.getStream('inputs/u/t/prompt.txt'))).toBe('hello world');
    expect((await store.head('inputs/u/t/prompt.txt'))?.contentType).toBe('text/x-prompt');
    // Below the threshold a stream goes up in one PutObject.
    expect(fake.requestsFor('PutObject')).toHaveLength(1);
    expect(fake.requestsFor('InitiateMultipartUpload')).toHaveLength(0);
    expect(fake.requestsFor('PutObject')[0].headers['content-type']).toBe('text/x-prompt');
  });

  it('gives keys without a known extension application/octet-stream, as the local store does', async () => {
    const store = await ossStore();
    expect((await store.put('models/lora/x.safetensors', Buffer.from('w'))).contentType).toBe(
      'application/octet-stream',
    );
    expect(fake.requestsFor('PutObject')[0].headers['content-type']).toBe('application/octet-stream');
  });

  it('replaces an object, with a new etag, and stores an empty one', async () => {
    const store = await ossStore();
    await store.put('images/u/a.png', Buffer.from('one'));
    const second = await store.put('images/u/a.png', Buffer.from('two!'));
    expect(second.etag).toBe(sha256('two!'));
    expect(await store.get('images/u/a.png')).toEqual(Buffer.from('two!'));
    expect(await store.head('images/u/a.png')).toMatchObject({ size: 4, etag: sha256('two!') });

    const empty = await store.put('inputs/u/t/empty.txt', Buffer.alloc(0));
    expect(empty).toMatchObject({ size: 0, etag: sha256('') });
    expect((await store.get('inputs/u/t/empty.txt')).length).toBe(0);
  });

  it('handles keys that need escaping in URLs and signatures', async () => {
    const store = await ossStore();
    const key = 'inputs/u/t/a b+c%d_ünï=&?.png';
    await store.put(key, Buffer.from('odd'));
    expect(fake.keys()).toEqual([key]);
    expect(await store.get(key)).toEqual(Buffer.from('odd'));
    expect((await store.list('inputs/u/t/')).map((o) => o.key)).toEqual([key]);
    const response = await fetch(await store.signedUrl(key, 60));
    expect(response.status).toBe(200);
    expect(Buffer.from(await response.arrayBuffer())).toEqual(Buffer.from('odd'));
  });

  it('throws ObjectNotFoundError for a missing object; head answers null; delete is idempotent', async () => {
    const store = await ossStore();
    await store.put('images/u/a.png', Buffer.from('x'));
    await expect(store.get('images/u/missing.png')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await expect(store.getStream('images/u/missing.png')).rejects.toBeInstanceOf(ObjectNotFoundError);
    expect(await store.head('images/u/missing.png')).toBeNull();
    // A "directory" is not an object.
    expect(await store.head('images/u')).toBeNull();

    await store.delete('images/u/a.png');
    expect(await store.head('images/u/a.png')).toBeNull();
    await expect(store.get('images/u/a.png')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await store.delete('images/u/a.png');
    await store.delete('never/existed.png');
    expect(fake.requestsFor('DeleteObject').map((r) => [r.method, r.key, r.outcome])).toEqual([
      ['DELETE', 'images/u/a.png', 204],
      ['DELETE', 'images/u/a.png', 204],
      ['DELETE', 'never/existed.png', 204],
    ]);
    // Not found is an answer, not a failure: nothing was retried.
    expect(fake.requestsFor('GetObject').every((r) => r.outcome === 404)).toBe(true);
    expect(fake.requestsFor('GetObject')).toHaveLength(3);
  });
});

describe('list', () => {
  const keys = [
    'images/u/t2_1.png',
    'images/u/t1_2.png',
    'images/u/t1_1.png',
    'images/u/t3_1.png',
    'images/u/t4_1.png',
    'images/u/t5_1.png',
    'images/u/t6_1.png',
    'images/u2/t9_1.png',
    'inputs/u/t1/init_0.png',
    'models/lora/x.safetensors',
  ];

  it('follows continuation tokens across pages, sorted, with each object described', async () => {
    const store = await ossStore();
    for (const key of keys) await store.put(key, Buffer.from(key));
    fake.clearRequests();

    const listed = await store.list('images/u/');
    expect(listed.map((o) => o.key)).toEqual([
      'images/u/t1_1.png',
      'images/u/t1_2.png',
      'images/u/t2_1.png',
      'images/u/t3_1.png',
      'images/u/t4_1.png',
      'images/u/t5_1.png',
      'images/u/t6_1.png',
    ]);
    expect(listed[0]).toMatchObject({ size: 17, etag: sha256('images/u/t1_1.png'), contentType: 'image/png' });
    // Seven keys, three a page: three pages, each after the first with the previous page's token.
    const pages = fake.requestsFor('ListObjectsV2');
    expect(pages).toHaveLength(3);
    expect(pages.map((p) => p.query.prefix)).toEqual(['images/u/', 'images/u/', 'images/u/']);
    expect(pages[0].query['continuation-token']).toBeUndefined();
    expect(pages[1].query['continuation-token']).toEqual(expect.any(String));
    expect(pages[2].query['continuation-token']).not.toBe(pages[1].query['continuation-token']);
    expect(pages.every((p) => p.query['list-type'] === '2' && p.query['max-keys'] === '1000')).toBe(true);

    expect((await store.list('')).map((o) => o.key)).toHaveLength(keys.length);
    expect((await store.list('images/u')).map((o) => o.key)).toHaveLength(8);
    expect((await store.list('images/u/t1_')).map((o) => o.key)).toEqual(['images/u/t1_1.png', 'images/u/t1_2.png']);
    expect(await store.list('nothing/here/')).toEqual([]);
  });

  it('skips keys that no object-store key can name, such as console folder markers', async () => {
    const store = await ossStore();
    await store.put('models/lora/x.safetensors', Buffer.from('x'));
    fake.seed('models/', Buffer.alloc(0));
    fake.seed('models/lora//double.safetensors', Buffer.from('y'));
    expect((await store.list('models/')).map((o) => o.key)).toEqual(['models/lora/x.safetensors']);
  });

  it('refuses unsafe prefixes before any request', async () => {
    const store = await ossStore();
    for (const prefix of ['../', 'a/../', '/abs', 'a\\b', 'http://x', 'a//']) {
      await expect(store.list(prefix)).rejects.toBeInstanceOf(ObjectKeyError);
    }
    expect(fake.requests).toEqual([]);
  });
});

describe('multipart uploads', () => {
  it('sends a stream above the threshold as a multipart upload, part by part, and it arrives whole', async () => {
    const store = await ossStore();
    const { stream, bytes } = randomStream(12 * MB);
    const info = await store.put('models/stableDiffusion/big.safetensors', stream);
    expect(info).toMatchObject({ size: 12 * MB, etag: sha256(bytes), contentType: 'application/octet-stream' });

    expect(fake.requestsFor('PutObject')).toHaveLength(0);
    const [initiate] = fake.requestsFor('InitiateMultipartUpload');
    expect(initiate).toMatchObject({ method: 'POST', key: 'models/stableDiffusion/big.safetensors', outcome: 200 });
    expect(initiate.query).toEqual({ uploads: '' });
    expect(initiate.headers['content-type']).toBe('application/octet-stream');
    expect(initiate.headers['x-oss-meta-sha256']).toBe(sha256(bytes));
    const parts = fake
      .requestsFor('UploadPart')
      .sort((a, b) => Number(a.query.partNumber) - Number(b.query.partNumber));
    expect(parts.map((p) => [p.method, p.query.partNumber, p.bodyLength, p.outcome])).toEqual([
      ['PUT', '1', 5 * MB, 200],
      ['PUT', '2', 5 * MB, 200],
      ['PUT', '3', 2 * MB, 200],
    ]);
    const uploadId = parts[0].query.uploadId;
    expect(parts.every((p) => p.query.uploadId === uploadId)).toBe(true);
    const [complete] = fake.requestsFor('CompleteMultipartUpload');
    expect(complete).toMatchObject({ method: 'POST', outcome: 200, query: { uploadId } });

    const stored = fake.stored('models/stableDiffusion/big.safetensors');
    expect(stored?.type).toBe('Multipart');
    expect(stored?.body.equals(bytes)).toBe(true);
    expect(fake.openUploads()).toBe(0);
    expect(await store.head('models/stableDiffusion/big.safetensors')).toEqual(info);
    const streamed = createHash('sha256');
    for await (const chunk of await store.getStream('models/stableDiffusion/big.safetensors')) streamed.update(chunk);
    expect(streamed.digest('hex')).toBe(info.etag);
  });

  it('sends a Buffer above the threshold as a multipart upload too', async () => {
    const store = await ossStore();
    const bytes = randomBytes(7 * MB);
    const info = await store.put('models/lora/buffer.safetensors', bytes, { contentType: 'application/x-lora' });
    expect(info).toMatchObject({ size: 7 * MB, etag: sha256(bytes), contentType: 'application/x-lora' });
    expect(
      fake
        .requestsFor('UploadPart')
        .map((p) => p.bodyLength)
        .sort(),
    ).toEqual([2 * MB, 5 * MB]);
    expect(fake.stored('models/lora/buffer.safetensors')?.body.equals(bytes)).toBe(true);
  });

  it('retries a throttled part by itself', async () => {
    const store = await ossStore();
    fake.fault({ status: 503, code: 'SlowDown', message: 'Please reduce your request rate.' }, 1, {
      operation: 'UploadPart',
    });
    const { stream, bytes } = randomStream(12 * MB);
    const info = await store.put('models/stableDiffusion/retried.safetensors', stream);
    expect(info.etag).toBe(sha256(bytes));
    const parts = fake.requestsFor('UploadPart');
    expect(parts.map((p) => p.outcome).sort()).toEqual([200, 200, 200, 503]);
    const retried = parts.find((p) => p.outcome === 503)!;
    expect(parts.filter((p) => p.query.partNumber === retried.query.partNumber)).toHaveLength(2);
    expect(fake.requestsFor('InitiateMultipartUpload')).toHaveLength(1);
    expect(fake.stored('models/stableDiffusion/retried.safetensors')?.body.equals(bytes)).toBe(true);
  });

  it('aborts the upload and rejects when a part fails on every attempt', async () => {
    const store = await ossStore();
    fake.fault({ status: 500, code: 'InternalError' }, 100, { operation: 'UploadPart' });
    const { stream } = randomStream(12 * MB);
    const put = store.put('models/stableDiffusion/doomed.safetensors', stream);
    await expect(put).rejects.toBeInstanceOf(ObjectStoreError);
    await expect(put).rejects.toThrow(/UploadPart \d\/3 of sdflow-test\/models\/stableDiffusion\/doomed\.safetensors/);
    await expect(put).rejects.toMatchObject({ code: 'InternalError', status: 500, attempts: 3 });
    expect(fake.requestsFor('AbortMultipartUpload')).toHaveLength(1);
    expect(fake.requestsFor('CompleteMultipartUpload')).toHaveLength(0);
    expect(fake.openUploads()).toBe(0);
    expect(fake.stored('models/stableDiffusion/doomed.safetensors')).toBeUndefined();
  });

  it('settles a completion whose answer was lost by checking what OSS holds', async () => {
    const store = await ossStore();
    fake.fault('drop-response', 1, { operation: 'CompleteMultipartUpload' });
    const { stream, bytes } = randomStream(7 * MB);
    const info = await store.put('models/lora/lost.safetensors', stream);
    expect(info).toMatchObject({ size: 7 * MB, etag: sha256(bytes) });
    expect(fake.requestsFor('CompleteMultipartUpload').map((r) => r.outcome)).toEqual(['dropped', 404]);
    expect(fake.requestsFor('AbortMultipartUpload')).toHaveLength(0);
    expect(fake.stored('models/lora/lost.safetensors')?.body.equals(bytes)).toBe(true);
  });

  it('sends nothing and keeps the old object when the body fails, before or after spilling to disk', async () => {
    const store = await ossStore();
    await store.put('models/lora/kept.safetensors', Buffer.from('kept'));
    fake.clearRequests();
    const spilledBefore = spillDirs().length;

    for (const [sent, spilled] of [
      [1024, 0],
      [8 * MB, 1],
    ]) {
      const body = new PassThrough();
      const put = store.put('models/lora/kept.safetensors', body);
      body.write(randomBytes(sent));
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(spillDirs()).toHaveLength(spilledBefore + spilled);
      body.destroy(new Error('client went away'));
      await expect(put).rejects.toThrow('client went away');
    }
    expect(fake.requests).toEqual([]);
    expect(await store.get('models/lora/kept.safetensors')).toEqual(Buffer.from('kept'));
    expect(spillDirs()).toHaveLength(spilledBefore);
  });
});

describe('signed URLs', () => {
  it('downloads without credentials until it expires', async () => {
    const store = await ossStore();
    const body = Buffer.from('signed png');
    await store.put('images/u/t_1.png', body);
    const url = new URL(await store.signedUrl('images/u/t_1.png', 600));
    expect(`${url.origin}${url.pathname}`).toBe(`${fake.endpoint}/images/u/t_1.png`);
    expect(url.searchParams.get('OSSAccessKeyId')).toBe(CREDENTIALS.accessKeyId);
    expect(Number(url.searchParams.get('Expires')) - Date.now() / 1000).toBeGreaterThan(590);
    expect(url.searchParams.get('Signature')).toMatch(/^[A-Za-z0-9+/]{27}=$/);

    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await response.arrayBuffer())).toEqual(body);
    const get = fake.requests.at(-1)!;
    expect(get).toMatchObject({ operation: 'GetObject', signedUrl: true, outcome: 200 });
    expect(get.headers.authorization).toBeUndefined();
  });

  it('lasts what the platform passes: SDFLOW_URL_TTL_S, 1 h by default', async () => {
    const config = loadConfig(ossEnv());
    const url = new URL(await new OssObjectStore(config.oss).signedUrl('images/u/t_1.png', config.stores.urlTtlS));
    expect(config.stores.urlTtlS).toBe(3600);
    const lifetime = Number(url.searchParams.get('Expires')) - Date.now() / 1000;
    expect(lifetime).toBeGreaterThan(3590);
    expect(lifetime).toBeLessThanOrEqual(3601);
  });

  it('answers 403 to a tampered link and to an unsigned request', async () => {
    const store = await ossStore();
    await store.put('images/u/t_1.png', Buffer.from('a'));
    await store.put('images/u/t_2.png', Buffer.from('b'));
    const url = new URL(await store.signedUrl('images/u/t_1.png', 600));

    const otherKey = new URL(url);
    otherKey.pathname = '/images/u/t_2.png';
    const laterExpiry = new URL(url);
    laterExpiry.searchParams.set('Expires', String(Number(url.searchParams.get('Expires')) + 3600));
    const forged = new URL(url);
    const signature = url.searchParams.get('Signature')!;
    forged.searchParams.set('Signature', `${signature[0] === 'A' ? 'B' : 'A'}${signature.slice(1)}`);
    for (const tampered of [otherKey, laterExpiry, forged]) {
      const response = await fetch(tampered);
      expect(response.status).toBe(403);
      expect(await response.text()).toContain('<Code>SignatureDoesNotMatch</Code>');
    }
    const unsigned = await fetch(`${fake.endpoint}/images/u/t_1.png`);
    expect(unsigned.status).toBe(403);
    expect(await unsigned.text()).toContain('<Code>AccessDenied</Code>');
  });

  it('answers 403 once the link has expired', async () => {
    const store = await ossStore();
    await store.put('images/u/t_1.png', Buffer.from('soon gone'));
    const url = await store.signedUrl('images/u/t_1.png', 1);
    expect((await fetch(url)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const response = await fetch(url);
    expect(response.status).toBe(403);
    const body = await response.text();
    expect(body).toContain('<Code>AccessDenied</Code>');
    expect(body).toContain('Request has expired');
  });

  it('refuses a ttl that is not positive', async () => {
    const store = await ossStore();
    await expect(store.signedUrl('images/u/t_1.png', 0)).rejects.toBeInstanceOf(RangeError);
    await expect(store.signedUrl('images/u/t_1.png', Number.NaN)).rejects.toBeInstanceOf(RangeError);
  });
});

describe('unsafe keys', () => {
  const unsafe = ['../x', 'a/../b', '/abs', 'a\\b', 'http://x', 's3://x', '', 'a//b', '..', 'a/./b', 'a\nb'];

  it.each(unsafe)('refuses %j in every method before any request', async (key) => {
    const store = await ossStore();
    await expect(store.put(key, Buffer.from('x'))).rejects.toBeInstanceOf(ObjectKeyError);
    await expect(store.put(key, Readable.from(['x']))).rejects.toBeInstanceOf(ObjectKeyError);
    await expect(store.get(key)).rejects.toBeInstanceOf(ObjectKeyError);
    await expect(store.getStream(key)).rejects.toBeInstanceOf(ObjectKeyError);
    await expect(store.head(key)).rejects.toBeInstanceOf(ObjectKeyError);
    await expect(store.delete(key)).rejects.toBeInstanceOf(ObjectKeyError);
    await expect(store.signedUrl(key, 60)).rejects.toBeInstanceOf(ObjectKeyError);
    expect(fake.requests).toEqual([]);
  });
});

describe('retries and errors', () => {
  it('retries a put throttled with 503 SlowDown twice, and succeeds', async () => {
    const store = await ossStore();
    fake.fault({ status: 503, code: 'SlowDown', message: 'Please reduce your request rate.' }, 2);
    const info = await store.put('images/u/t_1.png', Buffer.from('third time'));
    expect(info.etag).toBe(sha256('third time'));
    expect(fake.requestsFor('PutObject').map((r) => r.outcome)).toEqual([503, 503, 200]);
    expect(fake.requestsFor('PutObject').every((r) => r.bodyLength === 10)).toBe(true);
    expect(fake.stored('images/u/t_1.png')?.body).toEqual(Buffer.from('third time'));
  });

  it('retries a get answered 429 twice, and succeeds', async () => {
    const store = await ossStore();
    await store.put('images/u/t_1.png', Buffer.from('x'));
    fake.fault({ status: 429, code: 'TooManyRequests' }, 2);
    expect(await store.get('images/u/t_1.png')).toEqual(Buffer.from('x'));
    expect(fake.requestsFor('GetObject').map((r) => r.outcome)).toEqual([429, 429, 200]);
  });

  it('times out a request that hangs, and retries it', async () => {
    const store = await ossStore({ SDFLOW_OSS_TIMEOUT_S: '1' });
    await store.put('images/u/t_1.png', Buffer.from('x'));
    fake.fault('hang', 1);
    const started = Date.now();
    expect(await store.head('images/u/t_1.png')).toMatchObject({ size: 1 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(
      fake
        .requestsFor('HeadObject')
        .slice(-2)
        .map((r) => r.outcome),
    ).toEqual(['hang', 200]);
  });

  it('retries after a connection reset and after a lost answer', async () => {
    const store = await ossStore();
    fake.fault('reset', 1, { operation: 'PutObject' });
    fake.fault('drop-response', 1, { operation: 'PutObject' });
    expect((await store.put('images/u/t_1.png', Buffer.from('x'))).size).toBe(1);
    expect(fake.requestsFor('PutObject').map((r) => r.outcome)).toEqual(['reset', 'dropped', 200]);
    fake.fault('reset', 1, { operation: 'GetObject' });
    expect(await store.get('images/u/t_1.png')).toEqual(Buffer.from('x'));
  });

  it('does not retry a wrong secret, and names the operation, key, code and request id', async () => {
    const store = await ossStore({ ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'not-the-secret' });
    const put = store.put('images/u/t_1.png', Buffer.from('x'));
    await expect(put).rejects.toBeInstanceOf(ObjectStoreError);
    const err = (await put.catch((e: unknown) => e)) as ObjectStoreError;
    expect(err).toMatchObject({ operation: 'PutObject', code: 'SignatureDoesNotMatch', status: 403, attempts: 1 });
    expect(err.requestId).toMatch(/^[0-9A-F]{24}$/);
    expect(err.message).toContain('PutObject of sdflow-test/images/u/t_1.png');
    expect(err.message).toContain('SignatureDoesNotMatch');
    expect(err.message).toContain(`request id ${err.requestId}`);
    expect(fake.requests).toHaveLength(1);
    expect(fake.keys()).toEqual([]);
  });

  it('does not retry an unknown access key', async () => {
    const store = await ossStore({ ALIBABA_CLOUD_ACCESS_KEY_ID: 'LTAI5tSomebodyElse' });
    await expect(store.get('images/u/t_1.png')).rejects.toMatchObject({ code: 'InvalidAccessKeyId', attempts: 1 });
    expect(fake.requests).toHaveLength(1);
  });

  it('reports AccessDenied on a HEAD instead of answering null, without retrying', async () => {
    const store = await ossStore();
    fake.fault({ status: 403, code: 'AccessDenied', message: 'You have no right to access this object.' }, 1);
    const head = store.head('images/u/t_1.png');
    await expect(head).rejects.toThrow(/HeadObject of sdflow-test\/images\/u\/t_1\.png .*AccessDenied \(HTTP 403/);
    await expect(head).rejects.toMatchObject({ requestId: expect.stringMatching(/^[0-9A-F]{24}$/) });
    expect(fake.requests).toHaveLength(1);
  });

  it('reports a refused streamed download with its status and request id, without retrying', async () => {
    const store = await ossStore();
    fake.fault({ status: 403, code: 'AccessDenied' }, 1);
    const err = (await store.getStream('images/u/t_1.png').catch((e: unknown) => e)) as ObjectStoreError;
    expect(err).toBeInstanceOf(ObjectStoreError);
    expect(err).toMatchObject({ operation: 'GetObject', status: 403, attempts: 1 });
    expect(err.message).toMatch(/^OSS GetObject of sdflow-test\/images\/u\/t_1\.png failed after 1 attempt: /);
    expect(err.message).toContain(`(HTTP 403, request id ${err.requestId})`);
    expect(fake.requests).toHaveLength(1);
  });

  it('reports a connection that keeps breaking, after every attempt', async () => {
    const store = await ossStore();
    fake.fault('reset', 3);
    const err = (await store.get('images/u/t_1.png').catch((e: unknown) => e)) as ObjectStoreError;
    expect(err).toMatchObject({ operation: 'GetObject', attempts: 3, retryable: true, status: undefined });
    expect(err.message).toMatch(/failed after 3 attempts: \w+Error \(no request id\): socket hang up$/);
  });

  it('does not retry other client errors', async () => {
    const store = await ossStore();
    fake.fault({ status: 400, code: 'InvalidArgument' }, 1);
    await expect(store.delete('images/u/t_1.png')).rejects.toMatchObject({ code: 'InvalidArgument', status: 400 });
    expect(fake.requests).toHaveLength(1);
  });

  it('rejects a put that fails on every attempt, and writes nothing', async () => {
    const store = await ossStore();
    fake.fault({ status: 503, code: 'ServiceUnavailable' }, 100);
    const put = store.put('images/u/t_1.png', Buffer.from('never'));
    await expect(put).rejects.toBeInstanceOf(ObjectStoreError);
    await expect(put).rejects.toMatchObject({ operation: 'PutObject', attempts: 3, code: 'ServiceUnavailable' });
    await expect(put).rejects.toThrow(/failed after 3 attempts/);
    expect(fake.requestsFor('PutObject')).toHaveLength(3);
    expect(fake.stored('images/u/t_1.png')).toBeUndefined();
  });

  it('rejects a put when OSS does not hold what was written', async () => {
    const store = await ossStore();
    // The write "succeeds", yet the object is not there afterwards: put must not report success.
    fake.fault({ status: 404, code: 'NoSuchKey' }, 1, { operation: 'HeadObject' });
    await expect(store.put('images/u/t_1.png', Buffer.from('x'))).rejects.toMatchObject({
      code: 'WriteNotConfirmed',
    });
  });
});

describe('objects written by other tools', () => {
  it('hashes an object without sdflow metadata once, and remembers it', async () => {
    const store = await ossStore();
    const bytes = randomBytes(300 * 1024);
    fake.seed('models/stableDiffusion/uploaded.safetensors', bytes);
    const info = await store.head('models/stableDiffusion/uploaded.safetensors');
    expect(info).toMatchObject({ size: bytes.length, etag: sha256(bytes), contentType: 'application/octet-stream' });
    expect(await store.head('models/stableDiffusion/uploaded.safetensors')).toEqual(info);
    expect(fake.requestsFor('GetObject')).toHaveLength(1);
    // Replaced by hand: OSS's ETag changes, so it is hashed again.
    const replaced = randomBytes(1000);
    fake.seed('models/stableDiffusion/uploaded.safetensors', replaced);
    expect((await store.head('models/stableDiffusion/uploaded.safetensors'))?.etag).toBe(sha256(replaced));
    expect(fake.requestsFor('GetObject')).toHaveLength(2);
  });
});

describe('STS credentials', () => {
  it('sends the security token with every request and in signed links', async () => {
    await fake.close();
    fake = await OssFake.start({ bucket: BUCKET, credentials: { ...CREDENTIALS, securityToken: 'CAIS-sts-token' } });
    const store = await ossStore({ ALIBABA_CLOUD_SECURITY_TOKEN: 'CAIS-sts-token' });
    await store.put('images/u/t_1.png', Buffer.from('sts'));
    expect(fake.requests.every((r) => r.headers['x-oss-security-token'] === 'CAIS-sts-token')).toBe(true);
    const url = await store.signedUrl('images/u/t_1.png', 60);
    expect(new URL(url).searchParams.get('security-token')).toBe('CAIS-sts-token');
    expect((await fetch(url)).status).toBe(200);

    await expect((await ossStore()).get('images/u/t_1.png')).rejects.toMatchObject({ code: 'InvalidAccessKeyId' });
  });
});

describe('configuration', () => {
  it('names every missing setting', async () => {
    const build = (env: Env) => createObjectStore(loadConfig({ SDFLOW_DATA_DIR: dataDir, ...env }));
    await expect(build({ SDFLOW_OBJECT_STORE: 'oss' })).rejects.toThrow(ConfigError);
    await expect(build({ SDFLOW_OBJECT_STORE: 'oss' })).rejects.toThrow(
      /SDFLOW_OSS_BUCKET, SDFLOW_OSS_REGION or SDFLOW_OSS_ENDPOINT, ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET/,
    );
    await expect(build({ ...ossEnv(), ALIBABA_CLOUD_ACCESS_KEY_SECRET: '' })).rejects.toThrow(
      /needs ALIBABA_CLOUD_ACCESS_KEY_SECRET$/,
    );
    await expect(build({ ...ossEnv(), SDFLOW_OSS_ENDPOINT: '' })).rejects.toThrow(/SDFLOW_OSS_ENDPOINT/);
    await expect(build({ ...ossEnv(), SDFLOW_OSS_BUCKET: 'Not_A_Bucket' })).rejects.toThrow(/SDFLOW_OSS_BUCKET/);
  });

  it('builds the bucket endpoint from a region, in either spelling, over https', async () => {
    const region = { SDFLOW_OSS_ENDPOINT: '', SDFLOW_OSS_CNAME: '0' };
    for (const name of ['cn-hangzhou', 'oss-cn-hangzhou']) {
      const url = new URL(
        await (await ossStore({ ...region, SDFLOW_OSS_REGION: name })).signedUrl('images/u/a.png', 60),
      );
      expect(`${url.origin}${url.pathname}`).toBe('https://sdflow-test.oss-cn-hangzhou.aliyuncs.com/images/u/a.png');
    }
    const internal = await ossStore({ ...region, SDFLOW_OSS_REGION: 'cn-shanghai', SDFLOW_OSS_INTERNAL: '1' });
    expect(new URL(await internal.signedUrl('images/u/a.png', 60)).host).toBe(
      'sdflow-test.oss-cn-shanghai-internal.aliyuncs.com',
    );
  });

  it('switches back to the local store with one setting', async () => {
    const local = await createObjectStore(loadConfig({ ...ossEnv(), SDFLOW_OBJECT_STORE: 'local' }));
    expect(local).toBeInstanceOf(LocalObjectStore);
    expect(await ossStore()).toBeInstanceOf(OssObjectStore);
    expect((await local.put('images/u/t_1.png', Buffer.from('local'))).etag).toBe(sha256('local'));
    expect(fake.requests).toEqual([]);
  });
});
