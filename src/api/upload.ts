import type { IncomingMessage } from 'node:http';
import { PassThrough } from 'node:stream';
import busboy from 'busboy';
import { z } from 'zod';
import type { ObjectInfo, ObjectStore } from '../platform/object-store/port.js';
import { badRequest, describeZodError, HttpError } from './errors.js';

// A model upload: a multipart form whose fields come first and whose one file part, `file`, streams straight into
// the object store. Nothing is held whole in memory. The object is committed only once the whole form has arrived
// and is valid: a form that turns out bad (too big, cut off, a field after the file) leaves no object behind.

export const FILE_FIELD = 'file';
const MAX_FIELD_BYTES = 64 * 1024;
/**
 * How much of a refused upload is still read and dropped, so that the client, still sending, reads the answer
 * instead of a reset connection. Past this the connection is closed.
 */
const DRAIN_BYTES = 64 * 1024 * 1024;
const DRAIN_MS = 10_000;

export interface ReceivedForm {
  fields: Record<string, string>;
  /** The stored file; absent when the form had no file part. */
  stored?: ObjectInfo;
}

export interface ReceiveOptions {
  store: ObjectStore;
  /** Largest file accepted, in bytes. */
  maxBytes: number;
  /** Names the limit in the 413 answer. */
  limitName: string;
  /** Fields that must come before the file (its key depends on them). */
  fieldsFirst: readonly string[];
  /**
   * Called when the file part starts, with the fields read so far: checks them and returns the key to store the
   * file at. Throwing refuses the upload before any of the file is stored.
   */
  placeFile: (fields: Record<string, string>) => Promise<string>;
}

/** Reads and drops what is left of a request body, within bounds; true when the body ended. */
function drain(req: IncomingMessage): Promise<boolean> {
  if (req.complete) return Promise.resolve(true);
  if (req.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    let left = DRAIN_BYTES;
    const done = (complete: boolean) => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      resolve(complete);
    };
    const onData = (chunk: Buffer) => {
      left -= chunk.length;
      if (left < 0) done(false);
    };
    const onEnd = () => done(true);
    const onClose = () => done(req.complete);
    const timer = setTimeout(() => done(false), DRAIN_MS);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('close', onClose);
    req.resume();
  });
}

/** The error as an HTTP answer that closes the connection: the rest of the body is not worth reading. */
function closingConnection(err: unknown): unknown {
  const close = { Connection: 'close' };
  if (err instanceof HttpError) return new HttpError(err.status, err.message, err.extra, { ...err.headers, ...close });
  if (err instanceof z.ZodError) return new HttpError(400, describeZodError(err), {}, close);
  return err;
}

export function receiveForm(req: IncomingMessage, o: ReceiveOptions): Promise<ReceivedForm> {
  let bb: busboy.Busboy;
  try {
    // One byte over the limit is what busboy reports as `limit`, so a file of exactly the limit is accepted.
    bb = busboy({
      headers: req.headers,
      limits: { fileSize: o.maxBytes + 1, files: 1, fields: 20, parts: 21, fieldSize: MAX_FIELD_BYTES },
    });
  } catch (err) {
    return Promise.reject(badRequest(`body: not a multipart form: ${(err as Error).message}`));
  }

  return new Promise<ReceivedForm>((resolve, reject) => {
    const fields: Record<string, string> = {};
    let fileSeen = false;
    let settled = false;
    // The file goes to the store through this stream, which ends only when the whole form was read and is valid.
    const body = new PassThrough();
    // A failure destroys `body` with its error, which reaches the store's put through its reads, also when the put
    // has not started reading yet; without a listener that error would crash the process.
    body.on('error', () => undefined);
    let placing: Promise<unknown> | undefined;
    let storing: Promise<ObjectInfo> | undefined;

    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      req.unpipe(bb);
      // Busboy may be inside one of its own event handlers here: it is destroyed once that has returned.
      process.nextTick(() => bb.destroy());
      // With the error, the store's put stops and drops its partial object; unconsumed, it just goes away.
      if (storing) body.destroy(err instanceof Error ? err : new Error(String(err)));
      else body.destroy();
      // Answer only once placeFile has decided (the caller may have to undo what it did) and the store has dropped
      // its partial object.
      const settling = [placing, storing].map((p) => p?.catch(() => undefined));
      void Promise.all([drain(req), ...settling]).then(([complete]) => reject(complete ? err : closingConnection(err)));
    };

    bb.on('field', (name, value, info) => {
      if (settled) return;
      if (fileSeen) return fail(badRequest(`${name}: must come before the ${FILE_FIELD} field in the form`));
      if (info.valueTruncated) return fail(badRequest(`${name}: must be at most ${MAX_FIELD_BYTES} bytes`));
      fields[name] = value;
    });

    bb.on('file', (name, file) => {
      // Destroying the parser on a failure errors its file stream; that failure is already being answered.
      file.on('error', fail);
      if (settled) return void file.resume();
      if (name !== FILE_FIELD) {
        file.resume();
        return fail(badRequest(`${name}: unexpected file; send the model file as the form field "${FILE_FIELD}"`));
      }
      fileSeen = true;
      const missing = o.fieldsFirst.filter((f) => fields[f] === undefined);
      if (missing.length > 0) {
        file.resume();
        return fail(badRequest(`${FILE_FIELD}: must come after the ${missing.join(' and ')} field(s) in the form`));
      }
      file.on('limit', () =>
        fail(new HttpError(413, `${FILE_FIELD}: larger than the upload limit of ${o.maxBytes} bytes (${o.limitName})`)),
      );
      placing = o.placeFile({ ...fields }).then(
        (key) => {
          if (settled) return;
          file.pipe(body, { end: false });
          storing = o.store.put(key, body, { contentType: 'application/octet-stream' });
          storing.catch(fail);
        },
        (err) => {
          file.resume();
          fail(err);
        },
      );
    });

    bb.on('filesLimit', () => fail(badRequest(`${FILE_FIELD}: send exactly one file`)));
    bb.on('partsLimit', () => fail(badRequest('body: too many form fields')));
    bb.on('fieldsLimit', () => fail(badRequest('body: too many form fields')));
    bb.on('error', (err) => fail(badRequest(`body: malformed multipart form: ${(err as Error).message}`)));
    bb.on('finish', () => {
      if (settled) return;
      if (!fileSeen) {
        settled = true;
        resolve({ fields });
        return;
      }
      // Busboy finishes only after the file part was read to its end, which started once placeFile had decided; so
      // the whole form is in and valid, and the object may be committed.
      body.end();
      storing!.then((stored) => {
        if (settled) return;
        settled = true;
        resolve({ fields, stored });
      }, fail);
    });

    req.on('close', () => {
      if (!req.complete) fail(badRequest('body: the upload was cut off before the form ended'));
    });
    req.pipe(bb);
  });
}
