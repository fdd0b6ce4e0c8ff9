import type { Context, Next } from 'koa';
import type { ApiDeps } from './app.js';

// GET /healthz: ready only when a checkpoint is servable — a loaded model in the registry, the meta store, Temporal
// and the function runtime all answering. 503 lists what is not ready yet.

export function healthRoute(deps: Pick<ApiDeps, 'meta' | 'temporal' | 'functions' | 'config'>) {
  return async (ctx: Context, next: Next) => {
    if (ctx.path !== '/healthz') return next();
    const problems: string[] = [];
    const check = async (what: string, probe: () => Promise<unknown>) => {
      try {
        await probe();
      } catch (err) {
        problems.push(`${what}: ${(err as Error).message}`);
      }
    };
    await Promise.all([
      check('meta store', async () => {
        const loaded = await deps.meta.listModels({ type: 'stableDiffusion', status: 'loaded' });
        if (loaded.length === 0) throw new Error('no checkpoint is loaded yet');
      }),
      check('temporal', () =>
        deps.temporal.connection.withDeadline(Date.now() + 2000, () => deps.temporal.workflowService.getSystemInfo({})),
      ),
      check('functions', () => deps.functions.listFunctions()),
    ]);
    ctx.status = problems.length ? 503 : 200;
    // The pid tells a launcher that the answer is its own process's, not another one's that held the port before.
    ctx.body = problems.length
      ? { status: 'starting', problems, pid: process.pid }
      : { status: 'ok', pid: process.pid };
  };
}
