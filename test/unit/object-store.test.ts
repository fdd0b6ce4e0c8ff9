import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { objectsDir } from '../../src/data-dir.js';
import { createMetaStore, createObjectStore } from '../../src/platform/index.js';
import { ObjectKeyError } from '../../src/platform/object-store/keys.js';
import { LocalObjectStore } from '../../src/platform/object-store/local/store.js';
import { ObjectNotFoundError } from '../../src/platform/object-store/port.js';
import { verifyObjectUrl } from '../../src/platform/object-store/signing.js';

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
const secret = Buffer.alloc(32, 1);

let dir: string;
let root: string;
let store: LocalObjectStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sdflow-objects-'));
  root = join(dir, 'objects');
  store = new LocalObjectStore({ root, publicUrl: 'http://127.0.0.1:8080/', secret });
});

afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Every file under the root, store-internal ones included. */
function filesOnDisk(base = root): string[] {
  return readdirSync(base, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(base.length + 1));
}

describe('put and get', () => {
  it('round-trips a Buffer with etag = sha256, size and content type', async () => {
    const body = Buffer.from('hello png');
    const info = await store.put('images/u/t_1.png', body);
    expect(info).toMatchObject({
      key: 'images/u/t_1.png',
      size: body.length,
      etag: sha256(body),
      contentType: 'image/png',
    });
    expect(info.lastModified).toBeInstanceOf(Date);
    expect(await store.get('images/u/t_1.png')).toEqual(body);
    expect(await store.head('images/u/t_1.png')).toEqual(info);
  });

  it('round-trips a stream and serves it as a stream', async () => {
    const info = await store.put('inputs/u/t/prompt.txt', Readable.from(['hel', 'lo ', 'world']), {
      contentType: 'text/x-prompt',
    });
    expect(info).toMatchObject({ size: 11, etag: sha256('hello world'), contentType: 'text/x-prompt' });
    expect(await text(await store.getStream('inputs/u/t/prompt.txt'))).toBe('hello world');
    expect((await store.head('inputs/u/t/prompt.txt'))?.contentType).toBe('text/x-prompt');
  });

  it('streams a multi-megabyte body chunk by chunk', async () => {
    const chunks = Array.from({ length: 160 }, () => randomBytes(64 * 1024));
    const whole = Buffer.concat(chunks);
    const info = await store.put('models/stableDiffusion/big.safetensors', Readable.from(chunks));
    expect(info.size).toBe(10 * 1024 * 1024);
    expect(info.etag).toBe(sha256(whole));
    expect(info.contentType).toBe('application/octet-stream');
    expect((await store.get('models/stableDiffusion/big.safetensors')).equals(whole)).toBe(true);
    const streamed: Buffer[] = [];
    for await (const chunk of await store.getStream('models/stableDiffusion/big.safetensors')) streamed.push(chunk);
    expect(sha256(Buffer.concat(streamed))).toBe(info.etag);
  });

  it('replaces an object, with a new etag', async () => {
    await store.put('images/u/a.png', Buffer.from('one'));
    const second = await store.put('images/u/a.png', Buffer.from('two!'));
    expect(await store.get('images/u/a.png')).toEqual(Buffer.from('two!'));
    expect(await store.head('images/u/a.png')).toMatchObject({ size: 4, etag: sha256('two!') });
    expect(second.etag).toBe(sha256('two!'));
  });

  it('throws ObjectNotFoundError for a missing object, and head answers null', async () => {
    await store.put('images/u/a.png', Buffer.from('x'));
    await expect(store.get('images/u/missing.png')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await expect(store.getStream('images/u/missing.png')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await expect(store.get('nowhere/at/all')).rejects.toBeInstanceOf(ObjectNotFoundError);
    // A "directory" is not an object, nor is a path through a file.
    await expect(store.get('images/u')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await expect(store.getStream('images/u')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await expect(store.get('images/u/a.png/b')).rejects.toBeInstanceOf(ObjectNotFoundError);
    expect(await store.head('images/u/missing.png')).toBeNull();
    expect(await store.head('images/u')).toBeNull();
  });
});

describe('atomic puts', () => {
  it('never shows a partial object while a slow stream is being written', async () => {
    await store.put('images/u/a.png', Buffer.from('old'));
    const body = new PassThrough();
    const newPut = store.put('images/u/new.png', body);
    const replacing = new PassThrough();
    const replacePut = store.put('images/u/a.png', replacing);

    body.write(Buffer.alloc(1000, 1));
    replacing.write(Buffer.from('new-'));
    await new Promise((r) => setTimeout(r, 50));

    // The temp files exist on disk, yet nothing of them is visible.
    expect(filesOnDisk().some((f) => f.includes('.sdflow-tmp-'))).toBe(true);
    expect(await store.head('images/u/new.png')).toBeNull();
    await expect(store.get('images/u/new.png')).rejects.toBeInstanceOf(ObjectNotFoundError);
    expect((await store.list('')).map((o) => o.key)).toEqual(['images/u/a.png']);
    expect(await store.get('images/u/a.png')).toEqual(Buffer.from('old'));
    expect((await store.head('images/u/a.png'))?.etag).toBe(sha256('old'));

    body.end(Buffer.alloc(1000, 2));
    replacing.end(Buffer.from('content'));
    await Promise.all([newPut, replacePut]);
    expect((await store.get('images/u/new.png')).length).toBe(2000);
    expect(await store.get('images/u/a.png')).toEqual(Buffer.from('new-content'));
    expect(filesOnDisk().some((f) => f.includes('.sdflow-tmp-'))).toBe(false);
  });

  it('leaves nothing behind when the body fails midway', async () => {
    await store.put('images/u/a.png', Buffer.from('kept'));
    const body = new PassThrough();
    const put = store.put('images/u/a.png', body);
    body.write(Buffer.from('partial'));
    setTimeout(() => body.destroy(new Error('client went away')), 20);
    await expect(put).rejects.toThrow('client went away');
    expect(await store.get('images/u/a.png')).toEqual(Buffer.from('kept'));
    expect(filesOnDisk().filter((f) => f.includes('.sdflow-tmp-'))).toEqual([]);
  });
});

describe('head metadata', () => {
  it('hashes a file put there by hand once, and notices when it is replaced by hand', async () => {
    mkdirSync(join(root, 'models', 'lora'), { recursive: true });
    const file = join(root, 'models', 'lora', 'hand.safetensors');
    writeFileSync(file, 'first');
    expect(await store.head('models/lora/hand.safetensors')).toMatchObject({
      size: 5,
      etag: sha256('first'),
      contentType: 'application/octet-stream',
    });
    writeFileSync(file, 'second version');
    utimesSync(file, new Date(), new Date(Date.now() + 5000));
    expect(await store.head('models/lora/hand.safetensors')).toMatchObject({
      size: 14,
      etag: sha256('second version'),
    });
  });

  it('trusts the sidecar while the file is the same file, so a large file is not re-hashed', async () => {
    const file = join(root, 'models', 'lora', 'cached.safetensors');
    mkdirSync(join(root, 'models', 'lora'), { recursive: true });
    const stamp = new Date('2024-01-01T00:00:00.000Z');
    writeFileSync(file, 'aaaa');
    utimesSync(file, stamp, stamp);
    expect((await store.head('models/lora/cached.safetensors'))?.etag).toBe(sha256('aaaa'));
    // Same inode, size and mtime: only a re-hash could tell, and head must not re-hash.
    writeFileSync(file, 'bbbb');
    utimesSync(file, stamp, stamp);
    expect((await store.head('models/lora/cached.safetensors'))?.etag).toBe(sha256('aaaa'));
  });

  it('rebuilds a corrupt sidecar from the file', async () => {
    await store.put('images/u/a.png', Buffer.from('abc'));
    for (const f of filesOnDisk().filter((f) => f.includes('.sdflow-meta-'))) writeFileSync(join(root, f), '{oops');
    expect(await store.head('images/u/a.png')).toMatchObject({ etag: sha256('abc'), contentType: 'image/png' });
  });
});

describe('list and delete', () => {
  beforeEach(async () => {
    for (const key of [
      'images/u/t2_1.png',
      'images/u/t1_2.png',
      'images/u/t1_1.png',
      'images/u2/t9_1.png',
      'inputs/u/t1/init_0.png',
      'models/lora/x.safetensors',
    ]) {
      await store.put(key, Buffer.from(key));
    }
  });

  it('lists recursively, sorted, with keys relative to the root and internal files hidden', async () => {
    const all = await store.list('');
    expect(all.map((o) => o.key)).toEqual([
      'images/u/t1_1.png',
      'images/u/t1_2.png',
      'images/u/t2_1.png',
      'images/u2/t9_1.png',
      'inputs/u/t1/init_0.png',
      'models/lora/x.safetensors',
    ]);
    expect(all[0]).toMatchObject({ size: 'images/u/t1_1.png'.length, etag: sha256('images/u/t1_1.png') });
    expect(filesOnDisk().length).toBeGreaterThan(all.length);
  });

  it('filters by a plain string prefix, as OSS does', async () => {
    expect((await store.list('images/u/')).map((o) => o.key)).toEqual([
      'images/u/t1_1.png',
      'images/u/t1_2.png',
      'images/u/t2_1.png',
    ]);
    expect((await store.list('images/u')).map((o) => o.key)).toHaveLength(4);
    expect((await store.list('images/u/t1_')).map((o) => o.key)).toEqual(['images/u/t1_1.png', 'images/u/t1_2.png']);
    expect((await store.list('inputs/')).map((o) => o.key)).toEqual(['inputs/u/t1/init_0.png']);
    expect((await store.list('i')).map((o) => o.key)).toHaveLength(5);
    expect(await store.list('nothing/here/')).toEqual([]);
    expect(await store.list('images/u/t1_1.png/')).toEqual([]);
  });

  it('does not list or follow symbolic links', async () => {
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'secret.txt'), 'secret');
    symlinkSync(outside, join(root, 'images', 'link'));
    symlinkSync(join(outside, 'secret.txt'), join(root, 'images', 'u', 'file-link.txt'));
    const keys = (await store.list('images/')).map((o) => o.key);
    expect(keys).toHaveLength(4);
    expect(keys.filter((k) => k.includes('link'))).toEqual([]);
  });

  it('deletes an object and its metadata; deleting a missing object is fine', async () => {
    await store.delete('images/u/t1_1.png');
    expect(await store.head('images/u/t1_1.png')).toBeNull();
    await expect(store.get('images/u/t1_1.png')).rejects.toBeInstanceOf(ObjectNotFoundError);
    expect((await store.list('images/u/t1_')).map((o) => o.key)).toEqual(['images/u/t1_2.png']);
    await store.delete('images/u/t1_1.png');
    await store.delete('never/existed.png');
    await store.delete('images/u');
    expect((await store.list('images/u/')).map((o) => o.key)).toHaveLength(2);
    // One sidecar per remaining object, no more.
    expect(filesOnDisk().filter((f) => f.includes('.sdflow-meta-'))).toHaveLength(5);
  });
});

describe('unsafe keys', () => {
  const unsafe = [
    '../x',
    'a/../b',
    '/abs',
    'a\\b',
    'http://x',
    's3://x',
    '',
    'a//b',
    '..',
    'a/.sdflow-tmp-123',
    '.sdflow-meta-x.json',
  ];

  it.each(unsafe)('refuses %j in every method', async (key) => {
    await expect(store.put(key, Buffer.from('x'))).rejects.toBeInstanceOf(ObjectKeyError);
    await expect(store.put(key, Readable.from(['x']))).rejects.toBeInstanceOf(ObjectKeyError);
    await expect(store.get(key)).rejects.toBeInstanceOf(ObjectKeyError);
    await expect(store.getStream(key)).rejects.toBeInstanceOf(ObjectKeyError);
    await expect(store.head(key)).rejects.toBeInstanceOf(ObjectKeyError);
    await expect(store.delete(key)).rejects.toBeInstanceOf(ObjectKeyError);
    await expect(store.signedUrl(key, 60)).rejects.toBeInstanceOf(ObjectKeyError);
    // Nothing was written anywhere, not even the root.
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses unsafe list prefixes', async () => {
    for (const prefix of ['../', 'a/../', '/abs', 'a\\b', 'http://x', 'a//']) {
      await expect(store.list(prefix)).rejects.toBeInstanceOf(ObjectKeyError);
    }
  });
});

describe('signed URLs', () => {
  it('signs a link to the API files route that verifies with the same secret', async () => {
    const url = new URL(await store.signedUrl('images/u/t 1_1.png', 600));
    expect(`${url.origin}${url.pathname}`).toBe('http://127.0.0.1:8080/files/images/u/t%201_1.png');
    const expires = url.searchParams.get('expires');
    expect(Number(expires) - Date.now() / 1000).toBeGreaterThan(590);
    expect(verifyObjectUrl('images/u/t 1_1.png', expires, url.searchParams.get('signature'), secret)).toBe('ok');
  });
});

describe('factory', () => {
  it('builds the local adapters from config, sharing the data dir', async () => {
    const config = loadConfig({ SDFLOW_DATA_DIR: dir, SDFLOW_PUBLIC_URL: 'https://sd.example.com/' });
    const objects = await createObjectStore(config);
    await objects.put('images/u/t_1.png', Buffer.from('png'));
    expect(filesOnDisk(objectsDir(dir))).toContain(join('images', 'u', 't_1.png'));
    expect(await objects.signedUrl('images/u/t_1.png', 60)).toMatch(
      /^https:\/\/sd\.example\.com\/files\/images\/u\/t_1\.png\?/,
    );
    const meta = await createMetaStore(config);
    expect(await meta.setConfigValueOnce('k', 'v')).toBe('v');
    await meta.close();
  });

  it('switches to the cloud adapters by config alone, and names the settings they still need', async () => {
    await expect(createObjectStore(loadConfig({ SDFLOW_DATA_DIR: dir, SDFLOW_OBJECT_STORE: 'oss' }))).rejects.toThrow(
      /SDFLOW_OSS_BUCKET/,
    );
    await expect(
      createMetaStore(loadConfig({ SDFLOW_DATA_DIR: dir, SDFLOW_META_STORE: 'tablestore' })),
    ).rejects.toThrow(/SDFLOW_TABLESTORE_ENDPOINT|SDFLOW_TABLESTORE_INSTANCE/);
  });
});
