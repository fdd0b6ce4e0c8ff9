import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

// A secret generated once into the data dir when none is configured, so that every process sharing the data dir (and
// every restart) uses the same one: the URL-signing secret and the webhook-signing secret.

export interface SecretKind {
  /** A new secret, as it is written to the file. */
  generate(): string;
  /** Whether a file's text (trimmed) is such a secret. */
  valid(text: string): boolean;
  /** What the file must hold, for the error that reports a damaged one. */
  what: string;
}

/** The secret in `file`, generating it first when the file does not exist. */
export function readOrCreateSecretFile(file: string, kind: SecretKind): string {
  return readSecretFile(file, kind) ?? createSecretFile(file, kind);
}

function readSecretFile(file: string, kind: SecretKind): string | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  // A damaged secret is reported, not replaced: replacing it would silently void everything signed with it.
  if (!kind.valid(text)) throw new Error(`${file} does not hold ${kind.what}; fix or delete it`);
  return text;
}

/**
 * Writes a new secret to a private temp file, then links it into place. link() fails when the name exists, so of
 * processes starting at once exactly one secret wins, and it is never seen half-written; all read the winner.
 */
function createSecretFile(file: string, kind: SecretKind): string {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    try {
      writeSync(fd, `${kind.generate()}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  } finally {
    unlinkSync(tmp);
  }
  const secret = readSecretFile(file, kind);
  if (!secret) throw new Error(`${file} vanished right after it was created`);
  return secret;
}
