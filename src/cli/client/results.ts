import { mkdir } from 'node:fs/promises';
import { extname, join, posix } from 'node:path';
import type { SdflowClient, TaskResult } from './api.js';
import { EXIT_INTERRUPTED } from './options.js';
import { fields, printJson, printLines, seconds, seedsOf } from './output.js';

// Reporting a task's result: downloading its images, printing it for people or as JSON, and its exit code.

/** Saves a task's images as `<dir>/<taskId>_<n>.png` (n from 1, in the result's order) and returns the paths. */
export async function downloadImages(client: SdflowClient, result: TaskResult, dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  return Promise.all(
    result.ossUrl.map(async (url, i) => {
      const file = join(dir, `${result.taskId}_${i + 1}${extname(posix.basename(result.images[i] ?? '')) || '.png'}`);
      await client.download(url, file);
      return file;
    }),
  );
}

export interface ReportOptions {
  json?: boolean;
  /** Download a succeeded task's images into this directory. */
  out?: string;
  /** Client-side time from submit to the end, for the human line. */
  elapsedMs?: number;
}

/** Prints the result (with the downloaded files) and returns the saved paths. */
export async function reportResult(
  client: SdflowClient,
  result: TaskResult,
  options: ReportOptions,
): Promise<string[]> {
  const files =
    options.out !== undefined && result.status === 'succeeded' ? await downloadImages(client, result, options.out) : [];
  if (options.json) {
    printJson(options.out !== undefined ? { ...result, files } : result);
    return files;
  }
  const seeds = seedsOf(result.info);
  const took = options.elapsedMs !== undefined ? ` in ${seconds(options.elapsedMs)}` : '';
  printLines(
    fields([
      ['taskId', result.taskId],
      ['status', `${result.status}${took}`],
      ['message', result.message],
      ['retryOf', result.retryOf],
      ['seeds', seeds.length > 0 ? seeds.join(', ') : undefined],
      ...(files.length > 0
        ? [['saved', files] as [string, string[]]]
        : [['images', result.images] as [string, string[]], ['urls', result.ossUrl] as [string, string[]]]),
    ]),
  );
  return files;
}

/** 0 when the task succeeded; 130 when the user cancelled it with Ctrl-C; 1 for any other end. */
export function exitCodeFor(result: TaskResult, interrupted = false): number {
  if (result.status === 'succeeded') return 0;
  return interrupted && result.status === 'cancelled' ? EXIT_INTERRUPTED : 1;
}
