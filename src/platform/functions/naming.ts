import { createHash } from 'node:crypto';

// The one module that owns function naming: `<prefix>sd_<first 40 hex of sha256(model)>`.
// With a prefix of at most 20 characters a name is at most 63 characters, inside FC 3.0's 64.

export const MAX_FUNCTION_NAME_LENGTH = 64;
const PREFIX = /^[a-z0-9_-]{0,20}$/;

export function functionNameFor(model: string, prefix = ''): string {
  if (!PREFIX.test(prefix)) {
    throw new Error(`function prefix ${JSON.stringify(prefix)} must be at most 20 of [a-z0-9_-]`);
  }
  const hash = createHash('sha256').update(model).digest('hex').slice(0, 40);
  return `${prefix}sd_${hash}`;
}

export function isFunctionName(name: string): boolean {
  return /^[a-z0-9_-]{0,20}sd_[0-9a-f]{40}$/.test(name);
}
