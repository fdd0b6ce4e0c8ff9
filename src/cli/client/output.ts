import cliProgress from 'cli-progress';
import { ApiError, type CliError } from './api.js';

// Human output: aligned tables and `key  value` lines on stdout; progress and errors on stderr. Machine output:
// the API's JSON, pretty-printed, on stdout.

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printError(err: CliError): void {
  const status = err instanceof ApiError ? ` (HTTP ${err.status})` : '';
  process.stderr.write(`error: ${err.message}${status}\n`);
}

/** Informational lines for people (submitted, cancelling, …): stderr, so stdout stays the result. */
export function note(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** A progress bar on stderr, drawn alike by every command; `format` is cli-progress's, with the fields it shows. */
export function progressBar(format: string): cliProgress.SingleBar {
  return new cliProgress.SingleBar({
    format,
    stream: process.stderr,
    barsize: 30,
    barCompleteChar: '█',
    barIncompleteChar: '░',
    hideCursor: false,
    gracefulExit: false,
  });
}

/** Columns padded to their widest cell; the last column is not padded. */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i])))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** `key  value` lines; a value with several lines is indented under its first. */
export function fields(entries: [string, string | string[] | undefined][]): string {
  const shown = entries.filter((e): e is [string, string | string[]] => e[1] !== undefined && e[1].length > 0);
  const width = Math.max(0, ...shown.map(([k]) => k.length));
  return shown
    .flatMap(([k, v]) => {
      const values = Array.isArray(v) ? v : [v];
      return values.map((line, i) => `${(i === 0 ? k : '').padEnd(width)}  ${line}`);
    })
    .join('\n');
}

export function printLines(text: string): void {
  if (text) process.stdout.write(`${text}\n`);
}

export const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** The seeds of a result, from A1111's info JSON string. */
export function seedsOf(info: string | null): number[] {
  if (!info) return [];
  try {
    const parsed = JSON.parse(info) as { all_seeds?: unknown; seed?: unknown };
    if (Array.isArray(parsed.all_seeds)) return parsed.all_seeds.filter((s): s is number => typeof s === 'number');
    return typeof parsed.seed === 'number' ? [parsed.seed] : [];
  } catch {
    return [];
  }
}
