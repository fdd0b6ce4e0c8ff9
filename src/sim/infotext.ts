// A1111's infotext: the "generation parameters" text stored in each PNG and in info.infotexts. Format:
//   <prompt>\nNegative prompt: <negative>\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, ...
// A value holding a comma, colon or newline is JSON-quoted, as A1111's infotext_utils.quote does.

export type InfotextParams = Record<string, string | number | boolean | null | undefined>;

/** Quotes a value the way A1111 does: JSON-quoted only when it holds `,`, `:` or a newline. */
export function quoteValue(value: string | number | boolean): string {
  const text = String(value);
  return /[,:\n]/.test(text) ? JSON.stringify(text) : text;
}

/** `Key: value, Key: value`, skipping null and undefined values, in insertion order. */
export function formatParams(params: InfotextParams): string {
  return Object.entries(params)
    .filter((entry): entry is [string, string | number | boolean] => entry[1] !== null && entry[1] !== undefined)
    .map(([k, v]) => (k === v ? k : `${k}: ${quoteValue(v)}`))
    .join(', ');
}

/** The whole infotext: prompt, the negative prompt line when there is one, then the parameters line. */
export function formatInfotext(prompt: string, negativePrompt: string, params: InfotextParams): string {
  const negative = negativePrompt ? `\nNegative prompt: ${negativePrompt}` : '';
  return `${prompt}${negative}\n${formatParams(params)}`.trim();
}

const PARAM_RE = /\s*([\w ]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g;

function unquote(value: string): string {
  if (value.startsWith('"') && value.endsWith('"')) {
    try {
      return JSON.parse(value) as string;
    } catch {
      return value;
    }
  }
  return value;
}

/** Parses an infotext back into A1111's png-info `parameters` shape (Prompt, Negative prompt, and each key). */
export function parseInfotext(text: string): Record<string, string> {
  const lines = text.trim().split('\n');
  const last = lines.length > 1 && /^\s*[\w ]+:/.test(lines[lines.length - 1]) ? lines.pop()! : '';
  const prompt: string[] = [];
  const negative: string[] = [];
  let inNegative = false;
  for (const line of lines) {
    if (line.startsWith('Negative prompt:')) {
      inNegative = true;
      negative.push(line.slice('Negative prompt:'.length).trim());
    } else (inNegative ? negative : prompt).push(line);
  }
  const out: Record<string, string> = { Prompt: prompt.join('\n'), 'Negative prompt': negative.join('\n') };
  for (const m of last.matchAll(PARAM_RE)) out[m[1].trim()] = unquote(m[2].trim());
  return out;
}
