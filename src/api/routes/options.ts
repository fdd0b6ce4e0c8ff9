import type Router from '@koa/router';
import type { Context } from 'koa';
import type { MetaStore } from '../../platform/meta-store/port.js';
import { principalOf } from '../auth.js';
import { badRequest, notFound } from '../errors.js';
import { optionsBody } from '../platform-schemas.js';

// Per-user WebUI settings (the reference's POST /options): each POST stores a new version for the caller. Their
// txt2img and img2img requests get the latest version (or the one the `version` header names) as override_settings;
// keys in the request's own override_settings win, and the checkpoint is never taken from options.

const VERSION = /^[1-9][0-9]{0,9}$/;

function parseVersion(value: string, where: string): number {
  if (!VERSION.test(value)) throw badRequest(`${where}: must be a positive integer (an options version)`);
  return Number(value);
}

/** The `version` header of a generation request: which of the caller's options versions to apply. */
export function optionsVersionHeader(ctx: Context): number | undefined {
  const value = ctx.get('version').trim();
  return value ? parseVersion(value, 'version header') : undefined;
}

export function optionsRoutes(router: Router, meta: MetaStore) {
  router.post('/options', async (ctx) => {
    const { data } = optionsBody.parse(ctx.request.body ?? {});
    const version = await meta.putUserOptions(principalOf(ctx).user, data);
    ctx.body = { message: 'success', version, data };
  });

  router.get('/options', async (ctx) => {
    const latest = await meta.getUserOptions(principalOf(ctx).user);
    ctx.body = latest ? { version: latest.version, data: latest.data } : { version: 0, data: {} };
  });

  router.get('/options/:version', async (ctx) => {
    const version = parseVersion(ctx.params.version ?? '', 'version');
    const options = await meta.getUserOptions(principalOf(ctx).user, version);
    if (!options) throw notFound(`you have no options version ${version}`);
    ctx.body = { version: options.version, data: options.data };
  });
}
