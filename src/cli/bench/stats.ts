// Statistics for the benchmark: nearest-rank percentiles, so every reported value is a measured sample.

/** The nearest-rank percentile of `samples` (any order), for p in (0, 100]; NaN when there are none. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Milliseconds rounded to 0.1 ms. */
export const ms = (value: number) => Math.round(value * 10) / 10;

/** A ratio or a rate rounded to 3 decimals. */
export const round3 = (value: number) => Math.round(value * 1000) / 1000;

/** Distinct messages with their counts, the most frequent first, at most `max`: "3 × failed: …". */
export function tally(messages: readonly string[], max = 3): string[] {
  const counts = new Map<string, number>();
  for (const m of messages) counts.set(m, (counts.get(m) ?? 0) + 1);
  return [...counts]
    .sort((a, b) => b[1] - a[1])
    .slice(0, max)
    .map(([m, n]) => `${n} × ${m}`);
}
