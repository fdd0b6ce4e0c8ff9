import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_CHECKPOINTS } from '../../src/cli/demo-models.js';
import { functionNameFor } from '../../src/platform/functions/naming.js';
import { readBusyIntervals } from '../../src/sim/stats.js';
import { type Stack, startStack } from '../helpers/stack.js';
import { type FakeCredentials, FcFake } from './fakes/fc-fake.js';
import { OssFake } from './fakes/oss-fake.js';

// The whole stack on the cloud adapters, against the local fakes: objects in the OSS fake, functions in the FC fake,
// whose HTTP triggers run real agents with the simulator (default timings), reading the checkpoints from the bucket
// the functions mount and writing images to it. No `sdflow runtime` runs. The shared contract check must pass.

const CHECK = resolve(process.cwd(), '../shared/contract/check.mjs');
const ACCOUNT = '1234567890123456';
const BUCKET = 'sdflow-e2e';
const CREDENTIALS: FakeCredentials = {
  accessKeyId: 'LTAI5tE2eFakeAccessKeyId',
  accessKeySecret: 'e2e-fake-access-key-secret-0123456789',
};
const PREFIX = 'e2e-';

let oss: OssFake;
let fc: FcFake;
let stack: Omit<Stack, 'runtime'> | undefined;
let statsDir: string;

beforeAll(async () => {
  oss = await OssFake.start({ bucket: BUCKET, credentials: CREDENTIALS });
  statsDir = mkdtempSync(join(tmpdir(), 'sdflow-e2e-stats-'));
  fc = await FcFake.start({
    accountId: ACCOUNT,
    region: 'cn-hangzhou',
    credentials: CREDENTIALS,
    roleCredentials: CREDENTIALS,
    // The functions mount the bucket's models/ (OSS_MOUNT below): the fake copies them into each new instance.
    buckets: {
      [BUCKET]: { list: (prefix) => oss.keys().filter((k) => k.startsWith(prefix)), read: (k) => oss.stored(k)!.body },
    },
    imageEnv: { SDFLOW_SIM_STATS_DIR: statsDir },
    maxPageSize: 2,
  });
  stack = await startStack({
    runtime: false,
    env: {
      // Default simulator timings, as the contract check expects (the agents run with the image's defaults too).
      SDFLOW_SIM_STEP_MS: '65',
      SDFLOW_SIM_LOAD_MS: '5000',
      SDFLOW_SIM_VAE_MS: '100',
      SDFLOW_FUNCTION_PREFIX: PREFIX,
      ALIBABA_CLOUD_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
      ALIBABA_CLOUD_ACCESS_KEY_SECRET: CREDENTIALS.accessKeySecret,
      SDFLOW_OBJECT_STORE: 'oss',
      // With a cloud store the API and workers share no data dir to keep a generated webhook secret in.
      SDFLOW_WEBHOOK_SECRET: `whsec_${Buffer.alloc(32, 7).toString('base64')}`,
      SDFLOW_OSS_BUCKET: BUCKET,
      SDFLOW_OSS_ENDPOINT: oss.endpoint,
      // The fake serves the bucket on its own origin, as OSS serves a bucket on a bound custom domain.
      SDFLOW_OSS_CNAME: '1',
      SDFLOW_FUNCTIONS: 'fc',
      SDFLOW_FC_REGION: 'cn-hangzhou',
      SDFLOW_FC_ACCOUNT_ID: ACCOUNT,
      SDFLOW_FC_ENDPOINT: fc.endpoint,
      SDFLOW_FC_IMAGE: 'registry.cn-hangzhou.aliyuncs.com/sdflow/agent:1.0',
      SDFLOW_FC_ROLE: `acs:ram::${ACCOUNT}:role/sdflow-fc`,
      SDFLOW_FC_OSS_MOUNT_CONFIG: JSON.stringify({
        mountPoints: [
          {
            bucketName: BUCKET,
            bucketPath: '/models',
            endpoint: 'http://oss-cn-hangzhou-internal.aliyuncs.com',
            mountDir: '/mnt/sdflow/objects/models',
            readOnly: true,
          },
        ],
      }),
    },
  });
}, 180_000);

afterAll(async () => {
  await stack?.stop();
  await fc?.close();
  await oss?.close();
  rmSync(statsDir, { recursive: true, force: true });
});

async function runCheck(url: string): Promise<string> {
  expect(existsSync(CHECK), `${CHECK} is missing: clone sdflow beside the shared folder`).toBe(true);
  const { stdout } = await promisify(execFile)(process.execPath, [CHECK, url], {
    timeout: 300_000,
    env: { ...process.env },
  }).catch((err) => ({ stdout: `${err.stdout}\n${err.stderr}` }));
  return stdout;
}

describe('the stack on the OSS and FC fakes', () => {
  it('passes ../shared/contract/check.mjs with 0 failed, through FC triggers and OSS', async () => {
    if (!stack) throw new Error('the stack did not start');
    // No local runtime: the functions are FC's.
    expect(existsSync(join(stack.dataDir, 'logs', 'runtime.log'))).toBe(false);
    // The demo checkpoints were registered into the bucket.
    for (const name of DEMO_CHECKPOINTS) expect(oss.keys()).toContain(`models/stableDiffusion/${name}`);

    const out = await runCheck(stack.url);
    expect(out.trim().split('\n').pop(), out).toMatch(/^\d+ passed, 0 failed$/);

    // The images went to the OSS fake, under the task layout, written by the agents.
    const images = oss.requestsFor('PutObject').filter((r) => r.key.startsWith('images/') && r.outcome === 200);
    expect(images.length).toBeGreaterThanOrEqual(8);
    // The invocations went through the FC fake's triggers, signed, and the cancel closed one of them.
    const invokes = fc.invocations.filter((i) => i.path === '/invoke');
    expect(invokes.length).toBeGreaterThanOrEqual(8);
    expect(invokes.every((i) => i.auth === 'signed')).toBe(true);
    expect(invokes.filter((i) => i.status === 200).length).toBeGreaterThanOrEqual(8);
    expect(invokes.some((i) => i.cancelled)).toBe(true);
    expect(readBusyIntervals(statsDir).length).toBeGreaterThanOrEqual(8);
    // The checkpoint's function, made by the worker through the FC OpenAPI, one per checkpoint used.
    const used = fc.functionNames();
    expect(used.length).toBeGreaterThanOrEqual(1);
    for (const name of used) {
      expect(name.length).toBeLessThanOrEqual(64);
      const env = (fc.functionConfig(name)?.environmentVariables ?? {}) as Record<string, string>;
      const model = env.SD_MODEL;
      expect(name).toBe(functionNameFor(model, PREFIX));
      expect(fc.triggersOf(name)).toHaveLength(1);
    }
    expect(fc.requestsFor('CreateFunction').length).toBeGreaterThanOrEqual(1);
    // /healthz listed FC's functions.
    expect(fc.requestsFor('ListFunctions').length).toBeGreaterThan(0);
  }, 400_000);
});
