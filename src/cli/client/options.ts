import { type Command, InvalidArgumentError, Option } from 'commander';
import { CliError, SdflowClient } from './api.js';
import { printError } from './output.js';

// Options every client command takes, argument parsers, and the action wrapper that turns errors into exit codes:
// 0 success, 1 an error from the API or the task, 2 a usage error, 130 interrupted.

export const DEFAULT_URL = 'http://127.0.0.1:8080';
export const EXIT_USAGE = 2;
export const EXIT_INTERRUPTED = 130;

export interface GlobalOptions {
  url: string;
  key?: string;
  json?: boolean;
}

/** Adds --url, --key and --json, and makes usage errors exit with 2. */
export function clientCommand(cmd: Command): Command {
  return usageExit(cmd)
    .addOption(new Option('--url <base>', 'base URL of the sdflow API').env('SDFLOW_URL').default(DEFAULT_URL))
    .addOption(new Option('--key <secret>', 'API key, sent as Authorization: Bearer').env('SDFLOW_API_KEY'))
    .option('--json', "print the API's JSON instead of human output");
}

/** Usage errors (unknown option, missing argument, bad value) exit with 2; help exits with 0. */
export function usageExit(cmd: Command): Command {
  return cmd.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE));
}

export function clientFor(opts: GlobalOptions): SdflowClient {
  return new SdflowClient(opts.url, opts.key || undefined);
}

/** Runs a client action; a CliError is printed as one line and becomes the exit code. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<number | undefined>) {
  return async (...args: A) => {
    try {
      process.exitCode = (await fn(...args)) ?? 0;
    } catch (err) {
      if (!(err instanceof CliError)) throw err;
      printError(err);
      process.exitCode = err.exitCode;
    }
  };
}

export function parseNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError('must be a number');
  return n;
}

export function parseInteger(value: string): number {
  const n = parseNumber(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError('must be an integer');
  return n;
}

export function parsePositiveInteger(value: string): number {
  const n = parseInteger(value);
  if (n < 1) throw new InvalidArgumentError('must be at least 1');
  return n;
}

/** `--set key=value`, repeatable: the value is parsed as JSON when it is JSON, else kept as a string. */
export function collectField(entry: string, previous: Record<string, unknown> | undefined): Record<string, unknown> {
  const eq = entry.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError('expected key=value');
  const key = entry.slice(0, eq).trim();
  const raw = entry.slice(eq + 1);
  let value: unknown = raw;
  try {
    value = JSON.parse(raw);
  } catch {
    // Not JSON: a plain string such as a sampler name.
  }
  return { ...previous, [key]: value };
}

/** Repeatable string options. */
export function collectList(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
