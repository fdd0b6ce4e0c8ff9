// Tablestore's PlainBuffer row format, written for the fake from the format's description: a little-endian int32
// header (0x75), then per row a primary-key section and an optional data section of cells, an optional delete
// marker and a CRC-8 row checksum. A cell is name, optional value (length, type, payload), optional operation type
// and timestamp, and a CRC-8 cell checksum. The decoder checks every checksum, as the service does.

export const TAG = {
  ROW_PK: 0x01,
  ROW_DATA: 0x02,
  CELL: 0x03,
  CELL_NAME: 0x04,
  CELL_VALUE: 0x05,
  CELL_TYPE: 0x06,
  CELL_TIMESTAMP: 0x07,
  DELETE_ROW_MARKER: 0x08,
  ROW_CHECKSUM: 0x09,
  CELL_CHECKSUM: 0x0a,
} as const;

const HEADER = 0x75;

const VT = {
  INTEGER: 0x0,
  DOUBLE: 0x1,
  BOOLEAN: 0x2,
  STRING: 0x3,
  BLOB: 0x7,
  INF_MIN: 0x9,
  INF_MAX: 0xa,
} as const;

/** The cell operation of an update that removes a column (all its versions). */
export const DELETE_ALL_VERSIONS = 0x1;

export type Value =
  | { type: 'integer'; value: bigint }
  | { type: 'double'; value: number }
  | { type: 'boolean'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'blob'; value: Buffer }
  | { type: 'inf_min' }
  | { type: 'inf_max' };

export interface Cell {
  name: string;
  value?: Value;
  op?: number;
  timestamp?: bigint;
}

export interface Row {
  primaryKey: Cell[];
  cells: Cell[];
  deleteMarker: boolean;
}

export class PlainBufferError extends Error {}

// CRC-8, polynomial x^8 + x^2 + x + 1 (0x07), initial value 0, most significant bit first.
const CRC8_TABLE = Array.from({ length: 256 }, (_, i) => {
  let crc = i;
  for (let bit = 0; bit < 8; bit++) crc = crc & 0x80 ? ((crc << 1) ^ 0x07) & 0xff : (crc << 1) & 0xff;
  return crc;
});

const crcByte = (crc: number, byte: number) => CRC8_TABLE[(crc ^ byte) & 0xff];
const crcBytes = (crc: number, bytes: Uint8Array) => bytes.reduce((c, b) => crcByte(c, b), crc);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

function valueBytes(value: Value): { type: number; payload: Buffer } {
  switch (value.type) {
    case 'integer': {
      const b = Buffer.alloc(8);
      b.writeBigInt64LE(value.value);
      return { type: VT.INTEGER, payload: b };
    }
    case 'double': {
      const b = Buffer.alloc(8);
      b.writeDoubleLE(value.value);
      return { type: VT.DOUBLE, payload: b };
    }
    case 'boolean':
      return { type: VT.BOOLEAN, payload: Buffer.from([value.value ? 1 : 0]) };
    case 'string': {
      const s = Buffer.from(value.value, 'utf8');
      return { type: VT.STRING, payload: Buffer.concat([u32(s.length), s]) };
    }
    case 'blob':
      return { type: VT.BLOB, payload: Buffer.concat([u32(value.value.length), value.value]) };
    case 'inf_min':
      return { type: VT.INF_MIN, payload: Buffer.alloc(0) };
    case 'inf_max':
      return { type: VT.INF_MAX, payload: Buffer.alloc(0) };
  }
}

/** A value's contribution to a cell checksum: its type byte, then its payload (length prefix included). */
function crcValue(crc: number, value: Value): number {
  const { type, payload } = valueBytes(value);
  return crcBytes(crcByte(crc, type), payload);
}

class Reader {
  pos = 0;
  constructor(private readonly buf: Buffer) {}

  atEnd(): boolean {
    return this.pos >= this.buf.length;
  }

  byte(): number {
    if (this.atEnd()) throw new PlainBufferError('unexpected end of the plain buffer');
    return this.buf[this.pos++];
  }

  uint32(): number {
    return this.take(4).readUInt32LE(0);
  }

  take(n: number): Buffer {
    if (this.pos + n > this.buf.length) throw new PlainBufferError('unexpected end of the plain buffer');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** The next tag, or 0 at the end. */
  tag(): number {
    return this.atEnd() ? 0 : this.byte();
  }
}

/** A value as a filter carries it (type byte and payload, no cell framing). */
export function decodeVariant(buf: Buffer): Value {
  const r = new Reader(buf);
  const value = readValuePayload(r, r.byte());
  if (!r.atEnd()) throw new PlainBufferError('trailing bytes after a value');
  return value;
}

function readValuePayload(r: Reader, type: number): Value {
  switch (type) {
    case VT.INTEGER:
      return { type: 'integer', value: r.take(8).readBigInt64LE(0) };
    case VT.DOUBLE:
      return { type: 'double', value: r.take(8).readDoubleLE(0) };
    case VT.BOOLEAN:
      return { type: 'boolean', value: r.byte() !== 0 };
    case VT.STRING:
      return { type: 'string', value: r.take(r.uint32()).toString('utf8') };
    case VT.BLOB:
      return { type: 'blob', value: Buffer.from(r.take(r.uint32())) };
    case VT.INF_MIN:
      return { type: 'inf_min' };
    case VT.INF_MAX:
      return { type: 'inf_max' };
    default:
      throw new PlainBufferError(`unknown value type ${type}`);
  }
}

/** Reads one cell whose TAG_CELL was just read; returns it, its checksum and the tag after it. */
function readCell(r: Reader): { cell: Cell; crc: number; next: number } {
  if (r.byte() !== TAG.CELL_NAME) throw new PlainBufferError('a cell must start with its name');
  const nameBytes = r.take(r.uint32());
  const cell: Cell = { name: nameBytes.toString('utf8') };
  let crc = crcBytes(0, nameBytes);
  let tag = r.byte();
  if (tag === TAG.CELL_VALUE) {
    const length = r.uint32();
    const start = r.pos;
    cell.value = readValuePayload(r, r.byte());
    if (r.pos - start !== length) throw new PlainBufferError(`cell ${cell.name}: value length ${length} is wrong`);
    crc = crcValue(crc, cell.value);
    tag = r.byte();
  }
  // The operation type and the timestamp may come in either order; the checksum takes timestamp, then type.
  for (;;) {
    if (tag === TAG.CELL_TYPE && cell.op === undefined) {
      cell.op = r.byte();
    } else if (tag === TAG.CELL_TIMESTAMP && cell.timestamp === undefined) {
      cell.timestamp = r.take(8).readBigInt64LE(0);
    } else {
      break;
    }
    tag = r.byte();
  }
  if (cell.timestamp !== undefined) {
    const ts = Buffer.alloc(8);
    ts.writeBigInt64LE(cell.timestamp);
    crc = crcBytes(crc, ts);
  }
  if (cell.op !== undefined) crc = crcByte(crc, cell.op);
  if (tag !== TAG.CELL_CHECKSUM) throw new PlainBufferError(`cell ${cell.name}: expected its checksum, got tag ${tag}`);
  const sum = r.byte();
  if (sum !== crc) throw new PlainBufferError(`cell ${cell.name}: checksum ${sum} does not match ${crc}`);
  return { cell, crc, next: r.tag() };
}

function readRowBody(r: Reader, first: number): { row: Row; next: number } {
  if (first !== TAG.ROW_PK) throw new PlainBufferError(`a row must start with its primary key, got tag ${first}`);
  const row: Row = { primaryKey: [], cells: [], deleteMarker: false };
  let rowCrc = 0;
  let tag = r.tag();
  while (tag === TAG.CELL) {
    const { cell, crc, next } = readCell(r);
    row.primaryKey.push(cell);
    rowCrc = crcByte(rowCrc, crc);
    tag = next;
  }
  if (tag === TAG.ROW_DATA) {
    tag = r.tag();
    while (tag === TAG.CELL) {
      const { cell, crc, next } = readCell(r);
      row.cells.push(cell);
      rowCrc = crcByte(rowCrc, crc);
      tag = next;
    }
  }
  if (tag === TAG.DELETE_ROW_MARKER) {
    row.deleteMarker = true;
    tag = r.tag();
  }
  rowCrc = crcByte(rowCrc, row.deleteMarker ? 1 : 0);
  if (tag !== TAG.ROW_CHECKSUM) throw new PlainBufferError(`expected the row checksum, got tag ${tag}`);
  const sum = r.byte();
  if (sum !== rowCrc) throw new PlainBufferError(`row checksum ${sum} does not match ${rowCrc}`);
  return { row, next: r.tag() };
}

/**
 * Decodes a plain buffer holding exactly one row. Zero bytes after the row are padding, which the service ignores:
 * the official Node SDK sizes a key with INF_MIN or INF_MAX one byte too large for each and sends the zeros.
 */
export function decodeRow(buf: Buffer): Row {
  const r = new Reader(buf);
  if (r.uint32() !== HEADER) throw new PlainBufferError('bad plain buffer header');
  const { row, next } = readRowBody(r, r.tag());
  if (next !== 0 || buf.subarray(r.pos).some((b) => b !== 0))
    throw new PlainBufferError('trailing bytes after the row');
  return row;
}

class Writer {
  private readonly chunks: Buffer[] = [];

  byte(b: number): void {
    this.chunks.push(Buffer.from([b]));
  }

  bytes(b: Buffer): void {
    this.chunks.push(b);
  }

  done(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

function writeCell(w: Writer, name: string, value: Value, timestamp?: bigint): number {
  const nameBytes = Buffer.from(name, 'utf8');
  const { type, payload } = valueBytes(value);
  w.byte(TAG.CELL);
  w.byte(TAG.CELL_NAME);
  w.bytes(u32(nameBytes.length));
  w.bytes(nameBytes);
  w.byte(TAG.CELL_VALUE);
  w.bytes(u32(1 + payload.length));
  w.byte(type);
  w.bytes(payload);
  let crc = crcValue(crcBytes(0, nameBytes), value);
  if (timestamp !== undefined) {
    const ts = Buffer.alloc(8);
    ts.writeBigInt64LE(timestamp);
    w.byte(TAG.CELL_TIMESTAMP);
    w.bytes(ts);
    crc = crcBytes(crc, ts);
  }
  w.byte(TAG.CELL_CHECKSUM);
  w.byte(crc);
  return crc;
}

export interface OutRow {
  primaryKey: Array<{ name: string; value: Value }>;
  attributes: Array<{ name: string; value: Value; timestamp: bigint }>;
}

function writeRow(w: Writer, row: OutRow): void {
  let rowCrc = 0;
  w.byte(TAG.ROW_PK);
  for (const pk of row.primaryKey) rowCrc = crcByte(rowCrc, writeCell(w, pk.name, pk.value));
  if (row.attributes.length > 0) {
    w.byte(TAG.ROW_DATA);
    for (const a of row.attributes) rowCrc = crcByte(rowCrc, writeCell(w, a.name, a.value, a.timestamp));
  }
  rowCrc = crcByte(rowCrc, 0);
  w.byte(TAG.ROW_CHECKSUM);
  w.byte(rowCrc);
}

/** Encodes rows behind one header (an empty buffer for no rows), as GetRange and GetRow answer them. */
export function encodeRows(rows: OutRow[]): Buffer {
  if (rows.length === 0) return Buffer.alloc(0);
  const w = new Writer();
  w.bytes(u32(HEADER));
  for (const row of rows) writeRow(w, row);
  return w.done();
}
