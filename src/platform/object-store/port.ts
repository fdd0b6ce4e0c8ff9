import type { Readable } from 'node:stream';

export interface ObjectInfo {
  key: string;
  size: number;
  /** A content hash (hex). */
  etag: string;
  contentType: string;
  lastModified: Date;
}

export interface PutOptions {
  contentType?: string;
}

/** The object store port: images, claim-checked inputs and model files, addressed by relative keys. */
export interface ObjectStore {
  /** Writes the whole object atomically: a reader never sees a partial object. */
  put(key: string, body: Buffer | Readable, options?: PutOptions): Promise<ObjectInfo>;
  get(key: string): Promise<Buffer>;
  getStream(key: string): Promise<Readable>;
  /** Null when the object does not exist. */
  head(key: string): Promise<ObjectInfo | null>;
  delete(key: string): Promise<void>;
  list(prefix: string): Promise<ObjectInfo[]>;
  /** A URL that downloads the object without other credentials until it expires. */
  signedUrl(key: string, ttlS: number): Promise<string>;
}

export class ObjectNotFoundError extends Error {
  constructor(readonly key: string) {
    super(`object not found: ${key}`);
    this.name = 'ObjectNotFoundError';
  }
}
