import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Context, Next } from 'koa';
import { LANES, type Lane } from '../types.js';
import { HttpError } from './errors.js';

// API keys (docs/ARCHITECTURE.md, "The HTTP contract"): `user:role:secret` entries from SDFLOW_API_KEYS or a keys file,
// each optionally followed by scheduling attributes: `user:role:secret;lane=normal;maxLane=high;weight=1;maxSlots=4`.
// Only the secrets' hashes are kept. With no keys, auth is off and every caller is the local admin.

export type Role = 'admin' | 'user';

/** How a key's tasks take their place in the grant order (docs/ARCHITECTURE.md, "The cap"). */
export interface KeyScheduling {
  /** The lane of a request that sends no Task-Priority (`normal` when absent). */
  lane?: Lane;
  /** The highest lane its requests may ask for (`high` when absent). */
  maxLane?: Lane;
  /** Its user's share of the slots within a lane, relative to other users' (1 when absent). */
  weight?: number;
  /** The most slots its user's tasks hold at once (no cap of its own when absent). */
  maxSlots?: number;
}

export interface Principal extends KeyScheduling {
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
    const [key, ...attributes] = entry.split(';');
    const [user, role, ...rest] = key.split(':');
    const secret = rest.join(':');
    if (!user || !USER.test(user)) throw new Error(`${source}: user in "${user}:…" must match ${USER}`);
    if (role !== 'admin' && role !== 'user') throw new Error(`${source}: role of ${user} must be admin or user`);
    if (secret.length < 8) throw new Error(`${source}: the secret of ${user} must be at least 8 characters`);
    const digest = hash(secret).toString('hex');
    const scheduling = keyScheduling(attributes, `${source}: key of ${user}`);
    byHash.set(digest, { user, role, keyId: digest.slice(0, 16), ...scheduling });
  }
  return { byHash };
}

const isLane = (value: string): value is Lane => (LANES as readonly string[]).includes(value);

/** A key's `;name=value` attributes; an unknown name or a bad value refuses the whole key ring. */
function keyScheduling(attributes: string[], where: string): KeyScheduling {
  const scheduling: KeyScheduling = {};
  for (const attribute of attributes) {
    const [name, value = ''] = attribute.split('=', 2).map((s) => s.trim());
    if (name === 'lane' || name === 'maxLane') {
      if (!isLane(value)) throw new Error(`${where}: ${name} must be one of ${LANES.join(', ')}`);
      scheduling[name] = value;
    } else if (name === 'weight') {
      const weight = Number(value);
      if (!(weight > 0 && weight <= 1000)) throw new Error(`${where}: weight must be a number above 0, at most 1000`);
      scheduling.weight = weight;
    } else if (name === 'maxSlots') {
      if (!/^[1-9][0-9]{0,5}$/.test(value)) throw new Error(`${where}: maxSlots must be a positive integer`);
      scheduling.maxSlots = Number(value);
    } else {
      throw new Error(`${where}: unknown attribute "${name}" (lane, maxLane, weight, maxSlots)`);
    }
  }
  const { lane, maxLane } = scheduling;
  if (lane && maxLane && LANES.indexOf(lane) < LANES.indexOf(maxLane)) {
    throw new Error(`${where}: lane ${lane} is above its maxLane ${maxLane}`);
  }
  return scheduling;
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
