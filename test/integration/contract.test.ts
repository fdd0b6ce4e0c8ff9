import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { type Stack, startStack } from '../helpers/stack.js';

// The shared black-box contract check (../shared/contract/check.mjs) against a stack with the default simulator
// timings, as the check expects: once with auth off, once with keys on and an admin secret in SDFLOW_API_KEY.

const CHECK = resolve(process.cwd(), '../shared/contract/check.mjs');
const DEFAULT_TIMINGS = { SDFLOW_SIM_STEP_MS: '65', SDFLOW_SIM_LOAD_MS: '5000', SDFLOW_SIM_VAE_MS: '100' };
let stack: Stack | undefined;

afterEach(async () => {
  await stack?.stop();
  stack = undefined;
});

async function runCheck(url: string, env: Record<string, string> = {}): Promise<string> {
  expect(existsSync(CHECK), `${CHECK} is missing: clone sdflow beside the shared folder`).toBe(true);
  const { stdout } = await promisify(execFile)(process.execPath, [CHECK, url], {
    timeout: 240_000,
    env: { ...process.env, ...env },
  }).catch((err) => ({ stdout: `${err.stdout}\n${err.stderr}` }));
  return stdout;
}

describe('../shared/contract/check.mjs', () => {
  it('ends with 0 failed, auth off', async () => {
    stack = await startStack({ env: DEFAULT_TIMINGS });
    const out = await runCheck(stack.url);
    expect(out.trim().split('\n').pop(), out).toMatch(/^\d+ passed, 0 failed$/);
  }, 300_000);

  it('ends with 0 failed, keys on (an admin secret in SDFLOW_API_KEY)', async () => {
    stack = await startStack({
      env: { ...DEFAULT_TIMINGS, SDFLOW_API_KEYS: 'ops:admin:contract-admin-1,ann:user:contract-user-1' },
    });
    const out = await runCheck(stack.url, { SDFLOW_API_KEY: 'contract-admin-1' });
    expect(out.trim().split('\n').pop(), out).toMatch(/^\d+ passed, 0 failed$/);
  }, 300_000);
});
