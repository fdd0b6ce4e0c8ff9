import { createHash, randomInt } from 'node:crypto';

// Small deterministic helpers: a string hash and a seeded PRNG. The simulator's images depend only on these, so
// the same inputs give the same bytes on every machine.

/** A 32-bit unsigned hash of the given parts (sha256, first 4 bytes). */
export function hash32(...parts: Array<string | number>): number {
  const h = createHash('sha256');
  for (const p of parts) h.update(`${String(p)}\u0000`);
  return h.digest().readUInt32BE(0);
}

/** mulberry32: a tiny, fast, seeded PRNG returning floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random seed in A1111's range for `-1` (0 .. 2^32 - 1). */
export function randomSeed(): number {
  return randomInt(0, 2 ** 32 - 1);
}
