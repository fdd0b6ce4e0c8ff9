import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Stack, startStack } from '../helpers/stack.js';

// The shared black-box contract check (../shared/contract/check.mjs) against a stack with the default simulator
// timings, as the check expects.

const CHECK = resolve(process.cwd(), '../shared/contract/check.mjs');
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    env: { SDFLOW_SIM_STEP_MS: '65', SDFLOW_SIM_LOAD_MS: '5000', SDFLOW_SIM_VAE_MS: '100' },
  });
});

afterAll(async () => {
  await stack?.stop();
});

it('../shared/contract/check.mjs ends with 0 failed', async () => {
  expect(existsSync(CHECK), `${CHECK} is missing: clone sdflow beside the shared folder`).toBe(true);
  const { stdout } = await promisify(execFile)(process.execPath, [CHECK, stack.url], { timeout: 240_000 }).catch(
    (err) => ({ stdout: `${err.stdout}\n${err.stderr}` }),
  );
  const summary = stdout.trim().split('\n').pop();
  expect(summary, stdout).toMatch(/^\d+ passed, 0 failed$/);
}, 300_000);
