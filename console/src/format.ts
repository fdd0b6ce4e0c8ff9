// How the console writes times, task phases and A1111's infotext.

/** A time as the reader's clock shows it; today's without the date. */
export function when(iso: string | undefined): string {
  if (!iso) return '';
  const t = new Date(iso);
  const sameDay = t.toDateString() === new Date().toDateString();
  return sameDay ? t.toLocaleTimeString() : t.toLocaleString();
}

const ORDINAL_SUFFIX: Record<string, string> = { one: 'st', two: 'nd', few: 'rd', other: 'th' };
const ordinalRules = new Intl.PluralRules('en', { type: 'ordinal' });
export const ordinal = (n: number) => `${n}${ORDINAL_SUFFIX[ordinalRules.select(n)]}`;

/** The infotext of each image, from A1111's info (a JSON string); empty where SD gave none. */
export function infotexts(info: string | null, count: number): string[] {
  let texts: unknown = [];
  try {
    texts = info ? (JSON.parse(info) as { infotexts?: unknown }).infotexts : [];
  } catch {
    // An info that is not JSON has no infotexts.
  }
  return Array.from({ length: count }, (_, i) =>
    Array.isArray(texts) && typeof texts[i] === 'string' ? texts[i] : '',
  );
}

export const percent = (fraction: number) => `${Math.round(fraction * 100)}%`;
