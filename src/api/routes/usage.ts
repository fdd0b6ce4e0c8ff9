import type Router from '@koa/router';
import type { MetaStore } from '../../platform/meta-store/port.js';
import { principalOf } from '../auth.js';
import { usageQuery, usageRows, usageWindow } from '../usage.js';

// GET /usage?from=&to=&user=: the cost of your tasks (an admin's: every user's, or one user's) by checkpoint.

export function usageRoutes(router: Router, meta: MetaStore) {
  router.get('/usage', async (ctx) => {
    const window = usageWindow(usageQuery.parse(ctx.query), principalOf(ctx));
    ctx.body = { from: window.from, to: window.to, rows: await usageRows(meta, window) };
  });
}
