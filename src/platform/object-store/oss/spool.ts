import { createHash } from 'node:crypto';
import { type FileHandle, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

// A put's body, read once, with its sha256 and size known before anything is sent to OSS: the sha256 travels as
// object metadata, which OSS takes only with the request that creates the object (PutObject, or the initiation of a
// multipart upload), never afterwards. A stream therefore cannot go to OSS while it is still being read. Up to a limit
// it is held in memory; past the limit it is spilled to a private temp file (under TMPDIR) chunk by chunk, so memory
// stays bounded whatever the size: a model of several GB costs disk, not memory. Either way every byte can be sent
// again, so every request of the upload can be retried.

export interface SpooledBody {
  readonly size: number;
  /** sha256 of the content, hex. */
  readonly sha256: string;
  /** The whole body in memory; null when it was spilled to a file. */
  readonly buffer: Buffer | null;
  /** What ali-oss reads parts from: the buffer itself, or the spill file's path. */
  readonly source: Buffer | string;
  /** Removes the spill file, if any. */
  dispose(): Promise<void>;
}

export function bufferBody(data: Buffer): SpooledBody {
  const sha256 = createHash('sha256').update(data).digest('hex');
  return { size: data.length, sha256, buffer: data, source: data, dispose: async () => {} };
}

async function writeAll(handle: FileHandle, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) offset += (await handle.write(data, offset)).bytesWritten;
}

/** Reads `stream` to its end: in memory while it is at most `memoryLimit` bytes, else into a temp file. */
export async function spoolStream(stream: Readable, memoryLimit: number): Promise<SpooledBody> {
  const hash = createHash('sha256');
  let chunks: Buffer[] = [];
  let size = 0;
  let spill: { dir: string; path: string; handle: FileHandle } | null = null;
  const removeSpill = async () => {
    if (!spill) return;
    await spill.handle.close().catch(() => {});
    await rm(spill.dir, { recursive: true, force: true });
  };
  try {
    for await (const chunk of stream) {
      const data: Buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      hash.update(data);
      size += data.length;
      if (spill) {
        await writeAll(spill.handle, data);
        continue;
      }
      chunks.push(data);
      if (size > memoryLimit) {
        const dir = await mkdtemp(join(tmpdir(), 'sdflow-oss-'));
        const path = join(dir, 'body');
        spill = { dir, path, handle: await open(path, 'wx', 0o600) };
        for (const held of chunks) await writeAll(spill.handle, held);
        chunks = [];
      }
    }
    if (spill) await spill.handle.close();
  } catch (err) {
    await removeSpill();
    throw err;
  }
  const sha256 = hash.digest('hex');
  if (!spill) {
    const buffer = Buffer.concat(chunks, size);
    return { size, sha256, buffer, source: buffer, dispose: async () => {} };
  }
  const { dir, path } = spill;
  return { size, sha256, buffer: null, source: path, dispose: () => rm(dir, { recursive: true, force: true }) };
}
