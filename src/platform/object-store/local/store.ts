import { createHash, randomBytes } from 'node:crypto';
import { type BigIntStats, createReadStream, type Dirent } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { contentTypeFor } from '../content-type.js';
import { assertSafeKey, isSafeKey, ObjectKeyError } from '../keys.js';
import { type ObjectInfo, ObjectNotFoundError, type ObjectStore, type PutOptions } from '../port.js';
import { signObjectUrl } from '../signing.js';

// The object store on the local filesystem: key `a/b/c` is the file `<root>/a/b/c`, so local instances read model
// files in place. Next to each object the store keeps its own hidden files, all named `.sdflow-…`: temp files of
// puts in progress, and a metadata sidecar (etag, content type) so that head never re-hashes a large file.
// Keys may not use that prefix in any segment.

export interface LocalObjectStoreOptions {
  /** objectsDir(dataDir). */
  root: string;
  /** The API's public base URL: signed links point at its `/files/` route. */
  publicUrl: string;
  secret: Buffer | string;
}

const RESERVED_PREFIX = '.sdflow-';
const TEMP_PREFIX = `${RESERVED_PREFIX}tmp-`;
const META_PREFIX = `${RESERVED_PREFIX}meta-`;

/**
 * What the sidecar records. The file's identity (inode, size, mtime in ns) tells whether the sidecar describes the
 * file now in place: a file replaced by hand, or a race between puts, shows up as a mismatch and is re-hashed.
 */
interface Identity {
  ino: string;
  size: string;
  mtimeNs: string;
}

interface Sidecar extends Identity {
  key: string;
  etag: string;
  contentType: string;
}

function identity(stats: BigIntStats): Identity {
  return { ino: String(stats.ino), size: String(stats.size), mtimeNs: String(stats.mtimeNs) };
}

const sameIdentity = (a: Identity, b: Identity) => a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs;

const MISSING = new Set(['ENOENT', 'ENOTDIR', 'EISDIR']);
const isMissing = (err: unknown) => MISSING.has((err as NodeJS.ErrnoException).code ?? '');

function ignoreMissing(err: unknown): void {
  if (!isMissing(err)) throw err;
}

const tempName = () => `${TEMP_PREFIX}${randomBytes(12).toString('hex')}`;

/** The sidecar's path. The object's name is hashed so that a name near the 255-byte limit still has one. */
function sidecarPath(path: string): string {
  const digest = createHash('sha256').update(basename(path)).digest('hex').slice(0, 32);
  return join(dirname(path), `${META_PREFIX}${digest}.json`);
}

async function writeAll(handle: FileHandle, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) offset += (await handle.write(data, offset)).bytesWritten;
}

/** Makes a rename in `dir` durable. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/** Regular-file stats, or null when there is no regular file at `path`. */
async function fileStats(path: string): Promise<BigIntStats | null> {
  try {
    const stats = await stat(path, { bigint: true });
    return stats.isFile() ? stats : null;
  } catch (err) {
    ignoreMissing(err);
    return null;
  }
}

export class LocalObjectStore implements ObjectStore {
  private readonly root: string;
  private readonly publicUrl: string;
  private readonly secret: Buffer | string;

  constructor(options: LocalObjectStoreOptions) {
    this.root = resolve(options.root);
    this.publicUrl = options.publicUrl.replace(/\/$/, '');
    this.secret = options.secret;
  }

  /** The file of a key, after checking the key and that its path stays inside the root. */
  private pathFor(key: string): string {
    assertSafeKey(key);
    if (key.split('/').some((segment) => segment.startsWith(RESERVED_PREFIX))) {
      throw new ObjectKeyError(`object key must not use the reserved name prefix ${RESERVED_PREFIX}`);
    }
    const path = resolve(this.root, key);
    if (!path.startsWith(this.root + sep)) throw new ObjectKeyError('object key resolves outside the object store');
    return path;
  }

  async put(key: string, body: Buffer | Readable, options: PutOptions = {}): Promise<ObjectInfo> {
    const path = this.pathFor(key);
    const dir = dirname(path);
    await mkdir(dir, { recursive: true });
    const contentType = options.contentType ?? contentTypeFor(key);
    const temp = join(dir, tempName());
    const hash = createHash('sha256');
    let stats: BigIntStats;
    try {
      const handle = await open(temp, 'wx', 0o644);
      try {
        // Chunk by chunk, so a model upload of gigabytes is never held in memory.
        const chunks = Buffer.isBuffer(body) ? [body] : body;
        for await (const chunk of chunks) {
          const data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
          hash.update(data);
          await writeAll(handle, data);
        }
        await handle.sync();
      } finally {
        await handle.close();
      }
      stats = await stat(temp, { bigint: true });
      await rename(temp, path);
    } catch (err) {
      await unlink(temp).catch(ignoreMissing);
      throw err;
    }
    await syncDir(dir);
    const etag = hash.digest('hex');
    // rename keeps the inode and mtime, so the identity taken from the temp file is the object's.
    await this.writeSidecar(path, { key, etag, contentType, ...identity(stats) });
    return { key, size: Number(stats.size), etag, contentType, lastModified: stats.mtime };
  }

  async get(key: string): Promise<Buffer> {
    try {
      return await readFile(this.pathFor(key));
    } catch (err) {
      if (isMissing(err)) throw new ObjectNotFoundError(key);
      throw err;
    }
  }

  async getStream(key: string): Promise<Readable> {
    // Opened here, so a missing object fails the call rather than the stream later.
    let handle: FileHandle;
    try {
      handle = await open(this.pathFor(key), 'r');
    } catch (err) {
      if (isMissing(err)) throw new ObjectNotFoundError(key);
      throw err;
    }
    if (!(await handle.stat()).isFile()) {
      await handle.close();
      throw new ObjectNotFoundError(key);
    }
    return handle.createReadStream();
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const path = this.pathFor(key);
    try {
      return await this.info(key, path);
    } catch (err) {
      // The object vanished while it was being read.
      ignoreMissing(err);
      return null;
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.pathFor(key);
    await unlink(path).catch(ignoreMissing);
    await unlink(sidecarPath(path)).catch(ignoreMissing);
  }

  /** Every object whose key starts with `prefix` (a plain string prefix, as in OSS), sorted by key. */
  async list(prefix: string): Promise<ObjectInfo[]> {
    if (prefix !== '') this.pathFor(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
    const dirKey = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    const keys: string[] = [];
    await this.collect(dirKey === '' ? this.root : join(this.root, dirKey), dirKey, prefix, keys);
    keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const infos: ObjectInfo[] = [];
    for (const key of keys) {
      const info = await this.head(key);
      if (info) infos.push(info);
    }
    return infos;
  }

  async signedUrl(key: string, ttlS: number): Promise<string> {
    this.pathFor(key);
    return signObjectUrl(this.publicUrl, key, ttlS, this.secret);
  }

  private async collect(dir: string, dirKey: string, prefix: string, keys: string[]): Promise<void> {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      ignoreMissing(err);
      return;
    }
    for (const entry of entries) {
      if (entry.name.startsWith(RESERVED_PREFIX)) continue;
      const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`;
      // Symbolic links are neither listed nor followed: every listed object is a file inside the root. A file whose
      // name no key can address (put there by hand) is left out.
      if (entry.isDirectory()) {
        if (`${key}/`.startsWith(prefix)) await this.collect(join(dir, entry.name), key, prefix, keys);
      } else if (entry.isFile() && key.startsWith(prefix) && isSafeKey(key)) {
        keys.push(key);
      }
    }
  }

  private async info(key: string, path: string): Promise<ObjectInfo | null> {
    const stats = await fileStats(path);
    if (!stats) return null;
    const sidecar = await this.readSidecar(path);
    let etag: string;
    let contentType: string;
    if (sidecar && sameIdentity(sidecar, identity(stats))) {
      ({ etag, contentType } = sidecar);
    } else {
      // No sidecar (a file put there by hand) or a stale one: hash once and remember, unless the file changed
      // meanwhile, in which case the next head tries again.
      etag = await hashFile(path);
      contentType = sidecar?.contentType ?? contentTypeFor(key);
      const after = await fileStats(path);
      if (after && sameIdentity(identity(after), identity(stats))) {
        await this.writeSidecar(path, { key, etag, contentType, ...identity(stats) });
      }
    }
    return { key, size: Number(stats.size), etag, contentType, lastModified: stats.mtime };
  }

  private async readSidecar(path: string): Promise<Sidecar | null> {
    let parsed: Partial<Sidecar>;
    try {
      parsed = JSON.parse(await readFile(sidecarPath(path), 'utf8'));
    } catch {
      // Missing or unreadable: the sidecar is only a cache, rebuilt from the file itself.
      return null;
    }
    const fields = [parsed.key, parsed.etag, parsed.contentType, parsed.ino, parsed.size, parsed.mtimeNs];
    return fields.every((f) => typeof f === 'string') ? (parsed as Sidecar) : null;
  }

  private async writeSidecar(path: string, sidecar: Sidecar): Promise<void> {
    const temp = join(dirname(path), tempName());
    try {
      await writeFile(temp, JSON.stringify(sidecar), { flag: 'wx' });
      await rename(temp, sidecarPath(path));
    } catch (err) {
      await unlink(temp).catch(ignoreMissing);
      throw err;
    }
  }
}
