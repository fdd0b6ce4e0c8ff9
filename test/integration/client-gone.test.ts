import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_MODEL, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// A client that goes away during a sync wait: the API's wait for it ends at once (it is not held until the sync cap),
// and the task, which is durable, still runs to the end.

let stack: Stack;

beforeAll(async () => {
  // 40 ms per step: 100 steps keep the task running for seconds after the client has gone.
  stack = await startStack({ env: { SDFLOW_SIM_STEP_MS: '40' } });
});

afterAll(async () => {
  await stack?.stop();
});

/** The API log's lines that say a client went away, as JSON. */
function goneLines(): { taskId: string; time: number; status: string }[] {
  return readFileSync(join(stack.dataDir, 'logs', 'api.log'), 'utf8')
    .split('\n')
    .filter((line) => line.includes('the client went away'))
    .map((line) => JSON.parse(line));
}

async function dropDuringWait(path: string, body: Record<string, unknown>) {
  const client = new AbortController();
  const sent = fetch(`${stack.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: client.signal,
  });
  // The taskId header comes only with the answer; the client never sees it, so the task is found by its log line.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const droppedAt = Date.now();
  client.abort();
  await expect(sent).rejects.toThrow();
  const deadline = droppedAt + 5000;
  let line: ReturnType<typeof goneLines>[number] | undefined;
  while (!line && Date.now() < deadline) {
    line = goneLines().find((l) => l.time >= droppedAt - 50);
    if (!line) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  expect(line, `no "client went away" line for ${path}`).toBeDefined();
  return line!;
}

describe('a client that drops during a sync wait', () => {
  for (const [route, body] of [
    ['/txt2img', { stable_diffusion_model: DEMO_MODEL, prompt: 'gone', steps: 100, width: 512, height: 512 }],
    ['/sdapi/v1/txt2img', { prompt: 'gone too', steps: 100, width: 512, height: 512 }],
  ] as const) {
    it(`${route}: the wait ends at once, and the task still succeeds`, async () => {
      const line = await dropDuringWait(route, body);
      // Ended by the disconnect while the task still ran: not by the sync cap, nor by the task's end.
      expect(line.status).toBe('running');
      const final = await waitForFinal(stack.url, line.taskId, 60_000);
      expect(final.status).toBe('succeeded');
      expect(final.images).toHaveLength(1);
    });
  }
});
