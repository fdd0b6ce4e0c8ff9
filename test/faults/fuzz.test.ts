import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { isAlive } from '../helpers/faults.js';
import { DEMO_MODEL, type Stack, startStack } from '../helpers/stack.js';

// Property-based fuzzing of every route (fast-check, fixed seed): thousands of generated methods, paths, headers
// and bodies. The API never answers 5xx, never crashes, and stays healthy. Bodies that happen to validate run as
// tasks on a zero-time simulator.

const SEED = 20261125;
const RUNS = 3000;
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    env: {
      SDFLOW_SIM_STEP_MS: '0',
      SDFLOW_SIM_LOAD_MS: '0',
      SDFLOW_SIM_VAE_MS: '0',
      SDFLOW_SYNC_TIMEOUT_S: '2',
      SDFLOW_MAX_BODY_MB: '1',
      SDFLOW_MAX_CONCURRENCY: '8',
    },
  });
});

afterAll(async () => {
  await stack?.stop();
});

const segment = fc.oneof(
  fc.constantFrom(
    '..',
    '.',
    '%2e%2e',
    '%2F',
    '%zz',
    '%',
    'x%00y',
    '~',
    '',
    ' ',
    'ü',
    '😀',
    '[',
    '{x}',
    'a'.repeat(300),
  ),
  fc.stringMatching(/^[A-Za-z0-9_.-]{1,20}$/),
  fc.string({ maxLength: 12 }).map(encodeURIComponent),
);
const taskId = fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/), segment);

const path = fc.oneof(
  fc.constantFrom(
    '/txt2img',
    '/img2img',
    '/extra_images',
    '/models',
    '/list/sdapi/functions',
    '/list/sdapi/fucntions',
    '/healthz',
    '/openapi.json',
    '/options',
    '/batch_update_sd_resource',
    '/del/sd/functions',
    '/restart',
    '/sdapi/v1/txt2img',
    '/sdapi/v1/img2img',
    '/sdapi/v1/extra-single-image',
    '/sdapi/v1/progress',
    '/sdapi/v1/interrupt',
    '/sdapi/v1/sd-models',
    '/sdapi/v1/options',
    '/controlnet/model_list',
    '/tasks',
  ),
  taskId.chain((id) =>
    fc.constantFrom(`/tasks/${id}/result`, `/tasks/${id}/progress`, `/tasks/${id}/cancellation`, `/tasks/${id}/retry`),
  ),
  segment.map((s) => `/models/${s}`),
  fc.array(segment, { minLength: 1, maxLength: 4 }).map((parts) => `/files/${parts.join('/')}`),
  fc.array(segment, { minLength: 1, maxLength: 4 }).map((parts) => `/sdapi/v1/${parts.join('/')}`),
  fc.array(segment, { minLength: 1, maxLength: 5 }).map((parts) => `/${parts.join('/')}`),
);
const query = fc.oneof(
  fc.constant(''),
  fc
    .dictionary(
      fc.constantFrom(
        'type',
        'status',
        'expires',
        'signature',
        'model',
        'wait',
        'x',
        'limit',
        'cursor',
        'user',
        'createdBefore',
      ),
      segment,
    )
    .map(
      (q) =>
        `?${Object.entries(q)
          .map(([k, v]) => `${k}=${v}`)
          .join('&')}`,
    ),
);

/** Values of every kind, including the awkward ones: huge, negative, fractional, NaN-like strings, deep nesting. */
const value: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true }),
  fc.constantFrom(-1, 0, 1, 7.5, 1e308, -1e308, 2 ** 53, 4096, 100000),
  fc.string({ maxLength: 40 }),
  fc.constantFrom(
    'NaN',
    'Infinity',
    '../../etc/passwd',
    'http://169.254.169.254/',
    'data:image/png;base64,AAAA',
    'images/local/x_1.png',
    'images/other/x_1.png',
  ),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.oneof(fc.string({ maxLength: 20 }), fc.integer()), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(fc.string({ maxLength: 8 }), fc.integer()), { maxKeys: 4 }),
);
const fields = [
  'stable_diffusion_model',
  'sd_vae',
  'prompt',
  'negative_prompt',
  'steps',
  'width',
  'height',
  'batch_size',
  'n_iter',
  'seed',
  'subseed',
  'cfg_scale',
  'sampler_name',
  'denoising_strength',
  'init_images',
  'mask',
  'image',
  'upscaling_resize',
  'upscaler_1',
  'override_settings',
  'alwayson_scripts',
  'type',
  'name',
  'ossPath',
  'models',
  'functions',
  'data',
  'env',
];
const plausibleBody = fc
  .record({
    stable_diffusion_model: fc.constantFrom(DEMO_MODEL, 'nope.safetensors', ''),
    prompt: fc.string({ maxLength: 50 }),
    steps: fc.constantFrom(1, 2, 3, -1, 0, 2.5, 9999),
    width: fc.constantFrom(64, 128, 7, 0, 100000),
    height: fc.constantFrom(64, 96, -64),
  })
  .chain((base) =>
    fc.dictionary(fc.constantFrom(...fields), value, { maxKeys: 3 }).map((extra) => ({ ...base, ...extra })),
  );
const body = fc.oneof(
  fc.constant(undefined),
  fc.constant(''),
  fc.string({ maxLength: 60 }),
  fc.json({ maxDepth: 3 }),
  fc.dictionary(fc.constantFrom(...fields), value, { maxKeys: 6 }).map((o) => JSON.stringify(o)),
  plausibleBody.map((o) => JSON.stringify(o)),
);
const headers = fc.record(
  {
    'content-type': fc.constantFrom(
      'application/json',
      'text/plain',
      'multipart/form-data; boundary=x',
      'application/x-www-form-urlencoded',
      'application/json; charset=latin1',
      '',
    ),
    'Request-Type': fc.constantFrom('async', 'sync', 'ASYNC', 'sometimes'),
    taskId: taskId.filter((s) => /^[\x21-\x7e]*$/.test(s)),
    'Idempotency-Key': fc.stringMatching(/^[\x21-\x7e]{0,300}$/),
    Prefer: fc.constantFrom('respond-async', 'wait=1'),
    'Task-Flag': fc.constantFrom('true', 'false'),
    Authorization: fc.constantFrom('Bearer', 'Bearer x', 'Basic abc', `Bearer ${'a'.repeat(500)}`),
    version: fc.constantFrom('1', '-1', 'x'),
  },
  { requiredKeys: [] },
);
const method = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD');

it(`answers ${RUNS} generated requests without a 5xx and stays healthy (seed ${SEED})`, async () => {
  const statuses = new Map<number, number>();
  await fc.assert(
    fc.asyncProperty(method, path, query, headers, body, async (m, p, q, h, b) => {
      const res = await fetch(`${stack.url}${p}${q}`, {
        method: m,
        headers: Object.fromEntries(Object.entries(h).filter(([, v]) => v !== '')),
        body: m === 'GET' || m === 'HEAD' ? undefined : b,
        signal: AbortSignal.timeout(20_000),
      });
      const text = await res.text();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      expect(res.status, `${m} ${p}${q}`).toBeLessThan(500);
      // Every refusal explains itself in JSON: sdflow's `message`, or A1111's own `detail`/`error` when a passthrough
      // keeps SD's 4xx as it is.
      if (res.status >= 400 && m !== 'HEAD') {
        const answer = JSON.parse(text) as Record<string, unknown>;
        const a1111 =
          /^\/(sdapi\/v1|controlnet)\//.test(p) && (answer.detail !== undefined || answer.error !== undefined);
        expect(typeof answer.message === 'string' || a1111, `${m} ${p}${q} -> ${text}`).toBe(true);
      }
    }),
    { seed: SEED, numRuns: RUNS },
  );
  console.log(`fuzz statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
  expect(isAlive(stack.api.child.pid!)).toBe(true);
  expect((await fetch(`${stack.url}/healthz`)).status).toBe(200);
  const apiLog = readFileSync(join(stack.dataDir, 'logs', 'api.log'), 'utf8');
  expect(apiLog).not.toMatch(/"msg":"request failed"/);
}, 600_000);
