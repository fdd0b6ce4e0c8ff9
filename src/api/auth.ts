import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Context, Next } from 'koa';
import { HttpError } from './errors.js';

// API keys (docs/ARCHITECTURE.md, "The HTTP contract"): `user:role:secret` entries from SDFLOW_API_KEYS or a keys file.
// Only the secrets' hashes are kept. With no keys, auth is off and every caller is the local admin.

export type Role = 'admin' | 'user';

export interface Principal {
  user: string;
  role: Role;
  /** Which key authenticated the caller (a prefix of its hash); absent when auth is off. Limits are per key. */
  keyId?: string;
}

export interface KeyRing {
  /** sha256(secret) → principal */
  byHash: Map<string, Principal>;
}

/** The user every caller is when auth is off. */
export const LOCAL_PRINCIPAL: Principal = { user: 'local', role: 'admin' };

const USER = /^[A-Za-z0-9_-]{1,64}$/;
const hash = (secret: string) => createHash('sha256').update(secret).digest();

export function parseKeys(text: string, source: string): KeyRing {
  const byHash = new Map<string, Principal>();
  const entries = text
    .split(/[,\n]/)
    .map((e) => e.trim())
    .filter((e) => e && !e.startsWith('#'));
  for (const entry of entries) {
    const [user, role, ...rest] = entry.split(':');
    const secret = rest.join(':');
    if (!user || !USER.test(user)) throw new Error(`${source}: user in "${user}:…" must match ${USER}`);
    if (role !== 'admin' && role !== 'user') throw new Error(`${source}: role of ${user} must be admin or user`);
    if (secret.length < 8) throw new Error(`${source}: the secret of ${user} must be at least 8 characters`);
    const digest = hash(secret).toString('hex');
    byHash.set(digest, { user, role, keyId: digest.slice(0, 16) });
  }
  return { byHash };
}

/** The key ring from config, or null when no keys are configured (auth off). */
export function loadKeyRing(apiKeys: string | undefined, apiKeysFile: string | undefined): KeyRing | null {
  const parts: KeyRing[] = [];
  if (apiKeys) parts.push(parseKeys(apiKeys, 'SDFLOW_API_KEYS'));
  if (apiKeysFile) parts.push(parseKeys(readFileSync(apiKeysFile, 'utf8'), apiKeysFile));
  const byHash = new Map(parts.flatMap((p) => [...p.byHash]));
  return byHash.size > 0 ? { byHash } : null;
}

function lookup(ring: KeyRing, secret: string): Principal | undefined {
  const digest = hash(secret);
  for (const [stored, principal] of ring.byHash) {
    if (timingSafeEqual(Buffer.from(stored, 'hex'), digest)) return principal;
  }
  return undefined;
}

/** Routes anyone may call: the health probe and signed downloads (their signature authorizes them). */
const isPublic = (path: string) => path === '/healthz' || path.startsWith('/files/');

export function authenticate(ring: KeyRing | null) {
  return async (ctx: Context, next: Next) => {
    if (!ring) {
      ctx.state.principal = LOCAL_PRINCIPAL;
      return next();
    }
    if (isPublic(ctx.path)) return next();
    const header = ctx.get('authorization');
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match)
      throw new HttpError(
        401,
        'missing API key: send Authorization: Bearer <secret>',
        {},
        { 'WWW-Authenticate': 'Bearer' },
      );
    const principal = lookup(ring, match[1].trim());
    if (!principal) throw new HttpError(401, 'invalid API key', {}, { 'WWW-Authenticate': 'Bearer' });
    ctx.state.principal = principal;
    return next();
  };
}

export function principalOf(ctx: Context): Principal {
  return ctx.state.principal as Principal;
}

export function requireAdmin(ctx: Context): Principal {
  const p = principalOf(ctx);
  if (p.role !== 'admin') throw new HttpError(403, 'this route needs an admin key');
  return p;
}
