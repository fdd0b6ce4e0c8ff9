import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseKeys } from '../../src/api/auth.js';
import { CLI_MAIN } from '../../src/cli/processes.js';
import { freePort } from '../../src/http-util.js';
import { call, DEMO_MODEL, download, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// Keys, roles and isolation with auth on: a user reaches only their own tasks and files, admin routes need an admin
// key, signed links need none, and an Idempotency-Key makes a retried submit safe.

const ALICE = 'alice-secret-1';
const BOB = 'bob-secret-22';
const OPS = 'ops-admin-333';
let stack: Stack;
const as =
  (secret: string | undefined) =>
  (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    call(stack.url, method, path, body, secret ? { authorization: `Bearer ${secret}`, ...headers } : headers);
const alice = as(ALICE);
const bob = as(BOB);
const ops = as(OPS);
const anonymous = as(undefined);
const small = { stable_diffusion_model: DEMO_MODEL, prompt: 'mine', steps: 2, width: 64, height: 64 };

beforeAll(async () => {
  stack = await startStack({ env: { SDFLOW_API_KEYS: `alice:user:${ALICE},bob:user:${BOB},ops:admin:${OPS}` } });
});

afterAll(async () => {
  await stack?.stop();
});

describe('keys', () => {
  it('needs a key everywhere but /healthz, and refuses a wrong one with 401', async () => {
    expect((await anonymous('GET', '/healthz')).status).toBe(200);
    for (const path of ['/models', '/list/sdapi/functions', '/tasks/x/result']) {
      expect((await anonymous('GET', path)).status).toBe(401);
      expect((await as('wrong-secret-9')('GET', path)).status).toBe(401);
    }
    const r = await anonymous('POST', '/txt2img', small);
    expect(r.status).toBe(401);
    expect(r.json.message).toMatch(/API key/);
  });

  it('lets any key read the catalog', async () => {
    expect((await alice('GET', '/models')).status).toBe(200);
    expect((await alice('GET', '/list/sdapi/functions')).status).toBe(200);
  });

  it('needs an admin key to change models and functions: 403 for a user key', async () => {
    const changes: [string, string, unknown][] = [
      ['POST', '/batch_update_sd_resource', { env: { A: 'b' } }],
      ['POST', '/del/sd/functions', { functions: ['nope'] }],
      ['POST', '/restart', {}],
      ['POST', '/models', { type: 'lora', name: 'x.safetensors', ossPath: 'models/lora/x.safetensors' }],
      ['PUT', `/models/${DEMO_MODEL}`, { ossPath: `models/stableDiffusion/${DEMO_MODEL}` }],
      ['DELETE', `/models/${DEMO_MODEL}`, undefined],
      ['POST', `/functions/${DEMO_MODEL}/options`, { CLIP_stop_at_last_layers: 2 }],
      ['POST', '/sdapi/v1/reload-checkpoint', {}],
    ];
    for (const [method, path, body] of changes) {
      const r = await alice(method, path, body);
      expect(r.status, `${method} ${path}`).toBe(403);
      expect(r.json.message).toMatch(/admin/);
    }
    expect((await ops('POST', '/restart', {})).status).toBe(200);
  });

  it('keeps only hashes of the secrets', () => {
    const ring = parseKeys(`alice:user:${ALICE}`, 'test');
    const [hash, principal] = [...ring.byHash][0];
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(hash).not.toContain(ALICE);
    expect(principal).toEqual({ user: 'alice', role: 'user', keyId: hash.slice(0, 16) });
  });

  it('refuses malformed entries with a message naming them', () => {
    expect(() => parseKeys('alice:user:short', 'test')).toThrow(/at least 8/);
    expect(() => parseKeys('alice:root:long-enough', 'test')).toThrow(/admin or user/);
    expect(() => parseKeys('al/ice:user:long-enough', 'test')).toThrow(/user/);
  });
});

describe('isolation', () => {
  let aliceTask: { taskId: string; ossUrl: string[] };

  it('a user’s images are stored under their name', async () => {
    const r = await alice('POST', '/txt2img', small);
    expect(r.json.status).toBe('succeeded');
    aliceTask = r.json;
    expect((await alice('GET', `/tasks/${aliceTask.taskId}/result`)).json.images).toEqual([
      `images/alice/${aliceTask.taskId}_1.png`,
    ]);
  });

  it('another user can neither read nor cancel it: 404, as if it did not exist', async () => {
    for (const path of ['result', 'progress'])
      expect((await bob('GET', `/tasks/${aliceTask.taskId}/${path}`)).status).toBe(404);
    expect((await bob('POST', `/tasks/${aliceTask.taskId}/cancellation`)).status).toBe(404);
    expect((await ops('GET', `/tasks/${aliceTask.taskId}/result`)).json.status).toBe('succeeded');
  });

  it('another user cannot reference its images; the owner and an admin can', async () => {
    const key = `images/alice/${aliceTask.taskId}_1.png`;
    const stolen = await bob('POST', '/img2img', { ...small, init_images: [key] });
    expect(stolen.status).toBe(403);
    expect(stolen.json.message).toMatch(/init_images\[0\]/);
    expect((await bob('POST', '/extra_images', { image: key, upscaling_resize: 2 })).status).toBe(403);
    expect((await alice('POST', '/img2img', { ...small, init_images: [key] })).json.status).toBe('succeeded');
    expect((await ops('POST', '/img2img', { ...small, init_images: [key] })).json.status).toBe('succeeded');
  });

  it('signed links work without a key, and only as signed', async () => {
    expect((await download(aliceTask.ossUrl[0])).length).toBeGreaterThan(0);
    const forged = new URL(aliceTask.ossUrl[0]);
    forged.searchParams.set('signature', '0'.repeat(64));
    expect((await fetch(forged)).status).toBe(403);
  });
});

describe('idempotency', () => {
  it('the same Idempotency-Key with the same body returns the original task; another body answers 409', async () => {
    const key = `idem-${Date.now()}`;
    const first = await alice('POST', '/txt2img', small, { 'Idempotency-Key': key, 'Request-Type': 'async' });
    const again = await alice('POST', '/txt2img', small, { 'Idempotency-Key': key, 'Request-Type': 'async' });
    expect(again.status).toBe(200);
    expect(again.json.taskId).toBe(first.json.taskId);
    const other = await alice('POST', '/txt2img', { ...small, prompt: 'something else' }, { 'Idempotency-Key': key });
    expect(other.status).toBe(409);
    expect(other.json.message).toMatch(/Idempotency-Key/);
    // Keys belong to their user: bob's identical key is a task of his own.
    const bobs = await bob('POST', '/txt2img', small, { 'Idempotency-Key': key, 'Request-Type': 'async' });
    expect(bobs.json.taskId).not.toBe(first.json.taskId);
    expect(
      (await waitForFinal(stack.url, first.json.taskId, 30_000, { authorization: `Bearer ${ALICE}` })).status,
    ).toBe('succeeded');
  });

  it('concurrent retries with one key make one task', async () => {
    const key = `idem-race-${Date.now()}`;
    const answers = await Promise.all(
      Array.from({ length: 5 }, () =>
        alice('POST', '/txt2img', small, { 'Idempotency-Key': key, 'Request-Type': 'async' }),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(5).fill(200));
    expect(new Set(answers.map((a) => a.json.taskId)).size).toBe(1);
  });
});

describe('binding', () => {
  const startApi = async (env: Record<string, string>) => {
    const dir = mkdtempSync(join(tmpdir(), 'sdflow-bind-'));
    const port = await freePort();
    const child = spawn(process.execPath, [CLI_MAIN, 'api'], {
      env: {
        ...process.env,
        SDFLOW_DATA_DIR: dir,
        PORT: String(port),
        TEMPORAL_ADDRESS: stack.env.TEMPORAL_ADDRESS,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c) => (output += c));
    child.stderr.on('data', (c) => (output += c));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const listening = new Promise<void>((resolve) =>
      child.stdout.on('data', () => output.includes('api listening') && resolve()),
    );
    const first = await Promise.race([exited.then((code) => ({ code })), listening.then(() => ({ code: undefined }))]);
    child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
    return { ...first, output };
  };

  it('refuses a non-loopback address without keys, unless SDFLOW_ALLOW_INSECURE=1', async () => {
    const refused = await startApi({ HOST: '0.0.0.0', SDFLOW_API_KEYS: '' });
    expect(refused.code).not.toBe(0);
    expect(refused.output).toMatch(/refusing to serve 0\.0\.0\.0 without API keys/);
    expect((await startApi({ HOST: '0.0.0.0', SDFLOW_API_KEYS: '', SDFLOW_ALLOW_INSECURE: '1' })).code).toBeUndefined();
  });

  it('serves a non-loopback address with keys from a keys file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdflow-keys-'));
    const file = join(dir, 'keys');
    writeFileSync(file, `# operators\nops:admin:${OPS}\n`);
    const started = await startApi({ HOST: '0.0.0.0', SDFLOW_API_KEYS: '', SDFLOW_API_KEYS_FILE: file });
    rmSync(dir, { recursive: true, force: true });
    expect(started.code).toBeUndefined();
  });
});
