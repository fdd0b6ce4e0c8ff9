import type { Context, Next } from 'koa';
import type { MetaStore } from '../platform/meta-store/port.js';
import type { Principal } from './auth.js';
import { HttpError } from './errors.js';

// Per-key limits (429 with Retry-After). Their state lives in the meta store, so every API replica counts the same
// hits and sees the same queue.

const WINDOW_MS = 60_000;

/** At most `perMinute` requests per key in each fixed minute. */
export function rateLimit(meta: MetaStore, perMinute: number) {
  return async (ctx: Context, next: Next) => {
    const key = (ctx.state.principal as Principal | undefined)?.keyId;
    if (key && perMinute > 0) {
      const now = Date.now();
      const window = Math.floor(now / WINDOW_MS);
      const hits = await meta.hitRateWindow(`key:${key}`, window);
      if (hits > perMinute) {
        const retryAfter = Math.max(1, Math.ceil(((window + 1) * WINDOW_MS - now) / 1000));
        throw new HttpError(
          429,
          `rate limit exceeded: at most ${perMinute} requests per minute for this key`,
          {},
          { 'Retry-After': String(retryAfter) },
        );
      }
    }
    return next();
  };
}

/** Refuses a new task while the caller already has `maxQueued` tasks waiting or running. */
export async function enforceQueueLimit(
  meta: MetaStore,
  principal: Principal,
  maxQueued: number,
  retryAfterS: number,
): Promise<void> {
  if (!principal.keyId || maxQueued <= 0) return;
  const open = await meta.listTasks({ user: principal.user, status: ['waiting', 'running'], limit: maxQueued });
  if (open.items.length >= maxQueued) {
    throw new HttpError(
      429,
      `too many tasks in flight: ${open.items.length} waiting or running; the limit is ${maxQueued} per user`,
      {},
      { 'Retry-After': String(retryAfterS) },
    );
  }
}
