import type { ModelType } from '../../records.js';

// The object-key layout, owned by this one module (docs/ARCHITECTURE.md, "Contracts, and where each lives").

/** `images/<user>/<taskId>_<n>.png`, n from 1. */
export function objectKeyForOutput(user: string, taskId: string, n: number): string {
  return `images/${user}/${taskId}_${n}.png`;
}

/** Whether `key` is one of the task's outputs (`images/<user>/<taskId>_<n>.png`), not another task's that shares a prefix. */
export function isOutputOf(key: string, user: string, taskId: string): boolean {
  const prefix = `images/${user}/${taskId}_`;
  return key.startsWith(prefix) && /^[0-9]+\.png$/.test(key.slice(prefix.length));
}

/** `inputs/<user>/<taskId>/`: a task's claim-checked inputs (and its large passthrough body). */
export function inputPrefix(user: string, taskId: string): string {
  return `inputs/${user}/${taskId}/`;
}

/** `inputs/<user>/<taskId>/<name>`: where the API's claim check puts base64 inputs. */
export function objectKeyForInput(user: string, taskId: string, name: string): string {
  return `${inputPrefix(user, taskId)}${name}`;
}

/**
 * `control/<user>/<taskId>/interrupt`: an A1111-style interrupt request for a running task. The agent polls for it,
 * because with one request per instance (FC's instanceConcurrency 1) a second request can never reach a busy one.
 */
export function objectKeyForInterrupt(user: string, taskId: string): string {
  return `${controlPrefix(user, taskId)}interrupt`;
}

/** `control/<user>/<taskId>/`: a task's control requests. */
export function controlPrefix(user: string, taskId: string): string {
  return `control/${user}/${taskId}/`;
}

/** `previews/<user>/<taskId>/`: where a running task's live previews are kept while it runs. */
export function previewPrefix(user: string, taskId: string): string {
  return `previews/${user}/${taskId}/`;
}

/**
 * `previews/<user>/<taskId>/<n>.jpg`: a task's n-th live preview. Each preview has its own key, so a signed link
 * never changes content and may be cached.
 */
export function objectKeyForPreview(user: string, taskId: string, n: number): string {
  return `${previewPrefix(user, taskId)}${n}.jpg`;
}

export function objectKeyForModel(type: ModelType, name: string): string {
  return `models/${type}/${name}`;
}

/** The prefixes a user may reference in requests. */
export function userPrefixes(user: string): string[] {
  return [`images/${user}/`, `inputs/${user}/`];
}

export class ObjectKeyError extends Error {}

const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;

/**
 * Checks that a key is a plain relative key: no traversal, no absolute path, no backslash, no scheme, no empty
 * segment. Throws ObjectKeyError with the reason; returns the key.
 */
export function assertSafeKey(key: string): string {
  if (typeof key !== 'string' || key.length === 0) throw new ObjectKeyError('object key is empty');
  if (key.length > 1024) throw new ObjectKeyError('object key is longer than 1024 characters');
  if (key.includes('\\')) throw new ObjectKeyError('object key must not contain a backslash');
  if (key.startsWith('/')) throw new ObjectKeyError('object key must be relative (no leading /)');
  if (SCHEME.test(key)) throw new ObjectKeyError('object key must not carry a scheme; URLs are never fetched');
  if ([...key].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f))
    throw new ObjectKeyError('object key must not contain control characters');
  const segments = key.split('/');
  if (segments.some((s) => s === '..' || s === '.'))
    throw new ObjectKeyError("object key must not contain '..' or '.'");
  if (segments.some((s) => s === '')) throw new ObjectKeyError('object key must not contain empty segments');
  return key;
}

/** Whether the key passes assertSafeKey. */
export function isSafeKey(key: string): boolean {
  try {
    assertSafeKey(key);
    return true;
  } catch {
    return false;
  }
}

/** True when `user` may reference `key` in a request. Admins may reference any safe key. */
export function mayReference(key: string, user: string, isAdmin: boolean): boolean {
  if (isAdmin) return true;
  return userPrefixes(user).some((p) => key.startsWith(p));
}
