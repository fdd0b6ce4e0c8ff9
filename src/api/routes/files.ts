import type { Context, Next } from 'koa';
import type { ObjectStore } from '../../platform/object-store/port.js';
import { verifyObjectUrl } from '../../platform/object-store/signing.js';
import { HttpError, notFound } from '../errors.js';

// GET /files/<key>?expires=…&signature=…: signed downloads from the local object store. The signature authorizes
// the download; no API key is needed.

export function filesRoute(store: ObjectStore, secret: Buffer) {
  return async (ctx: Context, next: Next) => {
    if (!ctx.path.startsWith('/files/')) return next();
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') throw new HttpError(405, 'signed files are read-only');
    let key: string;
    try {
      key = ctx.path.slice('/files/'.length).split('/').map(decodeURIComponent).join('/');
    } catch {
      throw new HttpError(403, 'invalid signed URL');
    }
    const verdict = verifyObjectUrl(key, ctx.query.expires, ctx.query.signature, secret);
    if (verdict === 'expired') throw new HttpError(403, 'signed URL expired');
    if (verdict !== 'ok') throw new HttpError(403, 'invalid signed URL');
    const info = await store.head(key);
    if (!info) throw notFound(`no object at ${key}`);
    ctx.type = info.contentType;
    ctx.length = info.size;
    ctx.etag = info.etag;
    ctx.set('Cache-Control', 'private, max-age=3600, immutable');
    ctx.body = ctx.method === 'HEAD' ? null : await store.getStream(key);
  };
}
