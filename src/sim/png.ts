import { crc32, inflateSync } from 'node:zlib';

// PNG text chunks, written and read by hand: A1111 stores its infotext in a `parameters` text chunk. Latin-1 text
// goes into an uncompressed tEXt chunk (as PIL writes it); text outside Latin-1 goes into an uncompressed iTXt
// chunk (UTF-8), as PIL does too.

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

interface Chunk {
  type: string;
  /** Offset of the chunk's length field. */
  offset: number;
  data: Buffer;
}

export function isPng(buf: Buffer): boolean {
  return buf.length >= 8 && buf.subarray(0, 8).equals(SIGNATURE);
}

/** Width and height from the IHDR chunk. */
export function pngSize(buf: Buffer): { width: number; height: number } {
  if (!isPng(buf) || buf.length < 24) throw new Error('not a PNG');
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

function* chunks(png: Buffer): Generator<Chunk> {
  let offset = 8;
  while (offset + 12 <= png.length) {
    const length = png.readUInt32BE(offset);
    const type = png.toString('latin1', offset + 4, offset + 8);
    const end = offset + 12 + length;
    if (end > png.length) return;
    yield { type, offset, data: png.subarray(offset + 8, offset + 8 + length) };
    offset = end;
  }
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(data, crc32(head.subarray(4, 8))) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

function isLatin1(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return false;
  return true;
}

/** One text chunk: tEXt when the text is Latin-1, otherwise iTXt (UTF-8, uncompressed). */
export function textChunk(keyword: string, text: string): Buffer {
  if (!/^[\u0020-\u007e\u00a1-\u00ff]{1,79}$/.test(keyword)) throw new Error(`invalid PNG text keyword ${keyword}`);
  if (isLatin1(text))
    return chunk(
      'tEXt',
      Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0]), Buffer.from(text, 'latin1')]),
    );
  const head = Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0, 0, 0, 0, 0])]);
  return chunk('iTXt', Buffer.concat([head, Buffer.from(text, 'utf8')]));
}

/** Returns a copy of `png` with the given text chunks inserted just before the first IDAT chunk. */
export function insertTextChunks(png: Buffer, entries: Record<string, string>): Buffer {
  if (!isPng(png)) throw new Error('not a PNG');
  const idat = [...chunks(png)].find((c) => c.type === 'IDAT');
  if (!idat) throw new Error('PNG has no IDAT chunk');
  const texts = Object.entries(entries).map(([k, v]) => textChunk(k, v));
  return Buffer.concat([png.subarray(0, idat.offset), ...texts, png.subarray(idat.offset)]);
}

function decodeText(type: string, data: Buffer): [string, string] | undefined {
  const nul = data.indexOf(0);
  if (nul < 0) return undefined;
  const keyword = data.toString('latin1', 0, nul);
  if (type === 'tEXt') return [keyword, data.toString('latin1', nul + 1)];
  if (type === 'zTXt') return [keyword, inflateSync(data.subarray(nul + 2)).toString('latin1')];
  // iTXt: keyword \0 compressed method language \0 translated \0 text
  const compressed = data[nul + 1] === 1;
  const langEnd = data.indexOf(0, nul + 3);
  const transEnd = langEnd < 0 ? -1 : data.indexOf(0, langEnd + 1);
  if (transEnd < 0) return undefined;
  const body = data.subarray(transEnd + 1);
  return [keyword, (compressed ? inflateSync(body) : body).toString('utf8')];
}

/** The text chunks (tEXt, zTXt, iTXt) of a PNG, keyword → text. Unreadable chunks are skipped. */
export function readTextChunks(png: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isPng(png)) return out;
  for (const c of chunks(png)) {
    if (c.type !== 'tEXt' && c.type !== 'zTXt' && c.type !== 'iTXt') continue;
    try {
      const entry = decodeText(c.type, c.data);
      if (entry) out[entry[0]] = entry[1];
    } catch {
      // a damaged text chunk is not worth failing over
    }
  }
  return out;
}
