import type Router from '@koa/router';
import type { MetaStore } from '../../platform/meta-store/port.js';
import { principalOf } from '../auth.js';
import { notFound } from '../errors.js';
import { optionsBody } from '../platform-schemas.js';
import { parseOptionsVersion } from '../request-headers.js';

// Per-user WebUI settings (POST /options): each POST stores a new version for the caller. Their
// txt2img and img2img requests get the latest version (or the one the `version` header names) as override_settings;
// keys in the request's own override_settings win, and the checkpoint is never taken from options.

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
    const version = parseOptionsVersion(ctx.params.version ?? '', 'version');
    const options = await meta.getUserOptions(principalOf(ctx).user, version);
    if (!options) throw notFound(`you have no options version ${version}`);
    ctx.body = { version: options.version, data: options.data };
  });
}
